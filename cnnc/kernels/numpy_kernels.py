"""Fast NumPy kernels for every op of the cnnc IR (the API of docs/kernels.md).

These functions are used by generated code: the code generator copies each used function,
and the helpers it calls (transitively), out of this module's AST into the generated
module.  Hence the module only imports ``numpy as np`` and ``math``, defines top-level
functions only (private helpers start with ``_``) and keeps no module-level state. The one
import from cnnc is optional: ``_compiled``, the loops numba compiles where the `fast` extra is
installed (cnnc/kernels/compiled.py). The code generator copies that ``try`` block too, so a
generated module uses the loops where cnnc is installed and NumPy alone elsewhere.

All arrays are float32 in NCHW layout, conv weights OIHW; ``pads`` is always
``(top, left, bottom, right)``.  No kernel loops in Python over pixels, batch items or
channels; the only Python loops are over kernel taps (a handful of iterations, each a
vectorised operation over the whole tensor).
"""

import math

import numpy as np

try:  # loops compiled by numba, used where cnnc's `fast` extra is installed (docs/kernels.md)
    from cnnc.kernels import compiled as _compiled
except ImportError:  # NumPy alone
    _compiled = None  # type: ignore[assignment]

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _pad_into(x: np.ndarray, hp: int, wp: int, top: int, left: int, fill: float) -> np.ndarray:
    """Return a new ``[N, C, hp, wp]`` array filled with ``fill`` holding ``x`` at (top, left).

    Rows/columns of ``x`` that would fall outside the new array are dropped.
    """
    n, c, h, w = x.shape
    out = np.empty((n, c, hp, wp), dtype=np.float32)
    hh = min(h, hp - top)
    ww = min(w, wp - left)
    # fill only the border strips, then copy the interior: one pass over the output
    out[:, :, :top] = fill
    out[:, :, top + hh:] = fill
    out[:, :, top:top + hh, :left] = fill
    out[:, :, top:top + hh, left + ww:] = fill
    out[:, :, top:top + hh, left:left + ww] = x[:, :, :hh, :ww]
    return out


def _bias_copy(y: np.ndarray, b) -> np.ndarray:
    """Contiguous float32 copy of the (possibly strided) view ``y`` ``[N, O, H, W]`` plus bias."""
    out = np.empty(y.shape, dtype=np.float32)
    if b is None:
        np.copyto(out, y)
    else:
        np.add(y, b.astype(np.float32, copy=False)[:, None, None], out=out)
    return out


def _conv_1x1(x: np.ndarray, w: np.ndarray, b, sh: int, sw: int, groups: int) -> np.ndarray:
    """1x1 unpadded convolution as a plain (batched) GEMM, strided input subsampled first."""
    if sh != 1 or sw != 1:
        x = np.ascontiguousarray(x[:, :, ::sh, ::sw])
    n, c, h, wd = x.shape
    o = w.shape[0]
    if groups == 1:
        y = np.matmul(w.reshape(o, c), x.reshape(n, c, h * wd))
    else:
        y = np.matmul(w.reshape(groups, o // groups, c // groups),
                      x.reshape(n, groups, c // groups, h * wd))
    y = y.reshape(n, o, h, wd)
    if b is not None:
        y += b.astype(np.float32, copy=False)[:, None, None]
    return y


def _conv_depthwise(x: np.ndarray, w: np.ndarray, b, sh: int, sw: int, pads, dh: int,
                    dw: int, ho: int, wo: int) -> np.ndarray:
    """Depthwise conv (groups == C, O = C * multiplier): channels-last for multiplier 1
    (_depthwise_channels_last), else a loop over the kernel taps in NCHW.

    A batch runs one image at a time (the channels-last kernel loops over the images itself):
    every strategy is memory-bound passes over the tensor, and one image's passes stay in cache
    where a batch's do not (measured 1.7–2x per image at batch 8 on MobileNetV2's large layers)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    if o == c:
        return _depthwise_channels_last(x, w, b, (sh, sw), pads, (dh, dw), (ho, wo), "nchw", "nchw")
    if n > 1:
        out = np.empty((n, o, ho, wo), dtype=np.float32)
        for i in range(n):
            out[i:i + 1] = _conv_depthwise(x[i:i + 1], w, b, sh, sw, pads, dh, dw, ho, wo)
        return out
    top, left, bottom, right = pads
    hp = max(h + top + bottom, (ho - 1) * sh + dh * (kh - 1) + 1)
    wp = max(wd + left + right, (wo - 1) * sw + dw * (kw - 1) + 1)
    return _conv_depthwise_nchw(x, w, b, sh, sw, pads, dh, dw, ho, wo, hp, wp)


def _conv_depthwise_nchw(x: np.ndarray, w: np.ndarray, b, sh: int, sw: int, pads, dh: int, dw: int,
                         ho: int, wo: int, hp: int, wp: int) -> np.ndarray:
    """Depthwise conv with a depth multiplier m > 1, in NCHW: each tap one multiply-add over image
    rows, each input channel feeding its m outputs."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    m = o // c
    top, left, bottom, right = pads
    xp = _pad_into(x, hp, wp, top, left, 0.0) if top or left or bottom or right else x
    xp = xp[:, :, None]  # [N, C, 1, Hp, Wp]
    wt = w.reshape(c, m, kh, kw)
    y = np.empty((n, c, m, ho, wo), dtype=np.float32)
    tmp = np.empty_like(y)
    hs = (ho - 1) * sh + 1
    ws = (wo - 1) * sw + 1
    for u in range(kh):
        for v in range(kw):
            win = xp[..., u * dh:u * dh + hs:sh, v * dw:v * dw + ws:sw]
            if u == 0 and v == 0:
                np.multiply(win, wt[..., u, v, None, None], out=y)
            else:
                np.multiply(win, wt[..., u, v, None, None], out=tmp)
                y += tmp
    y = y.reshape(n, o, ho, wo)
    if b is not None:
        y += b.astype(np.float32, copy=False)[:, None, None]
    return y


def _im2col_batch_shares_gemm(n: int, groups: int, ho: int, wo: int) -> bool:
    """Whether an im2col conv of a batch of `n` puts every image's columns in one GEMM (small
    outputs, one group: _conv_im2col)."""
    return n > 1 and groups == 1 and ho * wo <= 256


def _im2col_by_image(n: int, w: np.ndarray, groups: int, ho: int, wo: int) -> bool:
    """Whether an im2col conv of a batch of `n` runs image by image: when its columns pass 8 MB
    in all (and the batch's columns would not share one GEMM)."""
    _, cg, kh, kw = w.shape
    return (n > 1 and not _im2col_batch_shares_gemm(n, groups, ho, wo)
            and n * cg * groups * kh * kw * ho * wo * 4 > 8 * 1024 * 1024)


def _conv_im2col(x: np.ndarray, w: np.ndarray, b, sh: int, sw: int, pads, dh: int, dw: int,
                 groups: int, ho: int, wo: int, out=None) -> np.ndarray:
    """General conv: im2col from a strided view of the padded input, one GEMM per group (into
    ``out`` when given, one image's ``[1, O, Ho, Wo]``).

    At batch > 1 the batch is laid out as suits the GEMM (measured on ResNet-18's layers at batch
    8, docs/kernels.md): small outputs (≤ 256 pixels, one group) put every image's columns side
    by side, one GEMM [O, K]·[K, N·Ho·Wo] instead of N skinny ones (7x7 and 14x14 layers: 1.1–1.35x);
    columns of more than 8 MB in all run image by image (conv, _im2col_by_image), so that each
    image's columns are still in cache when its GEMM reads them (the 7x7 stride-2 stem: 1.4x)."""
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    top, left, bottom, right = pads
    hp = (ho - 1) * sh + dh * (kh - 1) + 1
    wp = (wo - 1) * sw + dw * (kw - 1) + 1
    if top or left or bottom or right or hp > h or wp > wd:
        xp = _pad_into(x, max(hp, h + top), max(wp, wd + left), top, left, 0.0)
    else:
        xp = np.ascontiguousarray(x)
    if _im2col_batch_shares_gemm(n, groups, ho, wo):
        return _im2col_batch_columns(xp, w, b, sh, sw, dh, dw, ho, wo)
    s0, s1, s2, s3 = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp,
        shape=(n, groups, cg, kh, kw, ho, wo),
        strides=(s0, cg * s1, s1, dh * s2, dw * s3, sh * s2, sw * s3),
        writeable=False,
    )
    if out is None:
        out = np.empty((n, o, ho, wo), dtype=np.float32)
    k = cg * kh * kw
    if b is not None and groups == 1 and k <= 256:
        # Few rows of columns (a network's first conv): the bias rides in the GEMM, a row of ones
        # under the columns (copied out of the view here rather than inside matmul) and the bias
        # as the weight's last column, which saves a pass over the large output (VGG-16's
        # 3-channel first conv 1.14–1.33x, the 7x7 stems 1.02–1.09x). With thousands of rows the
        # explicit copy is slower than matmul's own (512→512 at 7x7: 0.69x).
        cols = np.empty((n, k + 1, ho * wo), dtype=np.float32)
        np.copyto(cols[:, :k].reshape(n, cg, kh, kw, ho, wo), view[:, 0])
        cols[:, k] = 1.0
        wb = np.empty((o, k + 1), dtype=np.float32)
        wb[:, :k] = w.reshape(o, k)
        wb[:, k] = b
        np.matmul(wb, cols, out=out.reshape(n, o, ho * wo))
        return out
    np.matmul(w.reshape(groups, o // groups, k), view.reshape(n, groups, k, ho * wo),
              out=out.reshape(n, groups, o // groups, ho * wo))
    if b is not None:
        out += b.astype(np.float32, copy=False)[:, None, None]
    return out


def _im2col_batch_columns(xp: np.ndarray, w: np.ndarray, b, sh: int, sw: int, dh: int, dw: int,
                          ho: int, wo: int) -> np.ndarray:
    """im2col of the padded ``xp`` with the whole batch's columns in one matrix
    ``[C·kh·kw, N·Ho·Wo]`` (one group): one GEMM, whose ``[O, N, Ho·Wo]`` result the bias copy
    writes out as ``[N, O, Ho, Wo]``."""
    n, c, _, _ = xp.shape
    o, _, kh, kw = w.shape
    s0, s1, s2, s3 = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, shape=(c, kh, kw, n, ho, wo),
                                           strides=(s1, dh * s2, dw * s3, s0, sh * s2, sw * s3), writeable=False)
    y = np.matmul(w.reshape(o, c * kh * kw), view.reshape(c * kh * kw, n * ho * wo))
    return _bias_copy(y.reshape(o, n, ho, wo).transpose(1, 0, 2, 3), b)


def _conv_shifted(x: np.ndarray, w: np.ndarray, b, pads, dh: int, dw: int, groups: int,
                  ho: int, wo: int) -> np.ndarray:
    """Stride-1 conv as a sum over taps of GEMMs on shifted contiguous windows.

    The padded input is laid out as ``[G, C/G, N*Hp*Wp]`` (batch folded into the GEMM's
    column dimension).  For tap (u, v) the window is the flat slice starting at
    ``u*dh*Wp + v*dw``; output column ``n*Hp*Wp + i*Wp + j`` is output pixel (n, i, j)
    (columns with j >= Wo or i >= Ho are junk and cropped at the end).  No im2col copy.
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    top, left, bottom, right = pads
    hp = h + top + bottom
    wp = wd + left + right
    plane = hp * wp
    total = n * plane
    extra = (kh - 1) * dh * wp + (kw - 1) * dw
    buf = np.zeros((c, total + extra), dtype=np.float32)
    buf[:, :total].reshape(c, n, hp, wp)[:, :, top:top + h, left:left + wd] = x.transpose(1, 0, 2, 3)
    buf = buf.reshape(groups, cg, total + extra)
    wt = np.ascontiguousarray(w.reshape(groups, og, cg, kh, kw).transpose(3, 4, 0, 1, 2))
    y = np.matmul(wt[0, 0], buf[:, :, :total])  # tap (0, 0); the others accumulate into y
    tmp = np.empty_like(y)
    for u in range(kh):
        for v in range(kw):
            if u or v:
                off = u * dh * wp + v * dw
                np.matmul(wt[u, v], buf[:, :, off:off + total], out=tmp)
                y += tmp
    y = y.reshape(o, n, hp, wp)[:, :, :ho, :wo].transpose(1, 0, 2, 3)
    return _bias_copy(y, b)


# ---------------------------------------------------------------------------------------
# convolutions and dense
# ---------------------------------------------------------------------------------------


def conv(x: np.ndarray, w: np.ndarray, b, *, stride, pads, dilation, groups: int, out_size,
           activation: str = "none", slope: float = 0.0, residual=None, layout_in: str = "nchw",
           layout_out: str = "nchw") -> np.ndarray:
    """2-D convolution, NCHW input, OIHW weights ``[O, C/groups, kh, kw]``, bias ``[O]`` or None;
    ``out_size`` (Ho, Wo) is the output's spatial size, as the shape rule decided it.

    ``layout_in``/``layout_out`` "nhwc": the input is, or the output is to be, the array
    ``[N, H, W, C]`` (the channels_last pass sets them on 1x1 and depthwise convs only, and never
    ``layout_out`` with a residual): see _conv_channels_last.

    Dispatch: 1x1 unpadded convs are plain GEMMs; depthwise convs (groups == C) are one sum of
    products over their taps channels-last (multiplier 1, _depthwise_channels_last) or a loop over
    the taps in NCHW (multipliers > 1);
    everything else uses im2col (strided view of the padded input + one
    batched GEMM per group), except stride-1 convs with many channels per group whose
    column matrix would exceed 64 MB: those use shifted GEMMs (same speed when measured,
    a fraction of the memory). A fused epilogue, act(y + residual), runs in place on the
    fresh output.
    """
    x = x.astype(np.float32, copy=False)
    w = w.astype(np.float32, copy=False)
    loops = _loops()
    if loops is not None and w.shape[1] == 1 and groups == w.shape[0] == _logical_shape(x, layout_in)[1] > 1:
        return _depthwise_compiled(loops, x, w, b, stride, pads, dilation, out_size, layout_in, layout_out,
                                   activation, slope, residual)
    if layout_in != "nchw" or layout_out != "nchw":
        if loops is not None and _loop_activation(activation) >= 0:  # a 1x1 conv: depthwise ones went above
            y = _conv_channels_last(x, w, None, stride, pads, dilation, out_size, layout_in, layout_out)
            return _fused_epilogue(loops, y, b, activation, residual, layout_out)
        y = _conv_channels_last(x, w, b, stride, pads, dilation, out_size, layout_in, layout_out)
        return _epilogue(y, activation, slope, residual)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    top, left, bottom, right = pads
    ho, wo = out_size
    if kh == 1 and kw == 1 and not (top or left or bottom or right):
        path = "1x1"
    elif groups == c and cg == 1 and groups > 1:
        path = "depthwise"
    elif (sh == 1 and sw == 1 and cg >= 128 and min(top, left, bottom, right) >= 0
            and n * c * kh * kw * ho * wo * 4 > 64 * 1024 * 1024):
        path = "shifted"
    elif _im2col_by_image(n, w, groups, ho, wo):  # each image's GEMM and epilogue while it is in cache
        path = "by_image"
    else:
        path = "im2col"
    if loops is not None and _loop_activation(activation) >= 0 and path in ("1x1", "im2col"):
        # the bias, the residual and the activation as one compiled loop after the GEMM
        y = (_conv_1x1(x, w, None, sh, sw, groups) if path == "1x1"
             else _conv_im2col(x, w, None, sh, sw, pads, dh, dw, groups, ho, wo))
        return _fused_epilogue(loops, y, b, activation, residual)
    if path == "1x1":
        y = _conv_1x1(x, w, b, sh, sw, groups)
    elif path == "depthwise":
        y = _conv_depthwise(x, w, b, sh, sw, pads, dh, dw, ho, wo)
    elif path == "shifted":
        y = _conv_shifted(x, w, b, pads, dh, dw, groups, ho, wo)
    elif path == "by_image":
        y = np.empty((n, o, ho, wo), dtype=np.float32)
        for i in range(n):
            _conv_im2col(x[i:i + 1], w, b, sh, sw, pads, dh, dw, groups, ho, wo, out=y[i:i + 1])
            _epilogue(y[i:i + 1], activation, slope, None if residual is None else residual[i:i + 1])
        return y
    else:
        y = _conv_im2col(x, w, b, sh, sw, pads, dh, dw, groups, ho, wo)
    return _epilogue(y, activation, slope, residual)


def _fused_epilogue(loops, y: np.ndarray, b, activation: str, residual, layout: str = "nchw") -> np.ndarray:
    """act(y + bias + residual) in place in the fresh ``y`` (NCHW, or ``layout`` "nhwc") as one
    compiled loop (numba_loops.bias_activation, bias_activation_last) where NumPy makes a pass
    for each term (MobileNetV2's 16→96 expansion at 112x112 channels-last: 4.8 → 3.1 ms)."""
    if layout == "nhwc":
        o = y.shape[-1]
        fused = _loop_residual(None if residual is None else residual.reshape(-1, o), 2)
        loops.bias_activation_last(y.reshape(-1, o), _loop_bias(b, o), fused, _loop_activation(activation))
        return y
    n, o = y.shape[:2]
    fused = _loop_residual(None if residual is None else residual.reshape(n, o, -1), 3)
    loops.bias_activation(y.reshape(n, o, -1), _loop_bias(b, o), fused, _loop_activation(activation))
    return y


def _loops():
    """The compiled loops (cnnc/kernels/compiled.py's `loops()`), or None: NumPy alone."""
    return None if _compiled is None else _compiled.loops()


def _loop_bias(b, channels: int) -> np.ndarray:
    """A bias as the compiled loops take it: contiguous float32, zeros for none."""
    return np.zeros(channels, np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32)


def _loop_residual(residual, ndim: int) -> np.ndarray:
    """A residual as the compiled loops take it: contiguous float32, or an empty ``ndim``-d array
    for none."""
    return np.empty((0,) * ndim, np.float32) if residual is None else np.ascontiguousarray(residual, dtype=np.float32)


def _loop_activation(activation: str) -> int:
    """The code of an activation the compiled loops apply as they store (numba_loops: 0 none,
    1 relu, 2 relu6), or -1 for the others, which run as the epilogue after the loop."""
    return {"none": 0, "relu": 1, "relu6": 2}.get(activation, -1)


def _logical_shape(x: np.ndarray, layout: str) -> tuple:
    """(N, C, H, W) of an image batch laid out as ``layout`` ("nchw" or "nhwc")."""
    if layout == "nhwc":
        n, h, wd, c = x.shape
        return n, c, h, wd
    return x.shape


def _conv_channels_last(x: np.ndarray, w: np.ndarray, b, stride, pads, dilation, out_size, layout_in: str,
                        layout_out: str) -> np.ndarray:
    """A 1x1 conv (stride 1, unpadded, one group) or a depthwise conv (multiplier 1) with a
    channels-last input and/or output ``[N, H, W, C]`` (the channels_last pass; docs/passes.md).

    1x1: one GEMM per image, whose operands BLAS reads transposed as they lie: ``[H·W, C]·[C, O]``
    for a channels-last result, ``[O, C]·[C, H·W]`` for an NCHW one. Depthwise:
    _depthwise_channels_last, with no transpose where the value is channels-last."""
    o, cg, kh, kw = w.shape
    n, c, h, wd = _logical_shape(x, layout_in)
    if kh == kw == 1 and cg == c and stride == (1, 1) and not any(pads):
        w2 = w.reshape(o, c)
        pixels = x.reshape(n, h * wd, c) if layout_in == "nhwc" else x.reshape(n, c, h * wd).transpose(0, 2, 1)
        if layout_out == "nhwc":
            y = np.matmul(pixels, w2.T)  # [N, H·W, O]
            if b is not None:
                y += b.astype(np.float32, copy=False)
            return y.reshape(n, h, wd, o)
        y = np.matmul(w2, pixels.transpose(0, 2, 1))  # [N, O, H·W]
        if b is not None:
            y += b.astype(np.float32, copy=False)[:, None]
        return y.reshape(n, o, h, wd)
    if cg != 1 or o != c:
        raise ValueError(f"channels-last conv: only 1x1 and depthwise convs, got weight {w.shape} for {c} channels")
    return _depthwise_channels_last(x, w, b, stride, pads, dilation, out_size, layout_in, layout_out)


def _depthwise_channels_last(x: np.ndarray, w: np.ndarray, b, stride, pads, dilation, out_size, layout_in: str,
                             layout_out: str) -> np.ndarray:
    """Depthwise conv (multiplier 1) channels-last: the padded image is ``[Hp, Wp, C]``, so each
    tap's multiply-add runs over whole contiguous channel vectors, not over image rows of Wo
    pixels (short for small images, strided for stride 2). The input is read as it lies
    (``layout_in`` "nhwc") or transposed once; the result is kept channels-last or transposed
    once. The taps are one ``einsum`` over a strided view ``[Ho, Wo, kh, kw, C]`` of the padded
    image: NumPy's sum-of-products loop makes no temporary and no pass per tap (1.5–2.7x the
    tap-by-tap multiply-adds on MobileNetV2's layers, docs/kernels.md)."""
    o, cg, kh, kw = w.shape
    n, c, h, wd = _logical_shape(x, layout_in)
    ho, wo = out_size
    sh, sw = stride
    dh, dw = dilation
    top, left, bottom, right = pads
    hp = max(h + top + bottom, (ho - 1) * sh + dh * (kh - 1) + 1)
    wp = max(wd + left + right, (wo - 1) * sw + dw * (kw - 1) + 1)
    source = x if layout_in == "nhwc" else x.transpose(0, 2, 3, 1)
    wt = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))  # [kh, kw, C]
    y = np.empty((n, ho, wo, c), dtype=np.float32)
    xp = np.zeros((hp, wp, c), dtype=np.float32)
    rows, cols = min(h, hp - top), min(wd, wp - left)
    # With unit column stride a tap's window row is one contiguous run of Wo·C values, so the sum
    # of products can run over whole rows (the weights tiled along them): long inner loops where
    # few channels would make short ones (c32 112x112: 2.9 → 0.75 ms); past ~192 channels the
    # per-pixel form is as fast and needs no tiled weights.
    rowwise = sw == 1 and c <= 192
    tiled = np.tile(wt, (1, 1, wo)) if rowwise else wt  # [kh, kw, Wo·C] or [kh, kw, C]
    for i in range(n):  # one image at a time: its padded copy stays in cache
        xp[top:top + rows, left:left + cols] = source[i, :rows, :cols]
        s0, s1, s2 = xp.strides
        if rowwise:
            taps = np.lib.stride_tricks.as_strided(xp, (ho, kh, kw, wo * c), (sh * s0, dh * s0, dw * s1, s2),
                                                   writeable=False)
            np.einsum("huvx,uvx->hx", taps, tiled, out=y[i].reshape(ho, wo * c))
        else:
            taps = np.lib.stride_tricks.as_strided(xp, (ho, wo, kh, kw, c), (sh * s0, sw * s1, dh * s0, dw * s1, s2),
                                                   writeable=False)
            # one sum-of-products loop over the taps per output vector: no temporaries, no pass per tap
            np.einsum("hwuvc,uvc->hwc", taps, tiled, out=y[i])
    if b is not None:
        y += b.astype(np.float32, copy=False)
    if layout_out == "nhwc":
        return y
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _depthwise_compiled(loops, x: np.ndarray, w: np.ndarray, b, stride, pads, dilation, out_size, layout_in: str,
                        layout_out: str, activation: str, slope: float, residual) -> np.ndarray:
    """Depthwise conv (multiplier 1) as one compiled loop (cnnc/kernels/numba_loops.py) over the
    channels-last input: every output vector is its taps' sum plus the bias, and a ReLU or ReLU6
    is applied as it is stored (other activations, and a residual, follow as the epilogue). An
    NCHW input or output is transposed once, as in _depthwise_channels_last."""
    c = w.shape[0]
    ho, wo = out_size
    source = np.ascontiguousarray(x if layout_in == "nhwc" else x.transpose(0, 2, 3, 1))
    wt = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))  # [kh, kw, C]
    fused = _loop_activation(activation) if residual is None else -1  # -1: all of the epilogue follows
    y = np.empty((source.shape[0], ho, wo, c), dtype=np.float32)
    loops.depthwise(source, wt, _loop_bias(b, c), stride[0], stride[1], pads[0], pads[1], dilation[0], dilation[1],
                    max(fused, 0), y)
    if layout_out != "nhwc":
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return y if fused >= 0 else _epilogue(y, activation, slope, residual)


def _workspace_elements(kernel: str, x_shape, out_shape, weight_shape=None, kwargs=None) -> int:
    """Float32 elements of the largest temporaries the kernel called `kernel` allocates for these
    shapes, beyond its output (the run's memory estimate, cnnc/runtime/memory.py). It follows
    the dispatch above: im2col columns, the padded copy, Winograd's per-band tiles, a depthwise
    image's taps; 0 for kernels that need about nothing but their output. Not used by
    generated code."""
    kwargs = kwargs or {}
    n, c = x_shape[0], x_shape[1]
    spatial = math.prod(x_shape[2:]) if len(x_shape) > 2 else 1
    out = math.prod(out_shape)
    if kernel == "conv":
        o, cg, kh, kw = weight_shape
        if kh == kw == 1 and not any(kwargs.get("pads", (0, 0, 0, 0))):
            return 0
        padded = n * c * (x_shape[2] + 2 * kh) * (x_shape[3] + 2 * kw)
        if kwargs.get("groups", 1) == c and cg == 1 and c > 1:  # depthwise: one image at a time
            return (padded + 3 * out) // n
        return padded + n * c * kh * kw * out_shape[2] * out_shape[3]  # the padded copy and the columns
    if kernel == "winograd_conv":
        o = weight_shape[1]
        tw = -(-out_shape[3] // 4)
        tiles = _winograd_band_rows(tw) * tw  # one band
        return c * (4 * tiles // tw + 2) * (4 * tw + 2) + 36 * (c + o) * tiles + 16 * o * tiles
    if kernel in ("max_pool", "avg_pool", "conv_transpose", "lrn", "adaptive_pool"):
        return n * c * spatial + out  # a padded (or squared) copy, and the rows pass
    return 0


def _winograd_f4x3():
    """Winograd F(4x4, 3x3) matrices (Lavin & Gray 2016, points 0, ±1, ±2, ∞), float64:
    ``Bᵀ`` [6, 6] (input tile), ``G`` [6, 3] (filter), ``Aᵀ`` [4, 6] (output tile), so that a 4x4
    output tile is ``Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ)] A`` for a 6x6 input tile ``d``."""
    bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=np.float64)
    g = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=np.float64)
    at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], dtype=np.float64)
    return bt, g, at


def _winograd_band_rows(tw: int) -> int:
    """Tile rows per band of a Winograd output `tw` tiles wide: about 512 tiles, measured
    (docs/kernels.md); the memory estimate (`_workspace_elements`) sizes the same band."""
    return max(1, 512 // tw)


def _winograd_bands(n: int, ho: int, wo: int) -> tuple[int, int, int, int]:
    """(tile rows, tiles per row, tile rows per band, images per band) of a Winograd output of
    `n` images ``ho`` x ``wo``; the last tiles are cropped. Small maps: a band holds whole images,
    up to 256 tiles, side by side in each GEMM (a 28x28 map's 49 tiles alone make [O, C]·[C, 49]
    GEMMs far from BLAS's peak; 512→512 28x28 at batch 4: 1.2x; bands of two 56x56 images, 392
    tiles, were 0.9x: docs/kernels.md)."""
    th, tw = -(-ho // 4), -(-wo // 4)
    return th, tw, min(th, _winograd_band_rows(tw)), max(1, min(n, 256 // (th * tw)))


def winograd_conv(x: np.ndarray, u: np.ndarray, b, *, pads, out_size, activation: str = "none",
                  slope: float = 0.0, residual=None) -> np.ndarray:
    """3x3 stride-1 convolution by Winograd F(4x4, 3x3); ``u`` ``[36, O, C]`` is the transformed
    weight ``G g Gᵀ`` (the ``winograd`` pass derives it once from the conv's ``[O, C, 3, 3]``).

    The output is computed one band of tile rows of one image at a time, so every temporary is
    band-sized (a few MB), never full-size: the band of the zero-padded input is copied into a
    reused buffer, its overlapping 6x6 tiles are gathered as ``[36, C·tiles]``, transformed by one
    GEMM with ``Bᵀ⊗Bᵀ`` [36, 36], multiplied by the weights in 36 GEMMs ``[O, C]·[C, tiles]``,
    transformed back by one GEMM with ``Aᵀ⊗Aᵀ`` [16, 36] and written (plus bias) into the output.
    4x fewer multiplies than direct convolution in the channel GEMMs; the transforms' extra
    rounding is bounded in docs/kernels.md and tested in tests/test_winograd.py.
    """
    x = x.astype(np.float32, copy=False)
    u = u.astype(np.float32, copy=False)
    loops = _loops()
    if loops is not None:
        return _winograd_compiled(loops, x, u, b, pads, out_size, activation, slope, residual)
    bt, _, at = _winograd_f4x3()
    b36 = np.kron(bt, bt).astype(np.float32)  # vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d)
    a16 = np.kron(at, at).astype(np.float32)
    n, c, h, wd = x.shape
    o = u.shape[1]
    top, left = pads[0], pads[1]
    ho, wo = out_size
    th, tw, rb, g = _winograd_bands(n, ho, wo)
    wp = 4 * tw + 2
    band = np.zeros((g, c, 4 * rb + 2, wp), dtype=np.float32)
    s0, s1, s2, s3 = band.strides
    cols = min(wd, wp - left)
    y = np.empty((n, o, ho, wo), dtype=np.float32)
    bias = None if b is None else b.astype(np.float32, copy=False)[:, None, None]
    for i in range(0, n, g):
        k = min(g, n - i)  # images in this band
        for r0 in range(0, th, rb):
            r = min(rb, th - r0)
            lo = 4 * r0 - top  # band row q holds input row lo + q (zero outside the input)
            first, last = max(lo, 0), min(lo + 4 * r + 2, h)
            band[:k, :, :first - lo] = 0.0
            band[:k, :, first - lo:last - lo, left:left + cols] = x[i:i + k, :, first:last, :cols]
            band[:k, :, max(last - lo, 0):] = 0.0
            tiles = np.lib.stride_tricks.as_strided(band, shape=(6, 6, c, k, r, tw),
                                                    strides=(s2, s3, s1, s0, 4 * s2, 4 * s3), writeable=False)
            v = np.matmul(b36, tiles.reshape(36, c * k * r * tw)).reshape(36, c, k * r * tw)
            m = np.matmul(u, v)  # [36, O, tiles]
            t = np.matmul(a16, m.reshape(36, o * k * r * tw)).reshape(4, 4, o, k, r, tw)
            block = t.transpose(3, 2, 4, 0, 5, 1)  # [image, O, tile row, 4, tile, 4]: the output's order
            rows = min(4 * r, ho - 4 * r0)
            if ho % 4 == 0 and wo % 4 == 0:  # whole tiles: one pass straight into the output
                target = y[i:i + k, :, 4 * r0:4 * r0 + rows].reshape(k, o, r, 4, tw, 4)
            else:  # crop the last tiles: gather the band first, then copy its valid part
                block = block.reshape(k, o, 4 * r, 4 * tw)[:, :, :rows, :wo]
                target = y[i:i + k, :, 4 * r0:4 * r0 + rows]
            if bias is None:
                np.copyto(target, block)
            else:
                np.add(block, bias if target.ndim == 4 else bias[..., None, None], out=target)
    return _epilogue(y, activation, slope, residual)


def _winograd_compiled(loops, x: np.ndarray, u: np.ndarray, b, pads, out_size, activation: str, slope: float,
                       residual) -> np.ndarray:
    """winograd_conv with the transforms as compiled loops (cnnc/kernels/numba_loops.py): the
    input tiles' ``Bᵀ d B`` is written straight from ``x`` (no padded band, no gathered tiles),
    and ``Aᵀ M A`` goes straight into the output with the bias, the residual and a ReLU (other
    activations follow as the epilogue). Bands and images per band as in the NumPy path."""
    n, c, h, wd = x.shape
    o = u.shape[1]
    ho, wo = out_size
    th, tw, rb, g = _winograd_bands(n, ho, wo)
    x = np.ascontiguousarray(x)
    bias, fused = _loop_bias(b, o), _loop_residual(residual, 4)
    # ReLU only: a ReLU6 branch made the loop 15% slower (numba_loops.py); ReLU6 follows as the epilogue
    relu = activation == "relu"
    y = np.empty((n, o, ho, wo), dtype=np.float32)
    v_buffer = np.empty(36 * c * g * rb * tw, dtype=np.float32)
    m_buffer = np.empty(36 * o * g * rb * tw, dtype=np.float32)
    # Many channels on a small map (at most 64 tiles, so bands are whole images): the input
    # transform runs channels-last, from a zero-padded copy of each band (its pads stay zero).
    band = np.zeros((g, 4 * th + 2, 4 * tw + 2, c), dtype=np.float32) if c >= 128 and th * tw <= 64 else None
    for i in range(0, n, g):
        k = min(g, n - i)  # images in this band
        for r0 in range(0, th, rb):
            r = min(rb, th - r0)
            tiles = k * r * tw  # contiguous views of the buffers: one compiled form of each loop
            m = m_buffer[:36 * o * tiles].reshape(36, o, tiles)
            if band is None:
                v = v_buffer[:36 * c * tiles].reshape(36, c, tiles)
                loops.winograd_input(x, i, k, r0, r, pads[0], pads[1], tw, v)
            else:
                v = _winograd_input_channels_last(loops, x, i, k, pads, band, v_buffer)
            np.matmul(u, v, out=m)
            loops.winograd_output(m, i, k, r0, r, tw, bias, fused, relu, y)
    return _epilogue(y, "none" if relu else activation, slope, None)


def _winograd_input_channels_last(loops, x: np.ndarray, first: int, images: int, pads, band: np.ndarray,
                                  v_buffer: np.ndarray) -> np.ndarray:
    """``V [36, C, tiles]`` (Bᵀ d B) of images ``first``… whole, as _winograd_compiled's NCHW loop
    gives it, computed channels-last: the images are copied into ``band`` (zero-padded,
    ``[g, 4·th+2, 4·tw+2, C]``), whose tiles the compiled loop transforms a vector of channels at a
    time into ``[36, tiles, C]``; the result is that array transposed, which the GEMMs read as it
    lies (BLAS takes the transpose as it reads). With 128 channels or more on a small map the
    NCHW loop has too few tiles per channel to run fast: 256 channels at 14x14 1.6x (one image)
    and 1.85x (four), 512 at 7x7 1.35x, 128 at 28x28 0.96x alone and 1.17x four at a time, GEMM
    included (docs/kernels.md)."""
    _, c, h, wd = x.shape
    _, hp, wp, _ = band.shape
    th, tw = (hp - 2) // 4, (wp - 2) // 4
    top, left = pads[0], pads[1]
    rows, cols = min(h, hp - top), min(wd, wp - left)
    band[:images, top:top + rows, left:left + cols] = x[first:first + images, :, :rows, :cols].transpose(0, 2, 3, 1)
    tiles = images * th * tw
    v = v_buffer[:36 * tiles * c].reshape(36, tiles, c)
    loops.winograd_input_channels_last(band[:images], th, tw, v)
    return v.transpose(0, 2, 1)


def conv_transpose(x: np.ndarray, w: np.ndarray, b, *, stride, pads, output_padding,
                     dilation, groups: int) -> np.ndarray:
    """Transposed 2-D convolution, weights ``[C, O/groups, kh, kw]`` (PyTorch layout).

    One batched GEMM per group gives every tap's contribution; col2im adds each tap into a
    strided slice of the full output (no duplicates within one tap), which is then cropped
    by the pads (top/left at the start, bottom/right at the end).
    """
    x = x.astype(np.float32, copy=False)
    w = w.astype(np.float32, copy=False)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    sh, sw = stride
    dh, dw = dilation
    oph, opw = output_padding
    top, left, bottom, right = pads
    hf = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    wf = (wd - 1) * sw + dw * (kw - 1) + 1 + opw
    wm = w.reshape(groups, cg, og * kh * kw).transpose(0, 2, 1)  # [G, Og*kh*kw, Cg]
    cols = np.matmul(wm, x.reshape(n, groups, cg, h * wd))  # [N, G, Og*kh*kw, H*W]
    cols = cols.reshape(n, groups * og, kh, kw, h, wd)
    y = np.zeros((n, groups * og, hf, wf), dtype=np.float32)
    hs = (h - 1) * sh + 1
    ws = (wd - 1) * sw + 1
    for u in range(kh):
        for v in range(kw):
            y[:, :, u * dh:u * dh + hs:sh, v * dw:v * dw + ws:sw] += cols[:, :, u, v]
    if top or left or bottom or right:
        y = y[:, :, top:hf - bottom, left:wf - right]
        return _bias_copy(y, b)
    if b is not None:
        y += b.astype(np.float32, copy=False)[:, None, None]
    return y


def dense(x: np.ndarray, w: np.ndarray, b, *, activation: str = "none", slope: float = 0.0) -> np.ndarray:
    """Fully connected layer: ``[N, F]`` → ``[N, O]`` or ``[N, F, 1, 1]`` → ``[N, O, 1, 1]``.

    The GEMM is ``W [O, F] · xᵀ [F, N]``, the weight as BLAS's first operand: for a batch of 2 to
    32 OpenBLAS runs it up to 2x faster than ``x · Wᵀ`` (VGG-16's 4096x25088 layer at batch 4,
    one thread: 100 → 61 ms; docs/kernels.md), at batch 1 both are the same matrix-vector product.
    The bias is added as the result is transposed into ``[N, O]``; a fused activation then runs in
    place on it.
    """
    x = x.astype(np.float32, copy=False)
    yt = np.matmul(w.astype(np.float32, copy=False), x.reshape(x.shape[0], -1).T)  # [O, N]
    y = np.empty(yt.T.shape, dtype=np.float32)
    if b is None:
        np.copyto(y, yt.T)
    else:
        np.add(yt.T, b.astype(np.float32, copy=False), out=y)
    if x.ndim == 4:
        y = y.reshape(y.shape[0], y.shape[1], 1, 1)
    return _epilogue(y, activation, slope, None)


# ---------------------------------------------------------------------------------------
# normalisation and activations
# ---------------------------------------------------------------------------------------


def _channel_shape(x: np.ndarray) -> tuple:
    """Broadcast shape of a per-channel (axis 1) vector against ``x``."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
               var: np.ndarray, *, eps: float, out=None) -> np.ndarray:
    """Inference batch norm over axis 1 as one fused per-channel multiply-add.

    ``out``: a float32 array of x's shape to write the result into (may be ``x`` itself).
    """
    scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    shp = _channel_shape(x)
    y = np.multiply(x, scale.astype(np.float32).reshape(shp), dtype=np.float32, out=out)
    y += shift.astype(np.float32).reshape(shp)
    return y


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float) -> np.ndarray:
    """Normalize over axis 1 (the channels) at each position, then ``γ[c]·x + β[c]``: ConvNeXt's
    LayerNorm2d on NCHW, ``nn.LayerNorm(C)`` on [N, C]. Biased variance, as PyTorch."""
    x = x.astype(np.float32, copy=False)
    centered = x - x.mean(axis=1, keepdims=True, dtype=np.float32)
    var = np.mean(np.square(centered), axis=1, keepdims=True, dtype=np.float32)
    centered *= 1.0 / np.sqrt(var + np.float32(eps))
    shape = _channel_shape(x)
    centered *= gamma.astype(np.float32, copy=False).reshape(shape)
    centered += beta.astype(np.float32, copy=False).reshape(shape)
    return centered


def group_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, groups: int, eps: float) -> np.ndarray:
    """Normalize each image over each group of C/groups channels and all positions, then
    ``γ[c]·x + β[c]`` (``nn.GroupNorm``; groups = C is instance norm). Biased variance."""
    x = x.astype(np.float32, copy=False)
    n = x.shape[0]
    flat = x.reshape(n, groups, -1)
    centered = flat - flat.mean(axis=2, keepdims=True, dtype=np.float32)
    var = np.mean(np.square(centered), axis=2, keepdims=True, dtype=np.float32)
    centered *= 1.0 / np.sqrt(var + np.float32(eps))
    y = centered.reshape(x.shape)
    shape = _channel_shape(x)
    y *= gamma.astype(np.float32, copy=False).reshape(shape)
    y += beta.astype(np.float32, copy=False).reshape(shape)
    return y


def layer_scale(x: np.ndarray, scale: np.ndarray, out=None) -> np.ndarray:
    """``x · scale[c]`` over axis 1; ``out`` may be ``x``."""
    return np.multiply(x, scale.astype(np.float32, copy=False).reshape(_channel_shape(x)), out=out)


def clip(x: np.ndarray, *, min: float, max: float, out=None) -> np.ndarray:  # noqa: A002 (ONNX's names)
    """``min(max(x, min), max)``; ``out`` may be ``x``."""
    return np.clip(x, np.float32(min), np.float32(max), out=out)


def prelu(x: np.ndarray, slope: np.ndarray, out=None) -> np.ndarray:
    """x where x ≥ 0, else slope[c]·x (a learned slope per channel, axis 1); ``out`` may be ``x``."""
    s = slope.astype(np.float32, copy=False).reshape(_channel_shape(x))
    return np.multiply(x, np.where(x >= 0, np.float32(1), s), out=out)


def relu(x: np.ndarray, out=None) -> np.ndarray:
    """max(x, 0); ``out`` (here and in the other elementwise kernels): an array of x's shape
    to write the result into, which may be ``x`` itself."""
    return np.maximum(x, np.float32(0.0), out=out)


def relu6(x: np.ndarray, out=None) -> np.ndarray:
    """min(max(x, 0), 6)."""
    return np.clip(x, np.float32(0.0), np.float32(6.0), out=out)


def hardsigmoid(x: np.ndarray, out=None) -> np.ndarray:
    """relu6(x + 3) / 6, in PyTorch's order of operations (add, clip, divide)."""
    y = np.add(x, np.float32(3.0), out=out)
    np.clip(y, np.float32(0.0), np.float32(6.0), out=y)
    y /= np.float32(6.0)
    return y


def hardswish(x: np.ndarray, out=None) -> np.ndarray:
    """x · relu6(x + 3) / 6, in PyTorch's order of operations (add, clip, multiply, divide)."""
    gate = np.add(x, np.float32(3.0))
    np.clip(gate, np.float32(0.0), np.float32(6.0), out=gate)
    y = np.multiply(x, gate, out=gate if out is None else out)
    y /= np.float32(6.0)
    return y


def silu(x: np.ndarray, out=None) -> np.ndarray:
    """x · sigmoid(x) as x / (1 + e^(−x)), PyTorch's formula: e^(−x) overflowing to ∞ (x below
    about −88) gives −0, and the negative tail keeps its relative accuracy."""
    d = np.negative(x)
    with np.errstate(over="ignore", under="ignore"):
        np.exp(d, out=d)
    d += np.float32(1.0)
    return np.divide(x, d, out=d if out is None else out)


def gelu(x: np.ndarray, out=None) -> np.ndarray:
    """x · Φ(x) = x · ½ erfc(−x/√2), the exact GELU, in float32 without SciPy.

    ½ erfc(|x|/√2) comes from Numerical Recipes' Chebyshev fit erfc(z) ≈ t · exp(−z² + P(t)),
    t = 1 / (1 + z/2), whose relative error is below 1.2e-7 for every z ≥ 0; then Φ(x) is
    that value for x < 0 and 1 minus it for x ≥ 0. So the result has float32 relative accuracy
    in the far negative tail too, where 1 + erf(x/√2) would cancel.
    """
    z = np.abs(x)
    z *= np.float32(0.7071067811865476)
    t = np.multiply(z, np.float32(0.5))
    t += np.float32(1.0)
    np.divide(np.float32(1.0), t, out=t)
    p = np.multiply(t, np.float32(0.17087277))
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196,
              1.00002368):
        p += np.float32(c)
        p *= t
    p -= np.float32(1.26551223)
    with np.errstate(over="ignore", under="ignore"):
        z *= z  # z² overflows to ∞ for |x| above 2.6e19: e^−∞ = 0, the exact limit
        p -= z
        np.exp(p, out=p)
    p *= t
    p *= np.float32(0.5)  # Φ(−|x|)
    phi = np.subtract(np.float32(1.0), p, out=z)
    np.copyto(phi, p, where=x < 0)
    return np.multiply(x, phi, out=out)


def gelu_tanh(x: np.ndarray, out=None) -> np.ndarray:
    """½ x (1 + tanh(u)), u = √(2/π) (x + 0.044715 x³) (PyTorch's approximate="tanh"), computed
    as x / (1 + e^(−2u)), the same value without the cancellation of 1 + tanh(u) for x < 0."""
    with np.errstate(over="ignore", under="ignore"):  # far out, x³ and e^(−2u) reach ∞ or 0: the limits
        d = np.multiply(x, x)
        d *= np.float32(0.044715)
        d += np.float32(1.0)
        d *= x
        d *= np.float32(-2.0 * 0.7978845608028654)
        np.exp(d, out=d)
    d += np.float32(1.0)
    return np.divide(x, d, out=d if out is None else out)


def sigmoid(x: np.ndarray, out=None) -> np.ndarray:
    """Logistic sigmoid, computed as 0.5·(1 + tanh(x/2)) (no overflow)."""
    y = np.multiply(x, np.float32(0.5), dtype=np.float32, out=out)
    np.tanh(y, out=y)
    y += np.float32(1.0)
    y *= np.float32(0.5)
    return y


def tanh(x: np.ndarray, out=None) -> np.ndarray:
    """Hyperbolic tangent."""
    return np.tanh(x, out=out)


def leaky_relu(x: np.ndarray, *, slope: float, out=None) -> np.ndarray:
    """x if x ≥ 0 else slope·x."""
    if out is None:
        return np.where(x >= 0, x, x * np.float32(slope))
    negative = x < 0  # taken before out (possibly x itself) is written
    np.copyto(out, x)
    np.multiply(out, np.float32(slope), out=out, where=negative)
    return out


def softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    y = x - np.max(x, axis=axis, keepdims=True)
    np.exp(y, out=y)
    y /= np.sum(y, axis=axis, keepdims=True)
    return y


def _lrn_denominator(x: np.ndarray, size: int, alpha: float, k: float, dtype) -> np.ndarray:
    """k + α·Σ x² over each channel's window c − ⌊size/2⌋ … c + ⌊(size−1)/2⌋, in ``dtype``: sums
    of ``size`` shifted channel slices of the zero-padded squared input (a loop over window
    offsets, exact in float32, unlike a cumulative-sum difference). lrn and its gradient share it."""
    n, c = x.shape[0], x.shape[1]
    lo = size // 2
    hi = (size - 1) // 2
    sq = np.zeros((n, c + lo + hi) + x.shape[2:], dtype=dtype)
    np.multiply(x, x, out=sq[:, lo:lo + c])
    acc = sq[:, 0:c].copy()
    for t in range(1, size):
        acc += sq[:, t:t + c]
    acc *= np.asarray(alpha, dtype)
    acc += np.asarray(k, dtype)
    return acc


def lrn(x: np.ndarray, *, size: int, alpha: float, beta: float, k: float) -> np.ndarray:
    """AlexNet local response normalisation across channels (α not divided by size)."""
    acc = _lrn_denominator(x, size, alpha, k, np.float32)
    np.power(acc, np.float32(-beta), out=acc)
    acc *= x
    return acc


# ---------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------


def _channel_slabs(x: np.ndarray, slab_bytes: int):
    """(image, first channel, last channel + 1) slabs of ``x`` ``[N, C, H, W]`` of at most
    ``slab_bytes`` each (at least one channel): a kernel whose channels are independent makes its
    passes over one slab while it is in cache, instead of over the whole tensor (max pooling
    ResNet's 112x112 stem at batch 8: 1.4x, measured, docs/kernels.md)."""
    n, c, h, wd = x.shape
    per = max(1, slab_bytes // max(1, h * wd * 4))
    for i in range(n):
        for first in range(0, c, per):
            yield i, first, min(c, first + per)


def _by_slabs(compute, x: np.ndarray, out_size, **kwargs) -> np.ndarray:
    """``compute(x, out_size=out_size, **kwargs)`` computed slab by slab (_channel_slabs, 512 KB:
    half of this machine's L2, with room for the padded copy and the passes' temporaries) into one
    ``[N, C, Ho, Wo]`` result; a tensor of one slab or less is computed whole."""
    n, c, h, wd = x.shape
    slab_bytes = 512 * 1024
    if n * c * h * wd * 4 <= slab_bytes:
        return compute(x, out_size=out_size, **kwargs)
    out = np.empty((n, c, *out_size), dtype=np.float32)
    for i, first, last in _channel_slabs(x, slab_bytes):
        out[i:i + 1, first:last] = compute(x[i:i + 1, first:last], out_size=out_size, **kwargs)
    return out


def max_pool(x: np.ndarray, *, kernel, stride, pads, dilation, out_size) -> np.ndarray:
    """Max pooling with −∞ padding to ``out_size`` (Ho, Wo); a loop over kernel taps, slab by
    slab (_by_slabs).

    Windows reaching past the bottom/right padding (a ceil_mode overhang) see −∞ there too.
    """
    return _by_slabs(_max_pool_slab, x, out_size, kernel=kernel, stride=stride, pads=pads, dilation=dilation)


def _max_pool_slab(x: np.ndarray, *, kernel, stride, pads, dilation, out_size) -> np.ndarray:
    """max_pool of one slab: the padded copy, then the window's rows, then its columns."""
    _, _, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    ho, wo = out_size
    hp = (ho - 1) * sh + dh * (kh - 1) + 1
    wp = (wo - 1) * sw + dw * (kw - 1) + 1
    if top or left or hp > h or wp > wd:
        xp = _pad_into(x, hp, wp, top, left, -np.inf)
    else:
        xp = x
    if sh == sw == 1:
        return _max_pool_flat(np.ascontiguousarray(xp), kh, kw, dh, dw, ho, wo)
    hs = (ho - 1) * sh + 1
    ws = (wo - 1) * sw + 1
    # Separable: the max over a window is the max over its columns of the max over its rows, so
    # kh - 1 + kw - 1 passes instead of kh·kw - 1 (4 instead of 8 for 3x3; exact, max is exact).
    rows = _fold(np.maximum, [xp[:, :, u * dh:u * dh + hs:sh, :wp] for u in range(kh)])  # [N, C, Ho, Wp]
    return _fold(np.maximum, [rows[..., v * dw:v * dw + ws:sw] for v in range(kw)])


def _fold(op: np.ufunc, views: list[np.ndarray]) -> np.ndarray:
    """``op`` (np.maximum, np.add) folded left to right over equally shaped ``views``, as a fresh
    array: the first two make it and the rest update it in place, a pass fewer than copying the
    first (max pools 1.05–1.13x)."""
    if len(views) == 1:
        return views[0].copy()
    out = op(views[0], views[1])
    for view in views[2:]:
        op(out, view, out=out)
    return out


def _max_pool_flat(xp: np.ndarray, kh: int, kw: int, dh: int, dw: int, ho: int, wo: int) -> np.ndarray:
    """Stride-1 max pooling of the padded ``xp`` seen as one flat array: a window's rows are the
    elements u·dh·Wp apart and its columns v·dw apart, so both separable passes are maxima of
    shifted 1-D views — long contiguous loops, where per-image-row slices of a 14x14 or 28x28 map
    make short ones (GoogLeNet's 3x3 stride-1 pools 1.2–1.4x). Windows that wrap past a row's
    or a plane's end are computed too and left out by the final strided gather."""
    n, c, hh, ww = xp.shape
    flat = xp.reshape(-1)
    length = flat.size - dh * (kh - 1) * ww
    rows = _fold(np.maximum, [flat[u * dh * ww:u * dh * ww + length] for u in range(kh)])
    length -= dw * (kw - 1)
    y = _fold(np.maximum, [rows[v * dw:v * dw + length] for v in range(kw)])
    item = y.itemsize
    return np.lib.stride_tricks.as_strided(y, (n, c, ho, wo), (c * hh * ww * item, hh * ww * item, ww * item, item),
                                           writeable=False).copy()


def _window_sum(a: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int) -> np.ndarray:
    """Sum of ``a[..., i*sh+u, j*sw+v]`` over taps (u, v), separably: the rows of each window
    first, then its columns (kh - 1 + kw - 1 passes instead of kh·kw - 1)."""
    hs = (ho - 1) * sh + 1
    ws = (wo - 1) * sw + 1
    wp = ws + kw - 1
    rows = _fold(np.add, [a[..., u:u + hs:sh, :wp] for u in range(kh)])
    return _fold(np.add, [rows[..., v:v + ws:sw] for v in range(kw)])


def avg_pool(x: np.ndarray, *, kernel, stride, pads, count_include_pad: bool, out_size) -> np.ndarray:
    """Average pooling to ``out_size`` (Ho, Wo) with PyTorch's divisor rules, slab by slab
    (_by_slabs).

    The divisor is a precomputed ``[Ho, Wo]`` count map: the window sum of a mask that is 1
    over the padded extent ``[-top, H+bottom)`` (count_include_pad; a ceil_mode overhang beyond
    it is not counted) or over the input.
    """
    return _by_slabs(_avg_pool_slab, x, out_size, kernel=kernel, stride=stride, pads=pads,
                     count_include_pad=count_include_pad)


def _avg_pool_slab(x: np.ndarray, *, kernel, stride, pads, count_include_pad: bool, out_size) -> np.ndarray:
    """avg_pool of one slab: separable window sums, divided by the count map."""
    _, _, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    ho, wo = out_size
    hp = (ho - 1) * sh + kh
    wp = (wo - 1) * sw + kw
    if top or left or hp > h or wp > wd:
        xp = _pad_into(x, hp, wp, top, left, 0.0)
    else:
        xp = x
    y = _window_sum(xp, kh, kw, sh, sw, ho, wo)
    mask = np.zeros((hp, wp), dtype=np.float32)
    if count_include_pad:
        mask[:h + top + bottom, :wd + left + right] = 1.0
    else:
        mask[top:top + h, left:left + wd] = 1.0
    counts = _window_sum(mask, kh, kw, sh, sw, ho, wo)
    np.maximum(counts, np.float32(1.0), out=counts)
    y /= counts
    return y


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """Mean over H and W: ``[N, C, H, W]`` → ``[N, C, 1, 1]``."""
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)


def global_max_pool(x: np.ndarray) -> np.ndarray:
    """Max over H and W: ``[N, C, H, W]`` → ``[N, C, 1, 1]``."""
    return np.max(x, axis=(2, 3), keepdims=True)


def adaptive_pool(x: np.ndarray, *, size, mode: str) -> np.ndarray:
    """Max or mean over PyTorch's adaptive bins: output row i covers input rows
    ⌊i·H/Ho⌋ … ⌈(i+1)·H/Ho⌉ − 1 (columns alike). A bin is a rectangle, so both reductions are
    separable: the rows of each bin first (Ho slices), then its columns (Wo slices)."""
    n, c, h, wd = x.shape
    ho, wo = size
    reduce = np.max if mode == "max" else np.mean
    rows = np.empty((n, c, ho, wd), dtype=np.float32)
    for i in range(ho):
        rows[:, :, i] = reduce(x[:, :, (i * h) // ho:-(-(i + 1) * h // ho)], axis=2)
    y = np.empty((n, c, ho, wo), dtype=np.float32)
    for j in range(wo):
        y[:, :, :, j] = reduce(rows[:, :, :, (j * wd) // wo:-(-(j + 1) * wd // wo)], axis=3)
    return y


def depthwise_pool(x: np.ndarray, *, size: int, mode: str) -> np.ndarray:
    """Pool groups of ``size`` consecutive channels (``mode`` "max" or "avg")."""
    n, c, h, wd = x.shape
    g = x.reshape(n, c // size, size, h, wd)
    if mode == "max":
        return np.max(g, axis=2)
    if mode == "avg":
        return g.mean(axis=2, dtype=np.float32)
    raise ValueError(f"depthwise_pool: unknown mode {mode!r}")


# ---------------------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------------------


def flatten(x: np.ndarray) -> np.ndarray:
    """``[N, ...]`` → ``[N, prod(...)]`` in C order."""
    return x.reshape(x.shape[0], -1)


def reshape(x: np.ndarray, *, shape) -> np.ndarray:
    """Reshape keeping the batch dimension: result ``[N, *shape]``."""
    return x.reshape((x.shape[0],) + tuple(shape))


def add(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """Elementwise sum with NumPy broadcasting; ``out`` may be ``a`` when nothing broadcasts."""
    return np.add(a, b, out=out)


def sub(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """a − b with broadcasting; ``out`` may be ``a``."""
    return np.subtract(a, b, out=out, dtype=np.float32)


def div(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """a / b with broadcasting (IEEE: x/0 is ±inf or nan); ``out`` may be ``a``."""
    return np.divide(a, b, out=out, dtype=np.float32)


def scalar_affine(x: np.ndarray, *, scale: float, shift: float, out=None) -> np.ndarray:
    """x·scale + shift with two numbers (`x * 0.5`, `x + 3`, `-x` in a .cnn file); ``out`` may be ``x``."""
    y = np.multiply(x, np.float32(scale), out=out, dtype=np.float32)
    if shift:
        y += np.float32(shift)
    return y


def mul(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """Elementwise product with NumPy broadcasting; ``out`` may be ``a`` when nothing broadcasts."""
    return np.multiply(a, b, out=out)


def concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    """Concatenate along ``axis``."""
    return np.concatenate(xs, axis=axis)


def _linear_matrix(n_in: int, scale: int, dtype=np.float32) -> np.ndarray:
    """``[n_in*scale, n_in]`` 1-D bilinear interpolation matrix (half-pixel, clamp at 0), built in
    float64 and given ``dtype`` (the backward kernel asks for its gradient's)."""
    n_out = n_in * scale
    src = (np.arange(n_out, dtype=np.float64) + 0.5) / scale - 0.5
    np.maximum(src, 0.0, out=src)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    m = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - lam)  # add.at: i0 == i1 at the clamped border, both weights land there
    np.add.at(m, (rows, i1), lam)
    return m.astype(dtype)


def upsample(x: np.ndarray, *, scale, mode: str) -> np.ndarray:
    """Integer-factor spatial upsampling, ``mode`` "nearest" or "bilinear".

    Bilinear matches ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` and is computed as two 1-D interpolation matmuls (W then H).
    """
    n, c, h, wd = x.shape
    sh, sw = scale
    if mode == "nearest":
        y = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, wd, sw))
        # When only size-1 axes grow, the reshape stays a read-only broadcast view; a fresh array
        # keeps the output writable (in-place ops downstream) like every other kernel's.
        return np.ascontiguousarray(y.reshape(n, c, h * sh, wd * sw))
    if mode == "bilinear":
        mh = _linear_matrix(h, sh)
        mw = _linear_matrix(wd, sw)
        t = np.matmul(x.reshape(n * c * h, wd), mw.T)  # [N*C*H, Wo]
        t = t.reshape(n * c, h, wd * sw)
        y = np.matmul(mh, t)  # [N*C, Ho, Wo]
        return y.reshape(n, c, h * sh, wd * sw)
    raise ValueError(f"upsample: unknown mode {mode!r}")


def pad(x: np.ndarray, *, pads, mode: str, value: float = 0.0) -> np.ndarray:
    """Spatial padding ``(top, left, bottom, right)``: "constant", "reflect" or "edge"."""
    top, left, bottom, right = pads
    _, _, h, wd = x.shape
    if mode == "constant":
        return _pad_into(x, h + top + bottom, wd + left + right, top, left, value)
    widths = ((0, 0), (0, 0), (top, bottom), (left, right))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "edge":
        return np.pad(x, widths, mode="edge")
    raise ValueError(f"pad: unknown mode {mode!r}")


def crop(x: np.ndarray, *, offset, size) -> np.ndarray:
    """``x[:, :, oy:oy+h, ox:ox+w]`` with ``offset=(oy, ox)``, ``size=(h, w)``."""
    oy, ox = offset
    h, w = size
    return np.ascontiguousarray(x[:, :, oy:oy + h, ox:ox + w])


def channel_shuffle(x: np.ndarray, *, groups: int) -> np.ndarray:
    """Channel g·(C/groups) + k moves to k·groups + g (ShuffleNet's channel_shuffle)."""
    n, c, h, wd = x.shape
    y = np.empty_like(x, dtype=np.float32)
    np.copyto(y.reshape(n, c // groups, groups, h, wd),
              x.reshape(n, groups, c // groups, h, wd).transpose(0, 2, 1, 3, 4))
    return y


def pixel_shuffle(x: np.ndarray, *, factor: int) -> np.ndarray:
    """y[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w] (``nn.PixelShuffle(r)``)."""
    n, c, h, wd = x.shape
    r = factor
    y = np.empty((n, c // (r * r), h * r, wd * r), dtype=np.float32)
    np.copyto(y.reshape(n, c // (r * r), h, r, wd, r),
              x.reshape(n, c // (r * r), r, r, h, wd).transpose(0, 1, 4, 2, 5, 3))
    return y


def permute(x: np.ndarray, *, order) -> np.ndarray:
    """``x.transpose(order)`` as a fresh C-contiguous array."""
    return np.ascontiguousarray(x.transpose(tuple(order)), dtype=np.float32)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product over the last two axes, the others broadcast."""
    return np.matmul(a, b, dtype=np.float32)


def slice_axis(x: np.ndarray, *, axis: int, start: int, stop: int) -> np.ndarray:
    """``x[..., start:stop, ...]`` along ``axis`` (negative values count from the end); a copy."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)].copy()


# ---------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------


def _corners(boxes: np.ndarray, format: str) -> np.ndarray:
    """Boxes ``[..., 4]`` as float64 corners (x1, y1, x2, y2): ``format`` "corners" or "center"
    ((cx, cy, w, h) → (cx − w/2, cy − h/2, cx + w/2, cy + h/2))."""
    b = boxes.astype(np.float64)
    if format == "center":
        half = b[..., 2:4] / 2
        return np.concatenate((b[..., 0:2] - half, b[..., 0:2] + half), axis=-1)
    if format != "corners":
        raise ValueError(f"unknown box format {format!r}")
    return b


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float64 IoU ``[..., A, B]`` of corner boxes ``a [..., A, 4]`` and ``b [..., B, 4]``.

    A box with x2 < x1 or y2 < y1 is empty; where the union is empty the IoU is 0.
    """
    a = a[..., :, None, :]
    b = b[..., None, :, :]
    with np.errstate(invalid="ignore"):  # inf − inf with infinite coordinates: nan, never > a threshold
        inter_w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
        inter_h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
        inter = inter_w * inter_h
        area_a = np.maximum(a[..., 2] - a[..., 0], 0.0) * np.maximum(a[..., 3] - a[..., 1], 0.0)
        area_b = np.maximum(b[..., 2] - b[..., 0], 0.0) * np.maximum(b[..., 3] - b[..., 1], 0.0)
        union = area_a + area_b - inter
        return np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)


def iou(a: np.ndarray, b: np.ndarray, *, format: str) -> np.ndarray:
    """Pairwise IoU: ``a [N, A, 4]``, ``b [N, B, 4]`` → ``[N, A, B]`` float32."""
    return _iou_matrix(_corners(a, format), _corners(b, format)).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, extras=None, *, iou_threshold: float, score_threshold: float,
        max_boxes: int, format: str) -> np.ndarray:
    """Class-wise greedy NMS: ``[N, K, 4]`` boxes, ``[N, K, C]`` scores (and ``extras [N, K, E]``)
    → ``[N, max_boxes, 6 + E]``.

    Candidates (box k, class c) with score > score_threshold, by descending score (ties: k, then
    c); each kept one removes the later candidates of its class whose IoU with it exceeds
    iou_threshold. Rows (x1, y1, x2, y2, score, c, extras[k]…), then padding (0, 0, 0, 0, -1, 0,
    0…). Greedy NMS is sequential: the Python loop runs over the images and the candidates in
    order (a suppressed one costs a test; a kept one, at most max_boxes per image, one vector
    operation).
    """
    corners = _corners(boxes, format)
    s = scores.astype(np.float64)
    count_extras = 0 if extras is None else extras.shape[2]
    out = np.zeros((s.shape[0], max_boxes, 6 + count_extras), dtype=np.float32)
    out[:, :, 4] = -1.0
    for image in range(s.shape[0]):
        ks, cs = np.nonzero(s[image] > score_threshold)  # in (k, c) order
        order = np.argsort(-s[image, ks, cs], kind="stable")
        ks, cs = ks[order], cs[order]
        cand = corners[image, ks]
        alive = np.ones(len(ks), dtype=bool)
        count = 0
        for j in range(len(ks)):
            if not alive[j]:
                continue
            out[image, count, 0:4] = cand[j]
            out[image, count, 4] = s[image, ks[j], cs[j]]
            out[image, count, 5] = cs[j]
            if extras is not None:
                out[image, count, 6:] = extras[image, ks[j]]
            count += 1
            if count == max_boxes:
                break
            rivals = j + 1 + np.flatnonzero(alive[j + 1:] & (cs[j + 1:] == cs[j]))
            iou = _iou_matrix(cand[j:j + 1], cand[rivals])[0]
            alive[rivals[iou > iou_threshold]] = False
    return out


def yolo_decode(x: np.ndarray, *, anchors, classes: int, stride, extras: int = 0) -> np.ndarray:
    """YOLOv3 decoding ``[N, A·(5+C+E), H, W]`` → ``[N, H·W·A, 4+C+E]``: row (i·W + j)·A + a is
    cell (i, j) and anchor a: corners of cx = (σ(tx) + j)·sw, cy = (σ(ty) + i)·sh, w =
    anchor_w·e^tw, h = anchor_h·e^th (input pixels), then σ(objectness)·σ(class logit) for each
    class, then the E extra channels as they are (mask coefficients)."""
    n, _, h, w = x.shape
    a = len(anchors)
    sh, sw = stride
    fields = 5 + classes + extras
    t = np.ascontiguousarray(x.reshape(n, a, fields, h, w).transpose(0, 3, 4, 1, 2), dtype=np.float32)
    with np.errstate(over="ignore"):
        half = np.exp(t[..., 2:4]) * (np.asarray(anchors, dtype=np.float32) / np.float32(2.0))  # [N, H, W, A, 2]
    p = np.multiply(t[..., :5 + classes], np.float32(0.5))  # σ(v) = 0.5·(1 + tanh(v/2)) of every field
    np.tanh(p, out=p)
    p += np.float32(1.0)
    p *= np.float32(0.5)
    cx = (p[..., 0] + np.arange(w, dtype=np.float32)[:, None]) * np.float32(sw)  # [N, H, W, A]
    cy = (p[..., 1] + np.arange(h, dtype=np.float32)[:, None, None]) * np.float32(sh)
    out = np.empty((n, h, w, a, 4 + classes + extras), dtype=np.float32)
    np.subtract(cx, half[..., 0], out=out[..., 0])
    np.subtract(cy, half[..., 1], out=out[..., 1])
    np.add(cx, half[..., 0], out=out[..., 2])
    np.add(cy, half[..., 1], out=out[..., 3])
    np.multiply(p[..., 4:5], p[..., 5:], out=out[..., 4:4 + classes])
    out[..., 4 + classes:] = t[..., 5 + classes:]
    return out.reshape(n, h * w * a, 4 + classes + extras)


def instance_masks(protos: np.ndarray, detections: np.ndarray, *, stride) -> np.ndarray:
    """YOLACT's masks ``[N, D, H, W]`` from prototypes ``[N, P, H, W]`` and nms rows ``[N, D, 6 +
    P]`` (their extras the coefficients): σ(coefficients · prototypes) where the prototype pixel's
    centre ((j + ½)·sw, (i + ½)·sh) lies in the row's box (x1 ≤ x < x2, y1 ≤ y < y2), else 0;
    padding rows (score < 0) give empty masks. One batched GEMM, then the sigmoid and the crop
    in place."""
    n, count, h, w = protos.shape
    sh, sw = stride
    d = detections.astype(np.float32, copy=False)
    y = np.matmul(d[..., 6:], protos.reshape(n, count, h * w).astype(np.float32, copy=False))  # [N, D, H·W]
    masks = sigmoid(y, out=y).reshape(n, d.shape[1], h, w)
    xs = (np.arange(w, dtype=np.float64) + 0.5) * sw
    ys = (np.arange(h, dtype=np.float64) + 0.5) * sh
    box = d[..., :5].astype(np.float64)
    with np.errstate(invalid="ignore"):
        columns = (xs >= box[..., 0:1]) & (xs < box[..., 2:3]) & (box[..., 4:5] >= 0)  # [N, D, W]
        rows = (ys >= box[..., 1:2]) & (ys < box[..., 3:4])  # [N, D, H]
    np.copyto(masks, np.float32(0.0), where=~(rows[..., :, None] & columns[..., None, :]))  # also a nan's
    return masks


def _epilogue(y: np.ndarray, activation: str, slope: float, residual) -> np.ndarray:
    """act(y + residual) computed in place in ``y`` (a fresh array owned by the caller).

    ``activation`` names an elementwise op whose kernel here has that same name and takes
    ``out=`` (relu, sigmoid, gelu, …; the op records with ``epilogue``): the epilogue is exactly
    that kernel, run in place. It is looked up by name so that a generated module carries only
    the activation kernels its fused nodes name (the code generator copies those).
    """
    if residual is not None:
        np.add(y, residual, out=y)
    if activation == "leaky_relu":  # the one with an argument
        np.multiply(y, np.float32(slope), out=y, where=y < 0)
    elif activation != "none":
        globals()[activation](y, out=y)
    return y


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, out=None) -> np.ndarray:
    """Per-channel ``x · scale[c] + shift[c]`` over axis 1 (a batch norm that could not be folded);
    ``out`` may be ``x``."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = np.multiply(x, scale.astype(np.float32, copy=False).reshape(shape), dtype=np.float32, out=out)
    y += shift.astype(np.float32, copy=False).reshape(shape)
    return y


def reduce(x: np.ndarray, *, mode: str, axes, keepdims: bool) -> np.ndarray:
    """Mean, maximum or sum over ``axes``."""
    if mode == "mean":
        return x.mean(axis=tuple(axes), keepdims=keepdims, dtype=np.float32)
    if mode == "sum":
        return x.sum(axis=tuple(axes), keepdims=keepdims, dtype=np.float32)
    return np.max(x, axis=tuple(axes), keepdims=keepdims)
