"""The loops of cnnc.kernels.compiled, compiled by numba (imported only through `compiled.loops()`).

Each function is one pass that visits every value once, on the calling thread, with the GIL
released (`nogil`), so that the parts of a split batch (cnnc/runtime/threads.py) run theirs at
once. `cache=True` keeps the machine code in __pycache__ beside this file: a process after the
first loads it instead of compiling it again (several seconds).

The transforms add and subtract in float64 and round once, when they store float32: with the
float32 sums of two separable passes, a 2-channel layer's right-edge outputs were 1.7e-5 of
their scale off the exact convolution, past tests/test_winograd.py's bound of 1e-5 (NumPy's
one GEMM per transform: 6.7e-6; float64 here: 6.3e-6), at no measurable cost in these scalar
loops.

Each loop applies its activation in its own form, not through one shared helper, because the
form changes how the loop compiles. Measured alone, against the forms below:
- winograd_output with a ReLU6 branch beside its ReLU: 15% slower;
- bias_activation with depthwise's branch-free clamp (np.minimum(np.maximum(v, 0), high)): 5-8%
  slower.
"""
import numba
import numpy as np

F2 = 2.0
F4 = 4.0
F5 = 5.0
F8 = 8.0
ZERO = np.float32(0.0)
SIX = np.float32(6.0)


@numba.njit(inline="always", cache=True)
def _bt(d0, d1, d2, d3, d4, d5):
    """Bᵀ·d for one column d of a 6x6 tile (the rows of _winograd_f4x3's Bᵀ); d is float64."""
    return (F4 * d0 - F5 * d2 + d4, d3 + d4 - F4 * (d1 + d2), F4 * (d1 - d2) - d3 + d4,
            d4 - d2 - F2 * (d1 - d3), d4 - d2 + F2 * (d1 - d3), F4 * d1 - F5 * d3 + d5)


@numba.njit(inline="always", cache=True)
def _at(m0, m1, m2, m3, m4, m5):
    """Aᵀ·m for one column m of a 6x6 product tile (the rows of _winograd_f4x3's Aᵀ), in float64."""
    m1, m3 = np.float64(m1), np.float64(m3)  # the rest follow into float64
    a, b, c, d = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return (m0 + a + c, b + F2 * d, a + F4 * c, b + F8 * d + m5)


@numba.njit(cache=True, nogil=True)
def winograd_input(x, first, images, row0, rows, top, left, tw, out):
    """out[36, C, images·rows·tw] = Bᵀ d B for every 6x6 tile d of images first… and tile rows
    row0…, read from x [N, C, H, W] as if zero-padded by (top, left) (tiles past the input's
    bottom or right edge read zeros)."""
    _, c, h, w = x.shape
    wp = 4 * tw + 2
    for job in range(images * c):
        i = job // c
        ch = job - i * c
        strip = np.zeros((6, wp), np.float64)  # 6 padded input rows
        rowt = np.empty((6, wp), np.float64)  # Bᵀ applied down the columns of the strip
        for t in range(rows):
            for k in range(6):
                r = 4 * (row0 + t) + k - top
                if 0 <= r < h:
                    for col in range(min(w, wp - left)):
                        strip[k, col + left] = x[first + i, ch, r, col]
                else:
                    strip[k, :] = 0.0
            for col in range(wp):
                v = _bt(strip[0, col], strip[1, col], strip[2, col], strip[3, col], strip[4, col], strip[5, col])
                for p in range(6):
                    rowt[p, col] = v[p]
            base = (i * rows + t) * tw
            for p in range(6):
                for s in range(tw):
                    e = 4 * s
                    v = _bt(rowt[p, e], rowt[p, e + 1], rowt[p, e + 2], rowt[p, e + 3], rowt[p, e + 4], rowt[p, e + 5])
                    for q in range(6):
                        out[6 * p + q, ch, base + s] = v[q]


@numba.njit(cache=True, nogil=True)
def winograd_input_channels_last(xp, rows, tw, out):
    """out[36, images·rows·tw, C] = Bᵀ d B for every 6x6 tile d of xp [images, 4·rows+2, 4·tw+2, C],
    the zero-padded band laid out channels-last. Each step runs over a contiguous vector of
    channels (the loops the compiler vectorizes), so small maps with many channels, where the
    NCHW loop (winograd_input) has a few tiles per channel, cost per channel what large maps do:
    256 channels at 14x14 1.6x faster with the GEMM included (docs/kernels.md)."""
    n, _, _, c = xp.shape
    cols = np.empty((6, 6, c), np.float64)  # Bᵀ applied down the tile's six columns
    for i in range(n):
        for t in range(rows):
            r = 4 * t
            for s in range(tw):
                tile = (i * rows + t) * tw + s
                for j in range(6):
                    col = 4 * s + j
                    for ch in range(c):
                        v = _bt(np.float64(xp[i, r, col, ch]), np.float64(xp[i, r + 1, col, ch]),
                                np.float64(xp[i, r + 2, col, ch]), np.float64(xp[i, r + 3, col, ch]),
                                np.float64(xp[i, r + 4, col, ch]), np.float64(xp[i, r + 5, col, ch]))
                        for p in range(6):
                            cols[p, j, ch] = v[p]
                for p in range(6):
                    for ch in range(c):
                        v = _bt(cols[p, 0, ch], cols[p, 1, ch], cols[p, 2, ch], cols[p, 3, ch], cols[p, 4, ch],
                                cols[p, 5, ch])
                        for q in range(6):
                            out[6 * p + q, tile, ch] = v[q]


@numba.njit(cache=True, nogil=True)
def winograd_output(m, first, images, row0, rows, tw, bias, residual, relu, y):
    """y[first + i, o, 4t+j, 4s+q] = (Aᵀ M A)[j, q] + bias[o] (+ residual there) (then max(·, 0)
    with `relu`) for each product tile M of m [36, O, images·rows·tw]; tiles are cropped at y's
    edges. `residual` is y-shaped, or has no elements for none.

    Two passes per output channel, each over contiguous memory: Aᵀ along the rows of every tile
    (reading m's 36 planes tile after tile), kept interleaved as the output rows lie (z[p, 4f + q]),
    then Aᵀ down each column of the band, which yields the band's four output rows at once. Storing
    each tile's 4x4 block as it was computed was 1.5-2.1x slower (docs/kernels.md)."""
    _, o, ho, wo = y.shape
    add = residual.size > 0
    tiles = images * rows * tw
    z = np.empty((6, 4 * tiles), np.float64)  # z[p, 4f + q] = (M A)[p, q] of tile f
    for oc in range(o):
        for p in range(6):
            r = 6 * p
            for f in range(tiles):
                v = _at(m[r, oc, f], m[r + 1, oc, f], m[r + 2, oc, f],
                        m[r + 3, oc, f], m[r + 4, oc, f], m[r + 5, oc, f])
                for q in range(4):
                    z[p, 4 * f + q] = v[q]
        bo = bias[oc]
        for i in range(images):
            for t in range(rows):
                r0 = 4 * (row0 + t)
                valid = min(4, ho - r0)
                base = 4 * (i * rows + t) * tw  # z's column of this band's first output column
                for col in range(wo):
                    g = base + col
                    v = _at(z[0, g], z[1, g], z[2, g], z[3, g], z[4, g], z[5, g])
                    for j in range(valid):
                        value = v[j] + bo  # float64 until it is stored
                        if add:
                            value += residual[first + i, oc, r0 + j, col]
                        if relu:
                            value = np.maximum(value, ZERO)  # NaN stays NaN, as in NumPy's relu
                        y[first + i, oc, r0 + j, col] = value


@numba.njit(inline="always", cache=True)
def _inside(out, size, k, stride, dilation, pad):
    """The outputs first…last-1 along one axis whose k taps all lie inside the input's `size`."""
    first = min(out, -(-pad // stride))
    last = min(out, (size - 1 - (k - 1) * dilation + pad) // stride + 1)
    return first, max(first, last)


@numba.njit(inline="always", cache=True)
def _taps3(value, x, w, b, r, q, dw, u, ch):
    """`value` plus row u of a 3-wide kernel's taps of channel ch at input row r, column q…, in order."""
    return (value + x[b, r, q, ch] * w[u, 0, ch] + x[b, r, q + dw, ch] * w[u, 1, ch]
            + x[b, r, q + 2 * dw, ch] * w[u, 2, ch])


@numba.njit(inline="always", cache=True)
def _taps5(value, x, w, b, r, q, dw, u, ch):
    """_taps3 for a 5-wide kernel."""
    return (_taps3(value, x, w, b, r, q, dw, u, ch) + x[b, r, q + 3 * dw, ch] * w[u, 3, ch]
            + x[b, r, q + 4 * dw, ch] * w[u, 4, ch])


@numba.njit(inline="always", cache=True)
def _clamp(value, activation, high):
    """depthwise's activation: `value` clamped to [0, high] (high: 6 for relu6, ∞ for relu) unless
    `activation` is 0; np.maximum/np.minimum, so NaN stays NaN, as in NumPy's relu."""
    if activation != 0:
        value = np.minimum(np.maximum(value, ZERO), high)
    return value


@numba.njit(cache=True, nogil=True)
def depthwise(x, w, bias, sh, sw, top, left, dh, dw, activation, y):
    """y[n, i, j, c] = act(bias[c] + Σ_uv x[n, i·sh + u·dh - top, j·sw + v·dw - left, c] · w[u, v, c])
    for a channels-last x [N, H, W, C] and w [kh, kw, C]; taps outside x read zero. `activation`:
    0 none, 1 relu, 2 relu6. The channel loop is innermost: contiguous, vectorized.

    For 3x3 and 5x5 kernels, the outputs whose taps all lie inside x (all but the border) sum each
    channel's taps as one unrolled expression (_taps3, _taps5), in the general form's order, so
    the channel loop keeps the sum in a register where the general form stores it after every
    tap. Alone, on the eighth session's Zen 1: 1.6-1.9x on MobileNetV2's 3x3 layers (1.24x on the
    96-channel 112x112 stride-2 one), 1.16-1.70x on EfficientNet-B0's 5x5 ones; bit for bit the
    general form's result."""
    n, h, wd, c = x.shape
    _, ho, wo, _ = y.shape
    kh, kw, _ = w.shape
    high = SIX if activation == 2 else np.float32(np.inf)
    acc = np.empty(c, y.dtype)  # float32, or float64 in the training tests' float64 step
    row0, row1 = _inside(ho, h, kh, sh, dh, top)
    col0, col1 = _inside(wo, wd, kw, sw, dw, left)
    unrolled = kh == kw and (kh == 3 or kh == 5)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                if unrolled and row0 <= i < row1 and col0 <= j < col1:
                    # one branch-free channel loop per kernel size: a branch or a loop inside it
                    # stops the vectorization (0.25-0.6x, measured)
                    r, q = i * sh - top, j * sw - left
                    if kh == 3:
                        for ch in range(c):
                            value = _taps3(bias[ch], x, w, b, r, q, dw, 0, ch)
                            value = _taps3(value, x, w, b, r + dh, q, dw, 1, ch)
                            value = _taps3(value, x, w, b, r + 2 * dh, q, dw, 2, ch)
                            y[b, i, j, ch] = _clamp(value, activation, high)
                    else:
                        for ch in range(c):
                            value = _taps5(bias[ch], x, w, b, r, q, dw, 0, ch)
                            value = _taps5(value, x, w, b, r + dh, q, dw, 1, ch)
                            value = _taps5(value, x, w, b, r + 2 * dh, q, dw, 2, ch)
                            value = _taps5(value, x, w, b, r + 3 * dh, q, dw, 3, ch)
                            value = _taps5(value, x, w, b, r + 4 * dh, q, dw, 4, ch)
                            y[b, i, j, ch] = _clamp(value, activation, high)
                    continue
                acc[:] = bias
                for u in range(kh):
                    row = i * sh + u * dh - top
                    if row < 0 or row >= h:
                        continue
                    for v in range(kw):
                        col = j * sw + v * dw - left
                        if col < 0 or col >= wd:
                            continue
                        for ch in range(c):
                            acc[ch] += x[b, row, col, ch] * w[u, v, ch]
                if activation == 0:
                    y[b, i, j, :] = acc
                else:
                    for ch in range(c):
                        y[b, i, j, ch] = _clamp(acc[ch], activation, high)


@numba.njit(inline="always", cache=True)
def _relu_or_relu6(value, activation):
    """`value` through activation 0 (none), 1 (relu) or 2 (relu6) of bias_activation(_last)."""
    if activation != 0:
        value = np.maximum(value, ZERO)
        if activation == 2:
            value = np.minimum(value, SIX)
    return value


@numba.njit(cache=True, nogil=True)
def bias_activation(y, bias, residual, activation):
    """In place, one pass: y[a, o, k] = act(y[a, o, k] + bias[o] + residual[a, o, k]) for y
    [A, O, K] (NCHW as [N, O, H·W]; channels-last values: bias_activation_last); `residual` is
    y-shaped, or has no elements for none. `activation`: 0 none, 1 relu, 2 relu6 (NaN stays NaN,
    as with np.maximum and np.clip)."""
    na, no, nk = y.shape
    add = residual.size > 0
    for a in range(na):
        for o in range(no):
            bo = bias[o]
            for k in range(nk):
                value = y[a, o, k] + bo
                if add:
                    value += residual[a, o, k]
                y[a, o, k] = _relu_or_relu6(value, activation)


@numba.njit(cache=True, nogil=True)
def bias_activation_last(y, bias, residual, activation):
    """bias_activation for a channels-last y [N·H·W, O]: the inner loop runs along the channels,
    where the values and the bias lie contiguous (as [N·H·W, O, 1] bias_activation's inner loop
    has one value)."""
    npx, no = y.shape
    add = residual.size > 0
    for p in range(npx):
        for o in range(no):
            value = y[p, o] + bias[o]
            if add:
                value += residual[p, o]
            y[p, o] = _relu_or_relu6(value, activation)
