"""Reference kernels: every op of the IR written straight from its formula.

These are the oracle that generated code and optimization passes are checked
against (see docs/kernels.md), so clarity beats speed.  They loop over kernel
taps, window offsets and the channels of an LRN window, but never over pixels,
batch or channels: whole networks are interpreted with them in tests.

Conventions: arrays are float32 in NCHW layout, conv weights OIHW, tuples are
``(height, width)`` and ``pads`` is ``(top, left, bottom, right)``.  Every
kernel accumulates in float64 and returns a new float32 array.
"""

from __future__ import annotations

import math

import numpy as np

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]

_F32 = np.float32
_F64 = np.float64


# ---------------------------------------------------------------- helpers


def _f64(x: np.ndarray) -> np.ndarray:
    """``x`` as a float64 array (the accumulation precision)."""
    return np.asarray(x, dtype=_F64)


def _out(y: np.ndarray) -> np.ndarray:
    """The float32 result array (always a fresh copy, never a view of an input)."""
    return np.array(y, dtype=_F32)


def _spatial_pad(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """Constant-pad the two spatial axes of an NCHW array by ``(top, left, bottom, right)``."""
    top, left, bottom, right = pads
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    return np.pad(x, widths, mode="constant", constant_values=value)


def _tap(xpad: np.ndarray, offset: Pair, stride: Pair, out: Pair) -> np.ndarray:
    """The strided slice ``xpad[:, :, oy + i*sh, ox + j*sw]`` for all output (i, j)."""
    (oy, ox), (sh, sw), (ho, wo) = offset, stride, out
    return xpad[:, :, oy : oy + (ho - 1) * sh + 1 : sh, ox : ox + (wo - 1) * sw + 1 : sw]


def _grouped_matmul(w: np.ndarray, x: np.ndarray, groups: int) -> np.ndarray:
    """y[n, g·O/G + o, h, w] = Σ_c w[g, o, c] · x[n, g·C/G + c, h, w].

    ``w`` is ``[G, O/G, C/G]`` and ``x`` is ``[N, C, H, W]``; returns ``[N, O, H, W]``.
    """
    n, c, h, wd = x.shape
    xg = x.reshape(n, groups, c // groups, h * wd)
    yg = np.einsum("goc,ngcp->ngop", w, xg, optimize=True)
    return yg.reshape(n, -1, h, wd)


def _window_pads(x: np.ndarray, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair,
                 out: Pair) -> Pads:
    """``pads`` with bottom/right grown so that every window of ``out`` fits (a pool's ceil_mode
    overhang); ``out`` is the output size the shape rule decided (``out_size``)."""
    top, left, bottom, right = pads
    need_h = (out[0] - 1) * stride[0] + dilation[0] * (kernel[0] - 1) + 1
    need_w = (out[1] - 1) * stride[1] + dilation[1] * (kernel[1] - 1) + 1
    bottom = max(bottom, need_h - x.shape[2] - top)
    right = max(right, need_w - x.shape[3] - left)
    return top, left, bottom, right


def _window_taps(kernel: Pair, dilation: Pair) -> list[Pair]:
    """Offsets (u·dh, v·dw) of every tap of a (dilated) window."""
    return [(u * dilation[0], v * dilation[1])
            for u in range(kernel[0]) for v in range(kernel[1])]


# ---------------------------------------------------------------- convolutions


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, stride: Pair,
           pads: Pads, dilation: Pair, groups: int, out_size: Pair, activation: str = "none",
           slope: float = 0.0, residual: np.ndarray | None = None, layout_in: str = "nchw",
           layout_out: str = "nchw") -> np.ndarray:
    """Grouped, strided, dilated 2-D convolution (cross-correlation), with an optional epilogue.

    y[n,o,i,j] = b[o] + Σ_{c,u,v} xpad[n, g·C/G + c, i·sh + u·dh, j·sw + v·dw] · w[o,c,u,v]
    for (i, j) < ``out_size``, with g = o // (O/G), ``w: [O, C/G, kh, kw]`` and ``xpad``
    zero-padded by ``pads``; then y = act(y + residual) (see `epilogue`). ``layout_in`` /
    ``layout_out`` "nhwc": the input is, or the result is returned as, ``[N, H, W, C]``.
    """
    if layout_in == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    if layout_out == "nhwc":
        y = conv(x, w, b, stride=stride, pads=pads, dilation=dilation, groups=groups, out_size=out_size,
                 activation=activation, slope=slope, residual=residual)
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    xpad = _spatial_pad(_f64(x), pads)
    o, _, kh, kw = w.shape
    ho, wo = out_size
    wg = _f64(w).reshape(groups, o // groups, -1, kh, kw)
    y = np.zeros((x.shape[0], o, ho, wo), dtype=_F64)
    for u in range(kh):
        for v in range(kw):
            xs = _tap(xpad, (u * dilation[0], v * dilation[1]), stride, (ho, wo))
            y += _grouped_matmul(wg[..., u, v], xs, groups)
    if b is not None:
        y += _f64(b).reshape(1, -1, 1, 1)
    return epilogue(_out(y), activation, slope, residual)


def winograd_conv(x: np.ndarray, u: np.ndarray, b: np.ndarray | None, *, pads: Pads, out_size: Pair,
                  activation: str = "none", slope: float = 0.0,
                  residual: np.ndarray | None = None) -> np.ndarray:
    """The 3x3 stride-1 convolution whose Winograd-transformed weight is ``u`` ``[36, O, C]``.

    ``u[6a + b, o, c] = (G g[o, c] Gᵀ)[a, b]``. G has full column rank, so ``g = G⁺ u G⁺ᵀ``
    recovers the direct weight exactly (up to rounding); the result is the direct `conv` of
    it, so the reference shares nothing with the fast path but the filter transform.
    """
    from .numpy_kernels import _winograd_f4x3  # the one definition of G

    _, g, _ = _winograd_f4x3()
    pinv = np.linalg.pinv(g)  # [3, 6]
    _, o, c = u.shape
    w = np.einsum("ia,aboc,jb->ocij", pinv, _f64(u).reshape(6, 6, o, c), pinv)
    return conv(x, w, b, stride=(1, 1), pads=pads, dilation=(1, 1), groups=1, out_size=out_size,
                activation=activation, slope=slope, residual=residual)


def conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, stride: Pair,
                     pads: Pads, output_padding: Pair, dilation: Pair,
                     groups: int) -> np.ndarray:
    """Grouped, strided, dilated transposed convolution (``w: [C, O/G, kh, kw]``).

    full[n, g·O/G + o, i·sh + u·dh, j·sw + v·dw] += x[n, g·C/G + c, i, j] · w[g·C/G + c, o, u, v]
    (a scatter of every input pixel), then y = full cropped by top/left at the
    start to size (H−1)·s − (top+bottom) + d·(k−1) + output_padding + 1, plus b[o].
    """
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    top, left, bottom, right = pads
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    full_w = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    # [C, O/G, kh, kw] -> [G, O/G, C/G, kh, kw] so that each tap is a grouped matmul.
    wg = _f64(w).reshape(groups, c // groups, og, kh, kw).transpose(0, 2, 1, 3, 4)
    full = np.zeros((n, groups * og, full_h, full_w), dtype=_F64)
    xf = _f64(x)
    for u in range(kh):
        for v in range(kw):
            contrib = _grouped_matmul(wg[..., u, v], xf, groups)
            full[:, :, u * dh : u * dh + (h - 1) * sh + 1 : sh,
                 v * dw : v * dw + (wd - 1) * sw + 1 : sw] += contrib
    y = full[:, :, top : full_h - bottom, left : full_w - right]
    if b is not None:
        y = y + _f64(b).reshape(1, -1, 1, 1)
    return _out(y)


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, *, activation: str = "none",
          slope: float = 0.0) -> np.ndarray:
    """Fully connected layer: y[n, o] = act(b[o] + Σ_f x[n, f] · w[o, f]).

    ``x`` is ``[N, F]`` (→ ``[N, O]``) or ``[N, F, 1, 1]`` (→ ``[N, O, 1, 1]``).
    """
    y = _f64(x).reshape(x.shape[0], -1) @ _f64(w).T
    if b is not None:
        y = y + _f64(b)
    if x.ndim == 4:
        y = y.reshape(y.shape[0], -1, 1, 1)
    return epilogue(_out(y), activation, slope, None)


# ---------------------------------------------------------------- normalization


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
               var: np.ndarray, *, eps: float) -> np.ndarray:
    """Inference batch norm over axis 1: y = γ · (x − μ) / √(σ² + ε) + β (``x`` 2-D or 4-D)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def per_channel(p: np.ndarray) -> np.ndarray:
        return _f64(p).reshape(shape)

    y = per_channel(gamma) * (_f64(x) - per_channel(mean)) / np.sqrt(per_channel(var) + eps)
    return _out(y + per_channel(beta))


def lrn(x: np.ndarray, *, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """AlexNet local response normalization across channels (α *not* divided by size).

    b_c = a_c · (k + α · Σ_{j = max(0, c − ⌊size/2⌋)}^{min(C−1, c + ⌊(size−1)/2⌋)} a_j²)^(−β)
    """
    xf = _f64(x)
    c = x.shape[1]
    before, after = size // 2, (size - 1) // 2
    sq = np.pad(xf * xf, ((0, 0), (before, after), (0, 0), (0, 0)))
    # padded channel c + t is original channel c − before + t, t = 0 .. size−1
    window_sum = sum(sq[:, t : t + c] for t in range(size))
    return _out(xf * (k + alpha * window_sum) ** (-beta))


# ---------------------------------------------------------------- activations


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return _out(np.maximum(_f64(x), 0.0))


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6)."""
    return _out(np.minimum(np.maximum(_f64(x), 0.0), 6.0))


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """relu6(x + 3) / 6 (PyTorch's definition): 0 below −3, 1 above 3, linear between."""
    return _out(np.minimum(np.maximum(_f64(x) + 3.0, 0.0), 6.0) / 6.0)


def hardswish(x: np.ndarray) -> np.ndarray:
    """x · relu6(x + 3) / 6 (PyTorch's definition): 0 below −3, x above 3."""
    xf = _f64(x)
    return _out(xf * np.minimum(np.maximum(xf + 3.0, 0.0), 6.0) / 6.0)


def silu(x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x) (SiLU, swish), with the overflow-free logistic."""
    xf = _f64(x)
    return _out(xf * _logistic(xf))


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """x · Φ(x) = x · ½ erfc(−x/√2), exact (PyTorch's default form): erfc from Python's math
    module, elementwise, so the far negative tail keeps its relative accuracy."""
    xf = _f64(x)
    return _out(xf * 0.5 * np.asarray(_ERFC(-xf / math.sqrt(2.0)), dtype=_F64))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """½ x (1 + tanh(√(2/π) (x + 0.044715 x³))), PyTorch's approximate="tanh", evaluated as
    x · sigmoid(2u) (the same value: 1 + tanh(u) = 2 sigmoid(2u)) without cancellation."""
    xf = _f64(x)
    u = math.sqrt(2.0 / math.pi) * (xf + 0.044715 * xf ** 3)
    return _out(xf * _logistic(2.0 * u))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^(−x)), evaluated as e^(−|x|) based forms so nothing overflows."""
    xf = _f64(x)
    z = np.exp(-np.abs(xf))
    return _out(np.where(xf >= 0, 1.0 / (1.0 + z), z / (1.0 + z)))


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x)."""
    return _out(np.tanh(_f64(x)))


def leaky_relu(x: np.ndarray, *, slope: float) -> np.ndarray:
    """x if x ≥ 0 else slope · x."""
    xf = _f64(x)
    return _out(np.where(xf >= 0, xf, slope * xf))


def softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """e^(x − max) / Σ_axis e^(x − max) (subtracting the max along ``axis`` for stability)."""
    xf = _f64(x)
    e = np.exp(xf - xf.max(axis=axis, keepdims=True))
    return _out(e / e.sum(axis=axis, keepdims=True))


# ---------------------------------------------------------------- pooling


def max_pool(x: np.ndarray, *, kernel: Pair, stride: Pair, pads: Pads, dilation: Pair,
               out_size: Pair) -> np.ndarray:
    """y[n,c,i,j] = max_{u,v} xpad[n, c, i·sh + u·dh, j·sw + v·dw] for (i, j) < ``out_size``,
    padding is −∞; so is a ceil_mode overhang (the windows beyond the padded input)."""
    out = (int(out_size[0]), int(out_size[1]))
    xpad = _spatial_pad(_f64(x), _window_pads(x, kernel, stride, pads, dilation, out), -np.inf)
    y = np.full(x.shape[:2] + out, -np.inf)
    for offset in _window_taps(kernel, dilation):
        y = np.maximum(y, _tap(xpad, offset, stride, out))
    return _out(y)


def avg_pool(x: np.ndarray, *, kernel: Pair, stride: Pair, pads: Pads, count_include_pad: bool,
               out_size: Pair) -> np.ndarray:
    """y[n,c,i,j] = Σ_{u,v} xpad[n, c, i·sh + u, j·sw + v] / count[i, j] for (i, j) <
    ``out_size``, zero padding.

    count is the window sum of a mask (PyTorch's divisor): with count_include_pad
    the mask covers the padded extent [−top, H+bottom) × [−left, W+right) (a
    ceil_mode overhang is not counted), without it only the real input pixels.
    """
    dilation = (1, 1)
    out = (int(out_size[0]), int(out_size[1]))
    full_pads = _window_pads(x, kernel, stride, pads, dilation, out)
    xpad = _spatial_pad(_f64(x), full_pads)
    if count_include_pad:
        top, left, bottom, right = pads
        mask = np.ones((1, 1, x.shape[2] + top + bottom, x.shape[3] + left + right))
        extra = (0, 0, full_pads[2] - bottom, full_pads[3] - right)
        mask = _spatial_pad(mask, extra)
    else:
        mask = _spatial_pad(np.ones((1, 1) + x.shape[2:]), full_pads)
    total = np.zeros(x.shape[:2] + out)
    count = np.zeros((1, 1) + out)
    for offset in _window_taps(kernel, dilation):
        total += _tap(xpad, offset, stride, out)
        count += _tap(mask, offset, stride, out)
    return _out(total / count)


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """y[n, c, 0, 0] = mean_{h,w} x[n, c, h, w]."""
    return _out(_f64(x).mean(axis=(2, 3), keepdims=True))


def global_max_pool(x: np.ndarray) -> np.ndarray:
    """y[n, c, 0, 0] = max_{h,w} x[n, c, h, w]."""
    return _out(_f64(x).max(axis=(2, 3), keepdims=True))


def depthwise_pool(x: np.ndarray, *, size: int, mode: str) -> np.ndarray:
    """Pooling across channels: y[n, q, h, w] = max or mean_{t<size} x[n, q·size + t, h, w]."""
    n, c, h, w = x.shape
    if c % size != 0:
        raise ValueError(f"depthwise_pool: {c} channels not divisible by size {size}")
    groups = _f64(x).reshape(n, c // size, size, h, w)
    if mode == "max":
        return _out(groups.max(axis=2))
    if mode == "avg":
        return _out(groups.mean(axis=2))
    raise ValueError(f"depthwise_pool: unknown mode {mode!r}")


# ---------------------------------------------------------------- shape ops


def flatten(x: np.ndarray) -> np.ndarray:
    """[N, ...] → [N, prod(...)] in C order (like ``torch.flatten(x, 1)``)."""
    return _out(x.reshape(x.shape[0], -1))


def reshape(x: np.ndarray, *, shape: tuple[int, ...]) -> np.ndarray:
    """[N, ...] → [N, *shape] (``shape`` excludes the batch dimension)."""
    return _out(x.reshape((x.shape[0],) + tuple(shape)))


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b with NumPy broadcasting."""
    return _out(_f64(a) + _f64(b))


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a − b with NumPy broadcasting."""
    return _out(_f64(a) - _f64(b))


def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with NumPy broadcasting (IEEE division)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _out(_f64(a) / _f64(b))


def scalar_affine(x: np.ndarray, *, scale: float, shift: float) -> np.ndarray:
    """x·scale + shift."""
    return _out(_f64(x) * scale + shift)


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a · b with NumPy broadcasting."""
    return _out(_f64(a) * _f64(b))


def concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    """Concatenation of ``xs`` along ``axis``."""
    return _out(np.concatenate(xs, axis=axis))


def _bilinear_axis(x: np.ndarray, axis: int, scale: int) -> np.ndarray:
    """Linear interpolation along one axis, half-pixel centres (align_corners=False).

    src = max((dst + 0.5) / scale − 0.5, 0); y[dst] = (1 − λ)·x[i0] + λ·x[i1] with
    i0 = ⌊src⌋, i1 = min(i0 + 1, size − 1), λ = src − i0.
    """
    size = x.shape[axis]
    dst = np.arange(size * scale)
    src = np.maximum((dst + 0.5) / scale - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    lam_shape = [1] * x.ndim
    lam_shape[axis] = -1
    lam = (src - i0).reshape(lam_shape)
    return (1.0 - lam) * np.take(x, i0, axis=axis) + lam * np.take(x, i1, axis=axis)


def upsample(x: np.ndarray, *, scale: Pair, mode: str) -> np.ndarray:
    """Integer spatial upsampling by ``scale = (sh, sw)``.

    nearest: y[i, j] = x[⌊i/sh⌋, ⌊j/sw⌋].  bilinear: separable linear interpolation,
    as PyTorch ``interpolate(mode="bilinear", align_corners=False)`` (see :func:`_bilinear_axis`).
    """
    sh, sw = scale
    xf = _f64(x)
    if mode == "nearest":
        return _out(np.repeat(np.repeat(xf, sh, axis=2), sw, axis=3))
    if mode == "bilinear":
        return _out(_bilinear_axis(_bilinear_axis(xf, 2, sh), 3, sw))
    raise ValueError(f"upsample: unknown mode {mode!r}")


def pad(x: np.ndarray, *, pads: Pads, mode: str, value: float) -> np.ndarray:
    """Spatial padding by ``(top, left, bottom, right)``.

    ``mode``: "constant" (filled with ``value``), "reflect" (mirror without repeating
    the edge pixel) or "edge" (replicate the edge pixel).
    """
    if mode not in ("constant", "reflect", "edge"):
        raise ValueError(f"pad: unknown mode {mode!r}")
    top, left, bottom, right = pads
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    if mode == "constant":
        return _out(np.pad(x, widths, mode="constant", constant_values=value))
    if mode == "reflect":
        return _out(np.pad(x, widths, mode="reflect"))
    return _out(np.pad(x, widths, mode="edge"))


def crop(x: np.ndarray, *, offset: Pair, size: Pair) -> np.ndarray:
    """y = x[:, :, oy : oy + h, ox : ox + w] with ``offset = (oy, ox)``, ``size = (h, w)``."""
    (oy, ox), (h, w) = offset, size
    return _out(x[:, :, oy : oy + h, ox : ox + w])


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float) -> np.ndarray:
    """y = (x − μ) / √(σ² + ε) · γ[c] + β[c], μ and σ² (biased) over axis 1 at each position."""
    x64 = _f64(x)
    mu = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=1, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return _out((x64 - mu) / np.sqrt(var + eps) * _f64(gamma).reshape(shape) + _f64(beta).reshape(shape))


def group_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, groups: int, eps: float) -> np.ndarray:
    """As layer_norm, with μ and σ² over each group of C/groups channels and every position."""
    n, c = x.shape[:2]
    g = _f64(x).reshape(n, groups, -1)
    mu = g.mean(axis=2, keepdims=True)
    var = ((g - mu) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mu) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return _out(y * _f64(gamma).reshape(shape) + _f64(beta).reshape(shape))


def layer_scale(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """y[n, c, ...] = x[n, c, ...] · scale[c]."""
    return _out(_f64(x) * _f64(scale).reshape((1, -1) + (1,) * (x.ndim - 2)))


def clip(x: np.ndarray, *, min: float, max: float) -> np.ndarray:  # noqa: A002
    """min(max(x, min), max)."""
    return _out(np.minimum(np.maximum(_f64(x), min), max))


def adaptive_pool(x: np.ndarray, *, size: Pair, mode: str) -> np.ndarray:
    """y[n, c, i, j] = max or mean of x[n, c, ⌊iH/Ho⌋ : ⌈(i+1)H/Ho⌉, ⌊jW/Wo⌋ : ⌈(j+1)W/Wo⌉]."""
    n, c, h, w = x.shape
    ho, wo = size
    x64, y = _f64(x), np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            cell = x64[:, :, math.floor(i * h / ho):math.ceil((i + 1) * h / ho),
                           math.floor(j * w / wo):math.ceil((j + 1) * w / wo)]
            y[:, :, i, j] = cell.max(axis=(2, 3)) if mode == "max" else cell.mean(axis=(2, 3))
    return _out(y)


def channel_shuffle(x: np.ndarray, *, groups: int) -> np.ndarray:
    """y[:, k·groups + g] = x[:, g·(C/groups) + k]."""
    c = x.shape[1]
    order = [g * (c // groups) + k for k in range(c // groups) for g in range(groups)]
    return _out(x[:, order])


def pixel_shuffle(x: np.ndarray, *, factor: int) -> np.ndarray:
    """y[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]."""
    n, c, h, w = x.shape
    r = factor
    y = np.empty((n, c // (r * r), h * r, w * r))
    for i in range(r):
        for j in range(r):
            y[:, :, i::r, j::r] = x[:, i * r + j::r * r]
    return _out(y)


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """x if x ≥ 0 else slope[c]·x."""
    x64 = _f64(x)
    return _out(np.where(x64 >= 0, x64, x64 * _f64(slope).reshape((1, -1) + (1,) * (x.ndim - 2))))


def permute(x: np.ndarray, *, order: tuple[int, ...]) -> np.ndarray:
    """y[i0, i1, ...] with y's axis k being x's axis order[k]."""
    return _out(np.transpose(x, tuple(order)))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_k a[..., i, k] · b[..., k, j], the leading axes broadcast."""
    return _out(np.einsum("...ik,...kj->...ij", _f64(a), _f64(b)))


def slice_axis(x: np.ndarray, *, axis: int, start: int, stop: int) -> np.ndarray:
    """y = x[..., start : stop, ...] along ``axis`` (negative values count from the end)."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return _out(x[tuple(index)])


# ---------------------------------------------------------------- detection


def _logistic(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^(−x)) in float64, without overflow (see :func:`sigmoid`)."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def _box_corners(boxes: np.ndarray, format: str) -> np.ndarray:
    """Boxes ``[..., 4]`` as float64 corners (x1, y1, x2, y2).

    ``format`` "corners": the boxes are (x1, y1, x2, y2) already; "center": (cx, cy, w, h), and
    x1 = cx − w/2, y1 = cy − h/2, x2 = cx + w/2, y2 = cy + h/2.
    """
    b = _f64(boxes)
    if format == "corners":
        return b
    if format == "center":
        cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    raise ValueError(f"unknown box format {format!r}")


def _box_area(c: np.ndarray) -> np.ndarray:
    """max(x2 − x1, 0) · max(y2 − y1, 0): a box with x2 < x1 or y2 < y1 is empty."""
    return np.maximum(c[..., 2] - c[..., 0], 0.0) * np.maximum(c[..., 3] - c[..., 1], 0.0)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU[..., i, j] = |a_i ∩ b_j| / |a_i ∪ b_j| of corner boxes ``a [..., A, 4]``, ``b [..., B, 4]``.

    |a ∩ b| = max(min(x2) − max(x1), 0) · max(min(y2) − max(y1), 0) and
    |a ∪ b| = area(a) + area(b) − |a ∩ b|; the IoU is 0 where the union is 0 (two empty boxes).
    """
    a, b = a[..., :, None, :], b[..., None, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):  # non-finite coordinates: nan, never > a threshold
        inter_w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
        inter_h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
        inter = inter_w * inter_h
        union = _box_area(a) + _box_area(b) - inter
        iou = inter / union
    return np.where(union > 0, iou, 0.0)


def iou(a: np.ndarray, b: np.ndarray, *, format: str) -> np.ndarray:
    """Pairwise IoU: ``a [N, A, 4]``, ``b [N, B, 4]`` → ``[N, A, B]`` (see :func:`_iou_matrix`)."""
    return _out(_iou_matrix(_box_corners(a, format), _box_corners(b, format)))


def nms(boxes: np.ndarray, scores: np.ndarray, extras: np.ndarray | None = None, *, iou_threshold: float,
        score_threshold: float, max_boxes: int, format: str) -> np.ndarray:
    """Class-wise greedy non-maximum suppression: ``[N, K, 4]``, ``[N, K, C]`` (and ``extras [N, K, E]``)
    → ``[N, max_boxes, 6 + E]``.

    For each image, the candidates are the pairs (box k, class c) with scores[k, c] >
    score_threshold, taken in order of descending score, equal scores by k, then by c. A
    candidate is kept when its IoU with every kept candidate of the same class is at most
    iou_threshold. The first ``max_boxes`` kept candidates are the rows (x1, y1, x2, y2, score, c,
    extras[k]…), corners whatever ``format`` the input has; the remaining rows are (0, 0, 0, 0, −1,
    0, 0…). The extra columns (a YOLACT detection's mask coefficients) ride along with their box.

    Greedy NMS is sequential: unlike the other kernels this loops over the images and over the
    candidates in order (with an early stop at ``max_boxes``).
    """
    corners = _box_corners(boxes, format)
    s = _f64(scores)
    carried = np.zeros(s.shape[:2] + (0,)) if extras is None else _f64(extras)
    out = np.zeros((s.shape[0], max_boxes, 6 + carried.shape[2]))
    out[:, :, 4] = -1.0
    for image in range(s.shape[0]):
        ks, cs = np.nonzero(s[image] > score_threshold)
        order = np.lexsort((cs, ks, -s[image, ks, cs]))  # the last key is the primary one
        kept: dict[int, list[np.ndarray]] = {}  # class → its kept boxes
        rows: list[list[float]] = []
        for j in order:
            if len(rows) == max_boxes:
                break
            k, c = int(ks[j]), int(cs[j])
            box = corners[image, k]
            same_class = kept.get(c, [])
            if same_class and np.any(_iou_matrix(box[None], np.array(same_class))[0] > iou_threshold):
                continue
            kept.setdefault(c, []).append(box)
            rows.append([*box, s[image, k, c], c, *carried[image, k]])
        if rows:
            out[image, : len(rows)] = rows
    return _out(out)


def yolo_decode(x: np.ndarray, *, anchors: tuple[tuple[float, float], ...], classes: int,
                stride: Pair, extras: int = 0) -> np.ndarray:
    """YOLOv3 decoding of a head ``[N, A·(5 + C + E), H, W]`` → ``[N, H·W·A, 4 + C + E]``.

    Channel a·(5 + C + E) + f holds field f of anchor a: tx, ty, tw, th, objectness, C class
    logits, then E extra values (YOLACT's mask coefficients). Row (i·W + j)·A + a of the result
    belongs to grid cell (row i, column j) and anchor a = (anchor_w, anchor_h) in input pixels;
    with σ the logistic function and ``stride = (sh, sw)``: cx = (σ(tx) + j)·sw, cy = (σ(ty) +
    i)·sh, w = anchor_w·e^tw, h = anchor_h·e^th; the row is (cx − w/2, cy − h/2, cx + w/2, cy +
    h/2, σ(objectness)·σ(logit_1), …, σ(objectness)·σ(logit_C), extra_1, …, extra_E), the extras
    as they are.
    """
    n, _, h, w = x.shape
    sh, sw = stride
    fields = 5 + classes + extras
    xf = _f64(x)
    rows, cols = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    per_anchor = []
    for a, (anchor_w, anchor_h) in enumerate(anchors):
        t = xf[:, a * fields : (a + 1) * fields]  # [N, 5 + C + E, H, W]
        cx = (_logistic(t[:, 0]) + cols) * sw
        cy = (_logistic(t[:, 1]) + rows) * sh
        with np.errstate(over="ignore"):
            bw, bh = anchor_w * np.exp(t[:, 2]), anchor_h * np.exp(t[:, 3])
        box = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        scores = _logistic(t[:, 4:5]) * _logistic(t[:, 5 : 5 + classes])
        per_anchor.append(np.concatenate([box, scores, t[:, 5 + classes :]], axis=1))
    y = np.stack(per_anchor, axis=-1)  # [N, 4 + C + E, H, W, A]
    return _out(y.reshape(n, 4 + classes + extras, h * w * len(anchors)).transpose(0, 2, 1))


def instance_masks(protos: np.ndarray, detections: np.ndarray, *, stride: Pair) -> np.ndarray:
    """YOLACT's assembly: prototypes ``[N, P, H, W]`` and detections ``[N, D, 6 + P]`` (nms rows
    whose extra columns are P mask coefficients) → masks ``[N, D, H, W]``.

    Mask d is σ(Σ_p coefficient_p · prototype_p) at the prototype pixels whose centre lies in
    detection d's box, 0 elsewhere: pixel (i, j) has its centre at ((j + ½)·sw, (i + ½)·sh)
    input pixels (``stride = (sh, sw)``) and lies in (x1, y1, x2, y2) when x1 ≤ x < x2 and y1 ≤
    y < y2. A padding row (score < 0) has an empty mask.
    """
    p, d = _f64(protos), _f64(detections)
    _, _, h, w = p.shape
    sh, sw = stride
    x = ((np.arange(w) + 0.5) * sw).reshape(1, 1, 1, w)
    y = ((np.arange(h) + 0.5) * sh).reshape(1, 1, h, 1)
    x1, y1, x2, y2, score = (d[..., f, None, None] for f in range(5))
    inside = (x >= x1) & (x < x2) & (y >= y1) & (y < y2) & (score >= 0)
    logits = np.einsum("ndp,nphw->ndhw", d[..., 6:], p)
    return _out(np.where(inside, _logistic(logits), 0.0))


# ---------------------------------------------------------------- fused epilogues and lowered forms


def epilogue(y: np.ndarray, activation: str, slope: float, residual: np.ndarray | None) -> np.ndarray:
    """act(y + residual): the work a fused conv/dense does after its sums.

    ``activation`` is "none", "leaky_relu" (with ``slope``) or the name of another activation
    op: "relu", "relu6", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh".
    """
    if residual is not None:
        y = add(y, residual)
    if activation == "none":
        return y
    if activation == "leaky_relu":
        return leaky_relu(y, slope=slope)
    return {"relu": relu, "relu6": relu6, "sigmoid": sigmoid, "hardsigmoid": hardsigmoid, "hardswish": hardswish,
            "silu": silu, "gelu": gelu, "gelu_tanh": gelu_tanh}[activation](y)


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per-channel scale and shift over axis 1: y[n, c, ...] = x[n, c, ...] · scale[c] + shift[c]."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return _out(_f64(x) * _f64(scale).reshape(shape) + _f64(shift).reshape(shape))


def reduce(x: np.ndarray, *, mode: str, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Mean, maximum or sum (``mode``) over ``axes``."""
    x64 = _f64(x)
    if mode == "mean":
        return _out(x64.mean(axis=tuple(axes), keepdims=keepdims))
    if mode == "sum":
        return _out(x64.sum(axis=tuple(axes), keepdims=keepdims))
    return _out(x64.max(axis=tuple(axes), keepdims=keepdims))
