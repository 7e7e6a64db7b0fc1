"""Network compiled by cnnc 0.1.0 from tiny.cnn (generated code: do not edit).

Inputs:  image [N, 1, 12, 12]
Outputs: probs [N, 10]
Parameters are float32 arrays by name; load_params() reads the .npz file saved beside this module.
"""
from pathlib import Path

import numpy as np

INPUTS = {'image': ('N', 1, 12, 12)}
OUTPUTS = {'probs': ('N', 10)}
PARAMETERS = {
    'fc.weight': (10, 144),
    'fc.bias': (10,),
    'unit1.conv1.weight~bn': (4, 1, 3, 3),
    'unit1.conv1.bias~bn': (4,),
    'unit2.conv1.weight~bn': (4, 4, 3, 3),
    'unit2.conv1.bias~bn': (4,),
}


def forward(params, image):
    """Run the network on float32 NCHW arrays; returns a dict of outputs."""
    unit1_conv1 = conv(  # tiny.cnn:5 unit1.conv1: conv -> [N, 4, 12, 12]
        image, params['unit1.conv1.weight~bn'], params['unit1.conv1.bias~bn'], stride=(1, 1), pads=(1, 1, 1, 1),
        dilation=(1, 1), groups=1, activation='relu', out_size=(12, 12))
    unit2_conv1 = conv(  # tiny.cnn:5 unit2.conv1: conv -> [N, 4, 12, 12]
        unit1_conv1, params['unit2.conv1.weight~bn'], params['unit2.conv1.bias~bn'], stride=(1, 1), pads=(1, 1, 1, 1),
        dilation=(1, 1), groups=1, activation='relu', out_size=(12, 12))
    unit2_add1 = add(unit2_conv1, unit1_conv1, out=unit2_conv1)  # tiny.cnn:6 unit2.add1: add -> [N, 4, 12, 12]
    del unit1_conv1, unit2_conv1  # last use
    maxpool1 = max_pool(  # tiny.cnn:9 maxpool1: max_pool -> [N, 4, 6, 6]
        unit2_add1, kernel=(2, 2), stride=(2, 2), pads=(0, 0, 0, 0), dilation=(1, 1), out_size=(6, 6))
    del unit2_add1  # last use
    flatten1 = flatten(maxpool1)  # tiny.cnn:10 flatten1: flatten -> [N, 144]
    del maxpool1  # last use
    fc = dense(flatten1, params['fc.weight'], params['fc.bias'])  # tiny.cnn:10 fc: dense -> [N, 10]
    del flatten1  # last use
    softmax1 = softmax(fc, axis=1)  # tiny.cnn:10 softmax1: softmax -> [N, 10]
    del fc  # last use
    return {'probs': softmax1}


def load_params(path=None):
    """Parameters from an .npz file (default: this module's path with .npz)."""
    path = Path(__file__).with_suffix('.npz') if path is None else Path(path)
    with np.load(path, allow_pickle=False) as archive:
        params = {name: archive[name].astype(np.float32) for name in archive.files}
    missing = sorted(set(PARAMETERS) - set(params))
    if missing:
        raise KeyError(f'{path}: missing parameter {missing[0]!r}')
    for name, shape in PARAMETERS.items():
        if params[name].shape != shape:
            raise ValueError(f'{path}: parameter {name!r} has shape {params[name].shape}, expected {shape}')
    return params


# ---- kernels, copied from cnnc.kernels.numpy_kernels ----


try:  # loops compiled by numba, used where cnnc's `fast` extra is installed (docs/kernels.md)
    from cnnc.kernels import compiled as _compiled
except ImportError:  # NumPy alone
    _compiled = None


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


def relu(x: np.ndarray, out=None) -> np.ndarray:
    """max(x, 0); ``out`` (here and in the other elementwise kernels): an array of x's shape
    to write the result into, which may be ``x`` itself."""
    return np.maximum(x, np.float32(0.0), out=out)


def softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    """Numerically stable softmax along ``axis``."""
    y = x - np.max(x, axis=axis, keepdims=True)
    np.exp(y, out=y)
    y /= np.sum(y, axis=axis, keepdims=True)
    return y


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


def flatten(x: np.ndarray) -> np.ndarray:
    """``[N, ...]`` → ``[N, prod(...)]`` in C order."""
    return x.reshape(x.shape[0], -1)


def add(a: np.ndarray, b: np.ndarray, out=None) -> np.ndarray:
    """Elementwise sum with NumPy broadcasting; ``out`` may be ``a`` when nothing broadcasts."""
    return np.add(a, b, out=out)


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
