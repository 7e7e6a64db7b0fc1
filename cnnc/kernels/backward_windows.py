"""Backward (gradient) kernels of the window ops: convolutions, dense, pooling, LRN, resampling,
padding and cropping, in NumPy.

Calling convention (``Grad`` in cnnc/ir/ops.py): ``<forward kernel>_backward(dy, *saved,
*params_in_role_order, **kwargs)`` returns a tuple with one gradient per data input, then one
per parameter role (None for an absent optional parameter, or for input 0 when called with
``need_input=False``). ``saved`` holds the data inputs and/or the forward output, as the op's
rule says; ``kwargs`` are exactly the forward kernel's keyword arguments (``out_size`` for a
sized op), plus ``in_shapes`` (each data input's shape without the batch) where a kernel needs
sizes it does not save, plus ``need_input`` for the kernels with parameters.

Like cnnc/kernels/numpy_kernels.py, the functions are copied, with the top-level helpers they
call, into generated self-contained modules (cnnc/codegen/kernel_source.py): the module imports
only ``numpy``, holds top-level functions only and no module state, and imports
nothing from cnnc. Its helpers start with ``_bwin_`` so that they can never shadow a helper of
another kernel module copied into the same generated file.

Unlike the forward kernels these never cast to float32: they keep the dtype they are given (the
tests compare them in float64 with PyTorch's autograd), and they never write into ``dy`` or a
saved array (a gradient may be shared by several consumers). Arrays are NCHW, conv weights
OIHW, ``pads`` ``(top, left, bottom, right)``. No Python loop runs over the batch, channels or
pixels: the loops are over kernel taps, or over the few output rows/columns of an adaptive pool.
"""

import numpy as np

# The forward's own window sum (its count map is what avg_pool divides by) and bilinear matrix;
# generated code copies them from numpy_kernels, which shares one function table with this module.
from .numpy_kernels import _linear_matrix, _lrn_denominator, _window_sum

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _bwin_extent(out: int, stride: int, dilation: int, kernel: int) -> int:
    """Rows (or columns) of the padded input that ``out`` windows reach: the last window's end."""
    return (out - 1) * stride + dilation * (kernel - 1) + 1


def _bwin_window_extent(x: np.ndarray, kernel, stride, dilation, pads, out_size) -> tuple[int, int, int, int]:
    """(hp, wp, hs, ws) of a window op: the padded extent its windows read, and at least the input
    (dx is cropped from it); and the extent of one tap's strided slice."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_size
    hp = max(_bwin_extent(ho, sh, dh, kh), pads[0] + x.shape[2])
    wp = max(_bwin_extent(wo, sw, dw, kw), pads[1] + x.shape[3])
    return hp, wp, (ho - 1) * sh + 1, (wo - 1) * sw + 1


def _bwin_padded(a: np.ndarray, hp: int, wp: int, top: int, left: int, fill: float = 0.0) -> np.ndarray:
    """A new ``[N, C, hp, wp]`` array of ``a``'s dtype filled with ``fill``, holding ``a`` at (top, left).

    Rows/columns of ``a`` that fall outside are dropped (no window reads them, as in the forward's
    ``_pad_into``); the dtype is ``a``'s, never float32 by default."""
    n, c, h, w = a.shape
    out = np.full((n, c, hp, wp), fill, dtype=a.dtype)
    rows = max(0, min(h, hp - top))
    cols = max(0, min(w, wp - left))
    out[:, :, top:top + rows, left:left + cols] = a[:, :, :rows, :cols]
    return out


def _bwin_cropped(a: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """A fresh contiguous ``a[:, :, top:top+h, left:left+w]``: a gradient must not keep a large
    padded buffer alive, and callers may accumulate into it in place."""
    return np.ascontiguousarray(a[:, :, top:top + h, left:left + w])


def _bwin_no_epilogue(kernel: str, activation: str) -> None:
    """Refuse a fused activation: its derivative needs the pre-activation value, which the rule
    does not save. Training differentiates the graph before fusion."""
    if activation != "none":
        raise ValueError(f"{kernel}_backward: a fused activation ({activation}) cannot be differentiated; "
                         "differentiate the unfused graph")


def _bwin_window_scatter(g: np.ndarray, kh: int, kw: int, sh: int, sw: int, hp: int, wp: int) -> np.ndarray:
    """The transpose of numpy_kernels' ``_window_sum``: adds ``g[..., i, j]`` to every tap of window (i, j)
    of a zero ``[..., hp, wp]`` array. Separable too: columns first, then rows (kh + kw passes)."""
    ho, wo = g.shape[-2], g.shape[-1]
    hs = (ho - 1) * sh + 1
    ws = (wo - 1) * sw + 1
    cols = np.zeros(g.shape[:-1] + (wp,), dtype=g.dtype)
    for v in range(kw):
        cols[..., v:v + ws:sw] += g
    out = np.zeros(g.shape[:-2] + (hp, wp), dtype=g.dtype)
    for u in range(kh):
        out[..., u:u + hs:sh, :] += cols
    return out


def _bwin_conv_columns(xp: np.ndarray, groups: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int,
                       ho: int, wo: int) -> np.ndarray:
    """im2col of a padded ``[N, C, Hp, Wp]`` array, batch folded into the columns:
    ``[G, C/G·kh·kw, N·Ho·Wo]``, row (c, u, v) and column (n, i, j) holding
    ``xp[n, g·C/G + c, i·sh + u·dh, j·sw + v·dw]``. The strided view costs nothing; the reshape
    is the one copy, and with the batch in the columns each group's weight gradient is one GEMM."""
    n, c = xp.shape[0], xp.shape[1]
    cg = c // groups
    s0, s1, s2, s3 = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, shape=(n, groups, cg, kh, kw, ho, wo),
        strides=(s0, cg * s1, s1, dh * s2, dw * s3, sh * s2, sw * s3), writeable=False)
    return view.transpose(1, 2, 3, 4, 0, 5, 6).reshape(groups, cg * kh * kw, n * ho * wo)


def _bwin_group_major(a: np.ndarray, groups: int) -> np.ndarray:
    """``[N, C, H, W]`` as ``[G, C/G, N·H·W]`` (a copy), the layout ``_bwin_conv_columns`` pairs with."""
    n, c, h, w = a.shape
    return a.reshape(n, groups, c // groups, h * w).transpose(1, 2, 0, 3).reshape(groups, c // groups, n * h * w)


def _bwin_bins(size_in: int, size_out: int):
    """PyTorch's adaptive bins along one axis: bin i covers ⌊i·size_in/size_out⌋ …
    ⌈(i+1)·size_in/size_out⌉ − 1. Returns ``index [size_out, span]`` (the bin's positions, the
    longest bin's length ``span``, short bins padded with their last position) and ``valid``
    (which of those entries are really in the bin)."""
    i = np.arange(size_out)
    start = (i * size_in) // size_out
    end = -(-((i + 1) * size_in) // size_out)
    length = end - start
    t = np.arange(int(length.max()))
    index = np.minimum(start[:, None] + t, size_in - 1)
    valid = t < length[:, None]
    return index, valid


def _bwin_bin_means(size_in: int, size_out: int, dtype) -> np.ndarray:
    """``[size_out, size_in]`` matrix averaging each adaptive bin: row i is 1/len over bin i."""
    i = np.arange(size_out)
    start = (i * size_in) // size_out
    end = -(-((i + 1) * size_in) // size_out)
    pos = np.arange(size_in)
    inside = (pos >= start[:, None]) & (pos < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _bwin_fold_pad(g: np.ndarray, axis: int, before: int, after: int, size: int, mode: str) -> np.ndarray:
    """Gradient of padding one axis by ``before``/``after`` in ``mode``: the interior, plus (for
    "reflect" and "edge") each padded slice added onto the input position it copied."""
    def part(start: int | None, stop: int | None, step: int = 1) -> tuple:
        index = [slice(None)] * g.ndim
        index[axis] = slice(start, stop, step)
        return tuple(index)

    out = g[part(before, before + size)].copy()
    if mode == "reflect":
        # padded row p < before copied row before − p (1 … before); past the end, row size + q
        # copied size − 2 − q: both bands, read backwards, land on a contiguous run of rows.
        if before:
            out[part(1, before + 1)] += g[part(before - 1, None, -1)]
        if after:
            out[part(size - 1 - after, size - 1)] += g[part(before + size + after - 1, before + size - 1, -1)]
    elif mode == "edge":
        if before:
            out[part(0, 1)] += g[part(0, before)].sum(axis=axis, keepdims=True)
        if after:
            out[part(size - 1, size)] += g[part(before + size, None)].sum(axis=axis, keepdims=True)
    elif mode != "constant":
        raise ValueError(f"pad_backward: unknown mode {mode!r}")
    return out


# ---------------------------------------------------------------------------------------
# convolutions and dense
# ---------------------------------------------------------------------------------------


def conv_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, b, *, stride, pads, dilation, groups: int,
                  out_size, activation: str = "none", slope: float = 0.0, need_input: bool = True,
                  layout_in: str = "nchw", layout_out: str = "nchw"):
    """Gradients ``(dx, dw, db)`` of ``conv`` (weights ``[O, C/groups, kh, kw]``).

    dw: im2col of the zero-padded input (a strided view, batch folded into the columns) and one
    GEMM per group against dy. dx: one GEMM per group gives every tap's contribution, and a
    col2im loop over the taps adds each into a strided slice of the padded input's gradient,
    which is then cropped; rows/columns of x that no window reaches (stride 2 with 'same' pads)
    get zero. Depthwise convs (groups == C) loop over the taps instead, with no column matrix
    (kh·kw times the input). ``activation``/``slope`` and the layouts are accepted because they
    are conv's kwargs, but only "none" and NCHW are differentiable here (training runs on the
    un-optimized graph, where neither is ever set).
    """
    _bwin_no_epilogue("conv", activation)
    if layout_in != "nchw" or layout_out != "nchw":
        raise ValueError("conv_backward: channels-last layouts come from an inference pass; training is NCHW")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    ho, wo = out_size
    hp, wp, hs, ws = _bwin_window_extent(x, (kh, kw), stride, dilation, pads, out_size)
    db = None if b is None else dy.sum(axis=(0, 2, 3))
    xp = _bwin_padded(x, hp, wp, top, left) if (top or left or hp > h or wp > wd) else x
    dx = None
    if groups == c and cg == 1 and c > 1:
        m = o // c  # channel multiplier: output channel c·m + k reads input channel c
        dy5 = dy.reshape(n, c, m, ho, wo)
        wt = w.reshape(c, m, kh, kw)
        # multiplier 1 (MobileNet's) drops the m axis: its einsums run 3-4x faster (measured)
        dw_terms, dx_terms = ("ncij,ncij->c", "ncij,c->ncij") if m == 1 else ("ncmij,ncij->cm", "ncmij,cm->ncij")
        g = dy if m == 1 else dy5
        grad_w = np.empty((c, m, kh, kw), dtype=np.result_type(dy, x))
        for u in range(kh):
            for v in range(kw):
                win = xp[:, :, u * dh:u * dh + hs:sh, v * dw:v * dw + ws:sw]
                grad_w[:, :, u, v] = np.einsum(dw_terms, g, win, optimize=True).reshape(c, m)
        if need_input:
            dxp = np.zeros((n, c, hp, wp), dtype=np.result_type(dy, w))
            for u in range(kh):
                for v in range(kw):
                    tap = np.einsum(dx_terms, g, wt[:, 0, u, v] if m == 1 else wt[:, :, u, v], optimize=True)
                    dxp[:, :, u * dh:u * dh + hs:sh, v * dw:v * dw + ws:sw] += tap
            dx = _bwin_cropped(dxp, top, left, h, wd)
        return dx, grad_w.reshape(o, 1, kh, kw), db
    cols = _bwin_conv_columns(xp, groups, kh, kw, sh, sw, dh, dw, ho, wo)  # [G, Cg·kh·kw, N·Ho·Wo]
    g = _bwin_group_major(dy, groups)  # [G, Og, N·Ho·Wo]
    grad_w = np.matmul(g, cols.transpose(0, 2, 1)).reshape(o, cg, kh, kw)
    if need_input:
        del cols  # the column matrix and the tap gradients are the two big temporaries: not both at once
        # one GEMM per group with the batch folded in (measured 2x faster than N·G small GEMMs);
        # the taps then come channel-major, [C, kh, kw, N, Ho, Wo], so dx is built as [C, N, ...]
        wm = w.reshape(groups, og, cg * kh * kw).transpose(0, 2, 1)  # [G, Cg·kh·kw, Og]
        taps = np.matmul(wm, g).reshape(c, kh, kw, n, ho, wo)
        dxp = np.zeros((c, n, hp, wp), dtype=taps.dtype)
        for u in range(kh):
            for v in range(kw):
                dxp[:, :, u * dh:u * dh + hs:sh, v * dw:v * dw + ws:sw] += taps[:, u, v]
        dx = np.ascontiguousarray(dxp[:, :, top:top + h, left:left + wd].transpose(1, 0, 2, 3))  # one copy
    return dx, grad_w, db


def conv_transpose_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, b, *, stride, pads, output_padding,
                            dilation, groups: int, need_input: bool = True):
    """Gradients ``(dx, dw, db)`` of ``conv_transpose`` (weights ``[C, O/groups, kh, kw]``).

    The forward scatters every tap into the full output ``[N, O, Hf, Wf]`` and crops it by the
    pads; so dy is zero-padded back to the full size, and its im2col (the windows a forward
    conv with the same stride and dilation reads) serves both gradients: dx is one GEMM per
    group with the weights, dw one GEMM per group with x (batch folded into the GEMM).
    """
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    hf = _bwin_extent(h, sh, dh, kh) + output_padding[0]
    wf = _bwin_extent(wd, sw, dw, kw) + output_padding[1]
    db = None if b is None else dy.sum(axis=(0, 2, 3))
    dyf = _bwin_padded(dy, hf, wf, top, left) if (top or left or dy.shape[2] < hf or dy.shape[3] < wf) else dy
    cols = _bwin_conv_columns(dyf, groups, kh, kw, sh, sw, dh, dw, h, wd)  # [G, Og·kh·kw, N·H·W]
    grad_w = np.matmul(_bwin_group_major(x, groups), cols.transpose(0, 2, 1)).reshape(c, og, kh, kw)
    dx = None
    if need_input:
        grad_x = np.matmul(w.reshape(groups, cg, og * kh * kw), cols)  # [G, Cg, N·H·W]
        dx = np.ascontiguousarray(grad_x.reshape(groups, cg, n, h * wd).transpose(2, 0, 1, 3)).reshape(n, c, h, wd)
    return dx, grad_w, db


def dense_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, b, *, activation: str = "none",
                   slope: float = 0.0, need_input: bool = True):
    """Gradients ``(dx, dw, db)`` of ``dense`` (``w`` ``[O, F]``); x ``[N, F]`` or ``[N, F, 1, 1]``
    (then dy is ``[N, O, 1, 1]``), and dx has x's shape."""
    _bwin_no_epilogue("dense", activation)
    x2 = x.reshape(x.shape[0], -1)
    g = dy.reshape(dy.shape[0], -1)
    grad_w = np.matmul(g.T, x2)
    db = None if b is None else g.sum(axis=0)
    dx = np.matmul(g, w).reshape(x.shape) if need_input else None
    return dx, grad_w, db


# ---------------------------------------------------------------------------------------
# pooling and normalisation
# ---------------------------------------------------------------------------------------


def max_pool_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, *, kernel, stride, pads, dilation, out_size):
    """Gradient ``(dx,)`` of ``max_pool``: each window's dy goes to ONE position holding its max,
    the first in row-major window order (PyTorch's choice on ties), found by comparing each tap
    with the saved output in that order and masking the windows already served (4 passes per
    tap). Padding is −∞, as in the forward (also past the bottom/right pads, a ceil_mode
    overhang). A window whose max is NaN equals no position and passes no gradient (PyTorch
    sends it to the NaN; the loss is NaN either way).
    """
    _, _, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    ho, wo = out_size
    hp, wp, hs, ws = _bwin_window_extent(x, kernel, stride, dilation, pads, out_size)
    xp = _bwin_padded(x, hp, wp, top, left, -np.inf) if (top or left or hp > h or wp > wd) else x
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    free = np.ones(y.shape, dtype=bool)  # windows whose gradient is not placed yet
    hit = np.empty(y.shape, dtype=bool)
    tmp = np.empty(y.shape, dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            rows, cols = slice(u * dh, u * dh + hs, sh), slice(v * dw, v * dw + ws, sw)
            np.equal(xp[:, :, rows, cols], y, out=hit)
            hit &= free
            free ^= hit  # hit ⊆ free: one pass for free & ~hit
            # dy·hit, then add: 3x faster than np.where, 7x than a masked np.add(where=) (measured)
            np.multiply(dy, hit, out=tmp)
            dxp[:, :, rows, cols] += tmp
    return (_bwin_cropped(dxp, top, left, h, wd),)


def avg_pool_backward(dy: np.ndarray, *, kernel, stride, pads, count_include_pad: bool, out_size, in_shapes):
    """Gradient ``(dx,)`` of ``avg_pool``: dy divided by the forward's divisor map (the same count
    of a mask over the padded extent or over the input, PyTorch's rules), scattered back over each
    window (separably), then cropped to the input."""
    c, h, wd = in_shapes[0]
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    ho, wo = out_size
    he = (ho - 1) * sh + kh
    we = (wo - 1) * sw + kw
    mask = np.zeros((he, we), dtype=dy.dtype)
    if count_include_pad:
        mask[:h + top + bottom, :wd + left + right] = 1.0  # a ceil_mode overhang past the pads does not count
    else:
        mask[top:top + h, left:left + wd] = 1.0
    counts = _window_sum(mask, kh, kw, sh, sw, ho, wo)
    np.maximum(counts, 1.0, out=counts)
    dxp = _bwin_window_scatter(dy / counts, kh, kw, sh, sw, max(he, top + h), max(we, left + wd))
    return (_bwin_cropped(dxp, top, left, h, wd),)


def global_avg_pool_backward(dy: np.ndarray, *, in_shapes):
    """Gradient ``(dx,)`` of ``global_avg_pool``: dy / (H·W) at every position (a fresh array,
    not a read-only broadcast view: a caller may accumulate into it)."""
    c, h, w = in_shapes[0]
    dx = np.empty((dy.shape[0], c, h, w), dtype=dy.dtype)
    np.divide(dy, h * w, out=dx)
    return (dx,)


def global_max_pool_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Gradient ``(dx,)`` of ``global_max_pool``: all of dy to ONE position per channel, the first
    maximum in row-major order. That is what PyTorch's max_pool2d over the whole image and
    adaptive_max_pool2d(1) do, and what max_pool_backward does; ``torch.amax`` would instead
    split it evenly between tied maxima. A NaN channel sends it to its first NaN."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    hit = flat == y.reshape(n, c, 1)
    hit |= np.isnan(flat)
    first = np.argmax(hit, axis=2)  # argmax of booleans: the first True
    dx = np.zeros((n, c, h * w), dtype=dy.dtype)
    np.put_along_axis(dx, first[:, :, None], dy.reshape(n, c, 1), axis=2)
    return (dx.reshape(n, c, h, w),)


def adaptive_pool_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, *, size, mode: str):
    """Gradient ``(dx,)`` of ``adaptive_pool`` over PyTorch's bins (which may overlap).

    "avg": the pool is ``A_h · x · A_wᵀ`` with bin-averaging matrices, so dx = A_hᵀ · dy · A_w
    (two GEMMs). "max": every bin's positions are gathered at once (bins padded to the longest,
    the padding masked), the first row-major position equal to the saved max takes the bin's dy
    (PyTorch's tie rule), and overlapping bins' contributions are summed by one bincount.
    """
    n, c, h, w = x.shape
    ho, wo = size
    if mode == "avg":
        ah = _bwin_bin_means(h, ho, dy.dtype)
        aw = _bwin_bin_means(w, wo, dy.dtype)
        return (np.matmul(ah.T, np.matmul(dy, aw)),)
    if mode != "max":
        raise ValueError(f"adaptive_pool_backward: unknown mode {mode!r}")
    ri, rv = _bwin_bins(h, ho)  # [Ho, Lh]
    ci, cv = _bwin_bins(w, wo)  # [Wo, Lw]
    lw = ci.shape[1]
    bins = x[:, :, ri[:, :, None, None], ci[None, None, :, :]]  # [N, C, Ho, Lh, Wo, Lw]
    hit = bins == y[:, :, :, None, :, None]
    hit |= np.isnan(bins)
    hit &= rv[:, :, None, None] & cv[None, None, :, :]
    hit = hit.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, -1)
    first = np.argmax(hit, axis=-1)  # [N, C, Ho, Wo]: row-major within the bin
    rows = ri[np.arange(ho)[:, None], first // lw]
    cols = ci[np.arange(wo), first % lw]
    target = (np.arange(n * c).reshape(n, c, 1, 1) * (h * w) + rows * w + cols).ravel()
    dx = np.bincount(target, weights=dy.ravel(), minlength=n * c * h * w)  # float64 sums, cast back
    return (dx.reshape(n, c, h, w).astype(dy.dtype, copy=False),)


def lrn_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, *, size: int, alpha: float, beta: float, k: float):
    """Gradient ``(dx,)`` of ``lrn``: y = x·d^(−β), d[c] = k + α·Σ x² over channels
    c − ⌊size/2⌋ … c + ⌊(size−1)/2⌋ (α not divided by size, as the forward; PyTorch's
    local_response_norm with alpha·size). Then
    dx[c'] = dy[c']·d[c']^(−β) − 2αβ·x[c']·Σ dy[c]·y[c]/d[c] over the channels c whose window
    holds c' (the mirrored window c' − ⌊(size−1)/2⌋ … c' + ⌊size/2⌋), both window sums loops
    over the size offsets of zero-padded channel slices, as in the forward.
    """
    n, c = x.shape[0], x.shape[1]
    lo = size // 2
    hi = (size - 1) // 2
    d = _lrn_denominator(x, size, alpha, k, x.dtype)
    q = np.zeros((n, c + lo + hi) + x.shape[2:], dtype=np.result_type(dy, y, d))
    np.multiply(dy, y, out=q[:, hi:hi + c])
    q[:, hi:hi + c] /= d
    acc = q[:, 0:c].copy()
    for t in range(1, size):
        acc += q[:, t:t + c]
    acc *= x
    acc *= -2.0 * alpha * beta
    np.power(d, -beta, out=d)
    d *= dy
    acc += d
    return (acc,)


# ---------------------------------------------------------------------------------------
# resampling, padding and cropping
# ---------------------------------------------------------------------------------------


def upsample_backward(dy: np.ndarray, *, scale, mode: str, in_shapes):
    """Gradient ``(dx,)`` of ``upsample``: "nearest" sums each scale_h × scale_w block of dy;
    "bilinear" (align_corners=False, the forward's matrices) is ``M_hᵀ · dy · M_w``."""
    c, h, w = in_shapes[0]
    n = dy.shape[0]
    sh, sw = scale
    if mode == "nearest":
        return (dy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5)),)
    if mode == "bilinear":
        mh = _linear_matrix(h, sh, dy.dtype)  # [H·sh, H]
        mw = _linear_matrix(w, sw, dy.dtype)  # [W·sw, W]
        return (np.matmul(mh.T, np.matmul(dy, mw)),)
    raise ValueError(f"upsample_backward: unknown mode {mode!r}")


def pad_backward(dy: np.ndarray, *, pads, mode: str, value: float = 0.0, in_shapes):
    """Gradient ``(dx,)`` of ``pad``: "constant" keeps the interior (``value`` has no gradient);
    "reflect" and "edge" also add each padded row/column onto the one it copied, rows first,
    then columns (so corners reach the input through both)."""
    c, h, w = in_shapes[0]
    top, left, bottom, right = pads
    rows = _bwin_fold_pad(dy, 2, top, bottom, h, mode)
    return (_bwin_fold_pad(rows, 3, left, right, w, mode),)


def crop_backward(dy: np.ndarray, *, offset, size, in_shapes):
    """Gradient ``(dx,)`` of ``crop``: dy placed at ``offset`` in zeros of the input's shape."""
    oy, ox = offset
    h, w = size
    dx = np.zeros((dy.shape[0],) + tuple(in_shapes[0]), dtype=dy.dtype)
    dx[:, :, oy:oy + h, ox:ox + w] = dy
    return (dx,)


def slice_axis_backward(dy: np.ndarray, *, axis: int, start: int, stop: int, in_shapes):
    """Gradient ``(dx,)`` of ``slice_axis``: dy placed at ``start:stop`` of ``axis`` (an axis of the
    batched array, negative values counting from the end as in the forward) in zeros."""
    dx = np.zeros((dy.shape[0],) + tuple(in_shapes[0]), dtype=dy.dtype)
    index = [slice(None)] * dx.ndim
    index[axis] = slice(start, stop)
    dx[tuple(index)] = dy
    return (dx,)
