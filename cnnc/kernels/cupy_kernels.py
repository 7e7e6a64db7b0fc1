"""CuPy kernels for every op of the cnnc IR: the GPU twin of numpy_kernels.py (docs/gpu.md).

Each kernel has its NumPy twin's name and arguments (docs/kernels.md) and two more keywords:
``out=`` a preallocated float32 C-contiguous output (the plan of cnnc/codegen/cupy.py gives one
to every statement; an elementwise op may get its own first input), and, for the convolutions
computed as GEMMs, ``workspace=`` a flat float32 buffer for the im2col/col2im columns. Without
them a kernel allocates what it needs, so every function also works on its own.

How each op runs (CuPy has no cuDNN):

- 1x1 stride-1 unpadded convs: one strided-batched cuBLAS GEMM per group (the weight is shared
  across the batch with stride 0), straight on the input.
- other convs: an im2col RawKernel writes the columns of as many images as the workspace holds
  (a chunk of the batch, at least one image), then one strided-batched GEMM per group and chunk.
- depthwise convs (groups == C, one input channel per group): a direct RawKernel with the bias,
  residual and activation applied before the store.
- conv_transpose: GEMM (W^T x per group) into columns, then a col2im RawKernel that gathers
  each output pixel's taps (no atomics, deterministic) and adds the bias.
- bias + activation + residual after a GEMM, LRN, batch norm, channel_affine, activations,
  upsample, pad, iou, yolo_decode (its extra channels copied as they are): ElementwiseKernels
  (one pass each).
- instance_masks: one strided-batched GEMM (coefficients · prototypes per image, the
  coefficients read in place from the nms rows), then one ElementwiseKernel in place on its
  result: the sigmoid inside the row's box (compared in float64), 0 outside and for padding rows.
- max/avg pooling: direct RawKernels; global pools and trailing-axis reductions: a thread per row.
- nms: a host fallback (greedy NMS is sequential): the inputs (boxes, scores and the optional
  extra columns) are copied to the host, the NumPy kernel runs, the result is copied back. It
  synchronizes, so a network with nms runs eagerly (no CUDA graph).

GEMMs call cuBLAS directly (cublasGemmStridedBatchedEx) with compute type CUBLAS_COMPUTE_32F,
or CUBLAS_COMPUTE_32F_FAST_TF32 when TF32 is on (``set_tf32(True)``, or CUPY_TF32=1 in the
environment when it was never set): TF32 rounds the GEMM inputs to a 10-bit mantissa.

Like numpy_kernels, this module is copied into every generated module: the code generator takes
each used top-level function, class and constant with everything they reference, from the AST.
So it imports only math, os, numpy and cupy, keeps its state in module-level dictionaries
(``_CACHE``: compiled kernels; ``_SETTINGS``: TF32), and imports nothing from cnnc but the host
fallback (the generator copies the NumPy kernel in, renamed). It imports without CuPy (``cp`` is
None): cnnc generates code and tests the pure-Python planning helpers on machines without a GPU.
All integer indices in the CUDA kernels are 32-bit: every tensor must hold fewer than 2**31
elements (checked).
"""

import math
import os

import numpy as np

from .numpy_kernels import nms as _host_nms  # host fallback; generated modules get a renamed copy

try:
    import cupy as cp
except ImportError:  # code generation and the CPU tests read this module without CuPy
    cp = None

WORKSPACE_LIMIT = 256 * 1024 * 1024  # bytes of im2col columns; larger batches run in chunks

_BLOCK = 256
_MAX_BLOCKS = 65535 * 16  # grid-stride loops cover the rest
_INT32_LIMIT = 2 ** 31 - 1
_ACTIVATIONS = {"none": 0, "relu": 1, "relu6": 2, "leaky_relu": 3, "sigmoid": 4, "hardsigmoid": 5, "hardswish": 6,
                "silu": 7, "gelu": 8, "gelu_tanh": 9}  # cnnc_activate's numbers
_CACHE: dict = {}  # compiled kernels by name (each compiles once per process and device)
_SETTINGS = {"tf32": None}  # None: follow CUPY_TF32

# ---------------------------------------------------------------------------------------
# CUDA sources (compiled by CuPy with NVRTC on first use; no includes)
# ---------------------------------------------------------------------------------------

_CU_COMMON = r"""
#define CNNC_LOOP(i, total) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += blockDim.x * gridDim.x)

__device__ __forceinline__ float cnnc_activate(float v, int act, float slope) {
    // 0 none, 1 relu, 2 relu6, 3 leaky_relu, 4 sigmoid (0.5 (1 + tanh(v / 2)), as the NumPy kernels),
    // 5 hardsigmoid (relu6(v + 3) / 6), 6 hardswish (v relu6(v + 3) / 6), 7 silu (v / (1 + e^-v)),
    // 8 gelu (v Phi(v) = v erfc(-v / sqrt 2) / 2), 9 gelu_tanh (v / (1 + e^-2u), u = sqrt(2/pi) (v + 0.044715 v^3))
    if (act == 1) return v > 0.0f ? v : 0.0f;
    if (act == 2) return fminf(fmaxf(v, 0.0f), 6.0f);
    if (act == 3) return v < 0.0f ? v * slope : v;
    if (act == 4) return 0.5f * (1.0f + tanhf(0.5f * v));
    if (act == 5) return fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    if (act == 6) return v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    if (act == 7) return v / (1.0f + expf(-v));
    if (act == 8) return 0.5f * v * erfcf(-0.70710678f * v);
    if (act == 9) return v / (1.0f + expf(-1.59576912f * (v + 0.044715f * v * v * v)));
    return v;
}
"""

_CU_IM2COL = r"""
extern "C" __global__ void cnnc_im2col(
        const float* __restrict__ x, float* __restrict__ cols, int total, int H, int W,
        int kh, int kw, int sh, int sw, int top, int left, int dh, int dw, int Ho, int Wo) {
    // cols[n, c, u, v, oy, ox] = x[n, c, oy*sh - top + u*dh, ox*sw - left + v*dw], 0 outside
    CNNC_LOOP(i, total) {
        int ox = i % Wo;
        int t = i / Wo;
        int oy = t % Ho;
        t /= Ho;
        int v = t % kw;
        t /= kw;
        int u = t % kh;
        t /= kh;  // t = n*C + c
        int iy = oy * sh - top + u * dh;
        int ix = ox * sw - left + v * dw;
        float value = 0.0f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) value = x[(t * H + iy) * W + ix];
        cols[i] = value;
    }
}
"""

_CU_DEPTHWISE = r"""
extern "C" __global__ void cnnc_depthwise_conv(
        const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
        const float* __restrict__ residual, float* __restrict__ y, int total, int C, int H, int W,
        int M, int kh, int kw, int sh, int sw, int top, int left, int dh, int dw, int Ho, int Wo,
        int has_bias, int has_residual, int act, float slope) {
    // output channel o reads input channel o / M (M: the depth multiplier)
    CNNC_LOOP(i, total) {
        int ox = i % Wo;
        int t = i / Wo;
        int oy = t % Ho;
        t /= Ho;  // t = n*(C*M) + o
        int o = t % (C * M);
        int n = t / (C * M);
        const float* xp = x + (n * C + o / M) * H * W;
        const float* wp = w + o * kh * kw;
        float acc = 0.0f;
        for (int u = 0; u < kh; ++u) {
            int iy = oy * sh - top + u * dh;
            if (iy < 0 || iy >= H) continue;
            for (int v = 0; v < kw; ++v) {
                int ix = ox * sw - left + v * dw;
                if (ix < 0 || ix >= W) continue;
                acc += xp[iy * W + ix] * wp[u * kw + v];
            }
        }
        if (has_bias) acc += bias[o];
        if (has_residual) acc += residual[i];
        y[i] = cnnc_activate(acc, act, slope);
    }
}
"""

# Winograd F(4x4, 3x3)'s Bᵀ and Aᵀ: numpy_kernels._winograd_f4x3 holds the same matrices (the
# CuPy kernel tests compare the two kernels, so a difference here fails them).
_CU_WINOGRAD_INPUT = r"""
__device__ const float cnnc_wino_bt[6][6] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};

extern "C" __global__ void cnnc_winograd_input(
        const float* __restrict__ x, float* __restrict__ v, int total, int C, int H, int W,
        int th, int tw, int top, int left) {
    // v[k, c, t] = (Bt d B)[k / 6, k % 6] for the 6x6 tile d at tile t = (n*th + ty)*tw + tx
    // of channel c, d[i][j] = x[n, c, 4ty - top + i, 4tx - left + j] (0 outside the input)
    int T = total / C;
    CNNC_LOOP(idx, total) {
        int t = idx % T;
        int c = idx / T;
        int tx = t % tw;
        int ty = (t / tw) % th;
        int n = t / (tw * th);
        const float* xp = x + (n * C + c) * H * W;
        float d[6][6];
        for (int i = 0; i < 6; ++i) {
            int iy = 4 * ty - top + i;
            for (int j = 0; j < 6; ++j) {
                int ix = 4 * tx - left + j;
                d[i][j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? xp[iy * W + ix] : 0.0f;
            }
        }
        for (int a = 0; a < 6; ++a) {
            float row[6];
            for (int j = 0; j < 6; ++j) {
                float s = 0.0f;
                for (int i = 0; i < 6; ++i) s += cnnc_wino_bt[a][i] * d[i][j];
                row[j] = s;
            }
            for (int b = 0; b < 6; ++b) {
                float s = 0.0f;
                for (int j = 0; j < 6; ++j) s += row[j] * cnnc_wino_bt[b][j];
                v[((a * 6 + b) * C + c) * T + t] = s;
            }
        }
    }
}
"""

_CU_WINOGRAD_OUTPUT = r"""
__device__ const float cnnc_wino_at[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

extern "C" __global__ void cnnc_winograd_output(
        const float* __restrict__ m, const float* __restrict__ bias, const float* __restrict__ residual,
        float* __restrict__ y, int total, int O, int th, int tw, int Ho, int Wo, int has_bias,
        int has_residual, int act, float slope) {
    // the 4x4 output tile At M A of tile t of channel o, M[i][j] = m[6i + j, o, t], plus the
    // epilogue, stored where it lies inside the Ho x Wo output
    int T = total / O;
    CNNC_LOOP(idx, total) {
        int t = idx % T;
        int o = idx / T;
        int tx = t % tw;
        int ty = (t / tw) % th;
        int n = t / (tw * th);
        float mm[6][6];
        for (int k = 0; k < 36; ++k) mm[k / 6][k % 6] = m[(k * O + o) * T + t];
        for (int p = 0; p < 4; ++p) {
            float row[6];
            for (int j = 0; j < 6; ++j) {
                float s = 0.0f;
                for (int i = 0; i < 6; ++i) s += cnnc_wino_at[p][i] * mm[i][j];
                row[j] = s;
            }
            int oy = 4 * ty + p;
            if (oy >= Ho) break;
            for (int q = 0; q < 4; ++q) {
                int ox = 4 * tx + q;
                if (ox >= Wo) break;
                float s = 0.0f;
                for (int j = 0; j < 6; ++j) s += row[j] * cnnc_wino_at[q][j];
                int at = ((n * O + o) * Ho + oy) * Wo + ox;
                if (has_bias) s += bias[o];
                if (has_residual) s += residual[at];
                y[at] = cnnc_activate(s, act, slope);
            }
        }
    }
}
"""

_CU_COL2IM = r"""
extern "C" __global__ void cnnc_col2im(
        const float* __restrict__ cols, const float* __restrict__ bias, float* __restrict__ y,
        int total, int O, int Hout, int Wout, int H, int W, int kh, int kw, int sh, int sw,
        int top, int left, int dh, int dw, int has_bias) {
    // cols[n, o, u, v, iy, ix] is tap (u, v) of input pixel (iy, ix); it lands on the full output
    // pixel (iy*sh + u*dh, ix*sw + v*dw); the output is the full one cropped by (top, left).
    CNNC_LOOP(i, total) {
        int ox = i % Wout;
        int t = i / Wout;
        int oy = t % Hout;
        t /= Hout;  // t = n*O + o
        int fy = oy + top;
        int fx = ox + left;
        float acc = 0.0f;
        for (int u = 0; u < kh; ++u) {
            int ty = fy - u * dh;
            if (ty < 0 || ty % sh != 0) continue;
            int iy = ty / sh;
            if (iy >= H) continue;
            for (int v = 0; v < kw; ++v) {
                int tx = fx - v * dw;
                if (tx < 0 || tx % sw != 0) continue;
                int ix = tx / sw;
                if (ix >= W) continue;
                acc += cols[((t * kh + u) * kw + v) * H * W + iy * W + ix];
            }
        }
        if (has_bias) acc += bias[t % O];
        y[i] = acc;
    }
}
"""

_CU_MAX_POOL = r"""
extern "C" __global__ void cnnc_max_pool(
        const float* __restrict__ x, float* __restrict__ y, int total, int H, int W, int kh, int kw,
        int sh, int sw, int top, int left, int dh, int dw, int Ho, int Wo) {
    // padding is -inf: taps outside the input are skipped
    CNNC_LOOP(i, total) {
        int ox = i % Wo;
        int t = i / Wo;
        int oy = t % Ho;
        t /= Ho;  // t = n*C + c
        const float* xp = x + t * H * W;
        float m = __int_as_float(0xff800000);  // -inf
        for (int u = 0; u < kh; ++u) {
            int iy = oy * sh - top + u * dh;
            if (iy < 0 || iy >= H) continue;
            for (int v = 0; v < kw; ++v) {
                int ix = ox * sw - left + v * dw;
                if (ix < 0 || ix >= W) continue;
                m = fmaxf(m, xp[iy * W + ix]);
            }
        }
        y[i] = m;
    }
}
"""

_CU_AVG_POOL = r"""
extern "C" __global__ void cnnc_avg_pool(
        const float* __restrict__ x, float* __restrict__ y, int total, int H, int W, int kh, int kw,
        int sh, int sw, int top, int left, int bottom, int right, int Ho, int Wo,
        int count_include_pad) {
    // divisor as PyTorch: taps inside the padded extent [-top, H+bottom) x [-left, W+right)
    // (count_include_pad) or inside the input, at least 1
    CNNC_LOOP(i, total) {
        int ox = i % Wo;
        int t = i / Wo;
        int oy = t % Ho;
        t /= Ho;
        const float* xp = x + t * H * W;
        float sum = 0.0f;
        int count = 0;
        for (int u = 0; u < kh; ++u) {
            int iy = oy * sh - top + u;
            bool row_in = iy >= 0 && iy < H;
            bool row_pad = iy >= -top && iy < H + bottom;
            for (int v = 0; v < kw; ++v) {
                int ix = ox * sw - left + v;
                bool col_in = ix >= 0 && ix < W;
                if (row_in && col_in) sum += xp[iy * W + ix];
                if (count_include_pad ? (row_pad && ix >= -left && ix < W + right) : (row_in && col_in)) ++count;
            }
        }
        y[i] = sum / (float)(count > 0 ? count : 1);
    }
}
"""

_CU_REDUCE_ROWS = r"""
extern "C" __global__ void cnnc_reduce_rows(
        const float* __restrict__ x, float* __restrict__ y, int rows, int len, int mode) {
    // one thread per contiguous row of `len` values (global pooling: N*C rows of H*W): 0 mean, 1 max
    CNNC_LOOP(row, rows) {
        const float* p = x + row * len;
        float acc = mode == 0 ? 0.0f : __int_as_float(0xff800000);  // 0 or -inf
        for (int j = 0; j < len; ++j) acc = mode == 0 ? acc + p[j] : fmaxf(acc, p[j]);
        y[row] = mode == 0 ? acc / (float)len : acc;
    }
}
"""

# ElementwiseKernel specs: (in_params, out_params, operation, name). `i` is the flat index; raw
# arrays are indexed by flat (C-order) index.

_EW_RELU = ("float32 x", "float32 y", "y = x > 0.0f ? x : 0.0f", "cnnc_relu")
_EW_RELU6 = ("float32 x", "float32 y", "y = fminf(fmaxf(x, 0.0f), 6.0f)", "cnnc_relu6")
_EW_SIGMOID = ("float32 x", "float32 y", "y = 0.5f * (1.0f + tanhf(0.5f * x))", "cnnc_sigmoid")
_EW_TANH = ("float32 x", "float32 y", "y = tanhf(x)", "cnnc_tanh")
_EW_HARDSIGMOID = ("float32 x", "float32 y", "y = fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f", "cnnc_hardsigmoid")
_EW_HARDSWISH = ("float32 x", "float32 y", "y = x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f", "cnnc_hardswish")
_EW_SILU = ("float32 x", "float32 y", "y = x / (1.0f + expf(-x))", "cnnc_silu")
_EW_GELU = ("float32 x", "float32 y", "y = 0.5f * x * erfcf(-0.70710678f * x)", "cnnc_gelu")
_EW_GELU_TANH = ("float32 x", "float32 y", "y = x / (1.0f + expf(-1.59576912f * (x + 0.044715f * x * x * x)))",
                 "cnnc_gelu_tanh")
_EW_LEAKY_RELU = ("float32 x, float32 slope", "float32 y", "y = x < 0.0f ? x * slope : x", "cnnc_leaky_relu")

_EW_CHANNEL_AFFINE = (
    "float32 x, raw float32 s, raw float32 t, int32 hw, int32 channels", "float32 y",
    "int c = (int)((i / hw) % channels); y = x * s[c] + t[c]", "cnnc_channel_affine")

_EW_BATCH_NORM = (
    "float32 x, raw float32 g, raw float32 b, raw float32 m, raw float32 v, float32 eps, int32 hw, "
    "int32 channels", "float32 y",
    "int c = (int)((i / hw) % channels); float s = g[c] / sqrtf(v[c] + eps); y = x * s + (b[c] - m[c] * s)",
    "cnnc_batch_norm")

_EW_LRN = (
    "raw float32 x, int32 channels, int32 hw, int32 size, float32 alpha, float32 beta, float32 k",
    "float32 y",
    """
    int c = (int)((i / hw) % channels);
    long long base = (long long)i - (long long)c * hw;  // element (n, 0, pixel)
    int c0 = max(c - size / 2, 0);
    int c1 = min(c + (size - 1) / 2, channels - 1);
    float s = 0.0f;
    for (int j = c0; j <= c1; ++j) {
        float a = x[base + (long long)j * hw];
        s += a * a;
    }
    y = x[i] * powf(k + alpha * s, -beta)
    """, "cnnc_lrn")

# Upsampling: output pixel i → its column ox, row oy and image-channel index t.
_UPSAMPLE_PIXEL = """
    int wo = w * sw, ho = h * sh;
    int ox = (int)(i % wo);
    long long t = i / wo;
    int oy = (int)(t % ho);
    t /= ho;
"""

_EW_UPSAMPLE_NEAREST = (
    "raw float32 x, int32 h, int32 w, int32 sh, int32 sw", "float32 y",
    _UPSAMPLE_PIXEL + """
    y = x[(t * h + oy / sh) * w + ox / sw]
    """, "cnnc_upsample_nearest")

_EW_UPSAMPLE_BILINEAR = (
    "raw float32 x, int32 h, int32 w, int32 sh, int32 sw", "float32 y",
    _UPSAMPLE_PIXEL + """
    double fy = fmax((oy + 0.5) / sh - 0.5, 0.0), fx = fmax((ox + 0.5) / sw - 0.5, 0.0);
    int r0 = min((int)floor(fy), h - 1), c0 = min((int)floor(fx), w - 1);
    int r1 = min(r0 + 1, h - 1), c1 = min(c0 + 1, w - 1);
    float ly = (float)(fy - r0), lx = (float)(fx - c0);
    long long p = t * h * w;
    float upper = (1.0f - lx) * x[p + r0 * w + c0] + lx * x[p + r0 * w + c1];
    float lower = (1.0f - lx) * x[p + r1 * w + c0] + lx * x[p + r1 * w + c1];
    y = (1.0f - ly) * upper + ly * lower
    """, "cnnc_upsample_bilinear")

_EW_PAD = (
    "raw float32 x, int32 h, int32 w, int32 top, int32 left, int32 ho, int32 wo, int32 mode, float32 value",
    "float32 y",
    """
    int ox = (int)(i % wo);
    long long t = i / wo;
    int oy = (int)(t % ho);
    t /= ho;
    int iy = oy - top, ix = ox - left;
    if (mode == 0) {  // constant
        y = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[(t * h + iy) * w + ix] : value;
    } else {
        if (mode == 1) {  // reflect (mirror without repeating the edge), periodic for long pads
            int py = 2 * (h - 1), px = 2 * (w - 1);
            iy = py > 0 ? ((iy % py) + py) % py : 0;
            ix = px > 0 ? ((ix % px) + px) % px : 0;
            if (iy >= h) iy = py - iy;
            if (ix >= w) ix = px - ix;
        } else {  // edge
            iy = min(max(iy, 0), h - 1);
            ix = min(max(ix, 0), w - 1);
        }
        y = x[(t * h + iy) * w + ix];
    }
    """, "cnnc_pad")

_EW_BOX_IOU = (
    "raw float32 a, raw float32 b, int32 na, int32 nb, int32 center", "float32 y",
    """
    long long j = i % nb, t = i / nb;
    long long k = t % na, n = t / na;
    const long long pa = (n * na + k) * 4, pb = (n * nb + j) * 4;
    double ax1 = a[pa], ay1 = a[pa + 1], ax2 = a[pa + 2], ay2 = a[pa + 3];
    double bx1 = b[pb], by1 = b[pb + 1], bx2 = b[pb + 2], by2 = b[pb + 3];
    if (center) {
        double hw = ax2 / 2, hh = ay2 / 2;
        ax2 = ax1 + hw; ay2 = ay1 + hh; ax1 -= hw; ay1 -= hh;
        hw = bx2 / 2; hh = by2 / 2;
        bx2 = bx1 + hw; by2 = by1 + hh; bx1 -= hw; by1 -= hh;
    }
    double iw = fmax(fmin(ax2, bx2) - fmax(ax1, bx1), 0.0);
    double ih = fmax(fmin(ay2, by2) - fmax(ay1, by1), 0.0);
    double inter = iw * ih;
    double area_a = fmax(ax2 - ax1, 0.0) * fmax(ay2 - ay1, 0.0);
    double area_b = fmax(bx2 - bx1, 0.0) * fmax(by2 - by1, 0.0);
    double uni = area_a + area_b - inter;
    y = uni > 0.0 ? (float)(inter / uni) : 0.0f
    """, "cnnc_box_iou")

_EW_YOLO_DECODE = (
    "raw float32 x, raw float32 anchors, int32 na, int32 classes, int32 extras, int32 h, int32 w, float32 sh, "
    "float32 sw",
    "float32 y",
    """
    int fields = 4 + classes + extras;
    int f = (int)(i % fields);
    long long r = i / fields;       // row (cell_y * w + cell_x) * na + anchor of image n
    int a = (int)(r % na);
    long long cell = (r / na) % ((long long)h * w);
    long long n = r / ((long long)na * h * w);
    int cy = (int)(cell / w), cx = (int)(cell % w);
    long long plane = (long long)h * w;
    long long base = ((n * na + a) * (5 + classes + extras)) * plane + cell;  // field 0 of this anchor and cell
    if (f < 4) {
        int axis = f % 2;  // 0: x, 1: y
        float t = x[base + axis * plane];
        float centre = (0.5f * (1.0f + tanhf(0.5f * t)) + (axis ? cy : cx)) * (axis ? sh : sw);
        float half = expf(x[base + (2 + axis) * plane]) * (anchors[a * 2 + axis] / 2.0f);
        y = f < 2 ? centre - half : centre + half;
    } else if (f < 4 + classes) {  // sigmoid(objectness) * sigmoid(logit of class f - 4, field f + 1)
        float obj = x[base + 4 * plane], logit = x[base + (f + 1) * plane];
        y = (0.5f * (1.0f + tanhf(0.5f * obj))) * (0.5f * (1.0f + tanhf(0.5f * logit)));
    } else {  // extra value f - 4 - classes (field f + 1), as it is
        y = x[base + (f + 1) * plane];
    }
    """, "cnnc_yolo_decode")

# Instance masks, in place on the GEMM result y[n, d, i, j] = coefficients · prototypes: the
# sigmoid where the pixel centre ((j + 0.5) sw, (i + 0.5) sh) lies in row d's box (x1 <= x < x2,
# y1 <= y < y2, in double as the NumPy kernel) and the row's score is >= 0, else 0 (also for nan).
_EW_INSTANCE_MASKS = (
    "raw float32 det, int32 h, int32 w, int32 fields, float64 sh, float64 sw", "float32 y",
    """
    int j = (int)(i % w);
    int row = (int)((i / w) % h);
    long long p = (i / ((long long)h * w)) * fields;  // detection row n * D + d
    double cx = (j + 0.5) * sw, cy = (row + 0.5) * sh;
    bool inside = cx >= (double)det[p] && cx < (double)det[p + 2] && cy >= (double)det[p + 1]
        && cy < (double)det[p + 3] && det[p + 4] >= 0.0f;
    y = inside ? 0.5f * (1.0f + tanhf(0.5f * y)) : 0.0f
    """, "cnnc_instance_masks")


# ---------------------------------------------------------------------------------------
# pure-Python planning helpers (no CuPy needed; tested on the CPU)
# ---------------------------------------------------------------------------------------


def conv_method(channels: int, weight_shape, stride, pads, groups: int) -> str:
    """How conv computes a convolution: "gemm" (1x1, stride 1, unpadded: a GEMM straight on the
    input), "depthwise" (groups == C, one input channel per group: a direct kernel) or "im2col"
    (columns into the workspace, then GEMMs)."""
    _, cg, kh, kw = weight_shape
    if kh == 1 and kw == 1 and tuple(stride) == (1, 1) and not any(pads):
        return "gemm"
    if groups == channels and cg == 1 and groups > 1:
        return "depthwise"
    return "im2col"


def conv_columns(x_shape, weight_shape, stride, pads, groups: int, out_size) -> int:
    """Elements of one image's im2col columns (C·kh·kw·Ho·Wo), 0 when the conv needs none."""
    c = x_shape[1]
    _, _, kh, kw = weight_shape
    if conv_method(c, weight_shape, stride, pads, groups) != "im2col":
        return 0
    return c * kh * kw * out_size[0] * out_size[1]


def conv_transpose_columns(x_shape, weight_shape, groups: int) -> int:
    """Elements of one image's conv_transpose columns (O·kh·kw·H·W)."""
    _, _, h, w = x_shape
    _, og, kh, kw = weight_shape
    return groups * og * kh * kw * h * w


def winograd_columns(x_shape, weight_shape, out_size) -> int:
    """Elements of one image's Winograd tiles: the transformed input [36, C, tiles] and the
    channel GEMMs' result [36, O, tiles], tiles = ceil(Ho/4)·ceil(Wo/4)."""
    tiles = -(-out_size[0] // 4) * -(-out_size[1] // 4)
    return 36 * (x_shape[1] + weight_shape[1]) * tiles


def workspace_columns(kernel: str, x_shape, weight_shape, out_shape, attrs) -> int:
    """Per-image workspace elements the kernel called `kernel` needs for these shapes and attrs
    (stride, pads, groups); 0 for a kernel that takes no workspace."""
    if kernel == "conv":
        return conv_columns(x_shape, weight_shape, attrs.stride, attrs.pads, attrs.groups, out_shape[2:])
    if kernel == "conv_transpose":
        return conv_transpose_columns(x_shape, weight_shape, attrs.groups)
    if kernel == "winograd_conv":
        return winograd_columns(x_shape, weight_shape, out_shape[2:])
    return 0


def chunk_images(batch: int, per_image: int, capacity: int) -> int:
    """Images per im2col chunk: as many as `capacity` workspace elements hold, at least one."""
    if per_image <= 0:
        return batch
    return max(1, min(batch, capacity // per_image))


def workspace_elements(columns, batch: int, limit_bytes: int = WORKSPACE_LIMIT) -> int:
    """Workspace elements for GEMM convs whose columns take `columns` elements per image: the
    largest chunk any of them uses, a chunk being as many images as fit in `limit_bytes` (at
    least one image, even when one image's columns alone exceed the limit)."""
    capacity = limit_bytes // 4
    return max((chunk_images(batch, k, capacity) * k for k in columns if k > 0), default=0)


def batch_shape(shape, batch: int) -> tuple:
    """A declared shape with its symbolic (batch) dimensions replaced by `batch`."""
    return tuple(batch if isinstance(d, str) else int(d) for d in shape)


def _grid(total: int) -> tuple:
    return (max(1, min((total + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)), 1, 1)


def _check_index(*arrays) -> None:
    """The CUDA kernels index with 32-bit integers."""
    for array in arrays:
        if array is not None and array.size > _INT32_LIMIT:
            raise ValueError(f"a tensor of {array.size} elements is too large for the CuPy kernels "
                             f"(at most 2**31 - 1): run a smaller batch")


def _tf32() -> bool:
    """Whether GEMMs use TF32 tensor cores: set_tf32(), else the CUPY_TF32 environment variable."""
    if _SETTINGS["tf32"] is None:
        return os.environ.get("CUPY_TF32", "0") not in ("", "0")
    return bool(_SETTINGS["tf32"])


def set_tf32(enabled) -> None:
    """Let GEMMs round their inputs to TF32 (10-bit mantissa; about 1e-3 relative error per
    product) for tensor-core speed: True, False, or None to follow CUPY_TF32."""
    _SETTINGS["tf32"] = enabled


# ---------------------------------------------------------------------------------------
# CuPy helpers
# ---------------------------------------------------------------------------------------


def _raw(name: str, source: str):
    """RawKernel `name` of CUDA `source` (with the common prelude), created once per process."""
    kernel = _CACHE.get(name)
    if kernel is None:
        kernel = _CACHE[name] = cp.RawKernel(_CU_COMMON + source, name)
    return kernel


def _elementwise(spec):
    """ElementwiseKernel of a (in_params, out_params, operation, name) spec, created once."""
    kernel = _CACHE.get(spec[3])
    if kernel is None:
        kernel = _CACHE[spec[3]] = cp.ElementwiseKernel(*spec)
    return kernel


def _output(out, shape):
    """`out` (checked) or a new float32 array of `shape`."""
    if out is None:
        return cp.empty(shape, dtype=cp.float32)
    if tuple(out.shape) != tuple(shape) or out.dtype != cp.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out= must be a C-contiguous float32 array of shape {tuple(shape)}, "
                         f"got {out.dtype} {tuple(out.shape)}")
    return out


def _f32(x):
    """x as a C-contiguous float32 CuPy array (no copy when it already is one)."""
    return cp.ascontiguousarray(x, dtype=cp.float32)


def _gemm(a, b, c, m: int, n: int, k: int, *, lda: int, ldb: int, ldc: int, stride_a: int = 0,
          stride_b: int = 0, stride_c: int = 0, batch: int = 1, trans_a: bool = False,
          trans_b: bool = False) -> None:
    """Row-major C[m, n] = op(A)[m, k] · op(B)[k, n] for `batch` matrices at element strides
    stride_a/b/c (0: shared by every batch entry), through cuBLAS, TF32 when enabled.

    a, b, c are CuPy arrays whose data start at the first matrix; lda/ldb/ldc are the stored row
    lengths. cuBLAS is column-major, so this computes C^T = op(B)^T · op(A)^T.
    """
    from cupy_backends.cuda.libs import cublas

    compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if _tf32() else cublas.CUBLAS_COMPUTE_32F
    one = np.ones(1, dtype=np.float32)
    zero = np.zeros(1, dtype=np.float32)
    r32f = 0  # CUDA_R_32F
    cublas.gemmStridedBatchedEx(
        cp.cuda.device.get_cublas_handle(), int(trans_b), int(trans_a), n, m, k, one.ctypes.data,
        b.data.ptr, r32f, ldb, stride_b, a.data.ptr, r32f, lda, stride_a, zero.ctypes.data,
        c.data.ptr, r32f, ldc, stride_c, batch, compute, -1)  # -1: CUBLAS_GEMM_DEFAULT


def _epilogue(y, b, residual, activation: str, slope: float, hw: int):
    """act(y + bias[channel] + residual) in place in y (channels on axis 1, `hw` values each)."""
    if b is None and residual is None and activation == "none":
        return y
    spec = _epilogue_spec(b is not None, residual is not None, activation)
    args = ([_f32(b)] if b is not None else []) + ([residual] if residual is not None else [])
    _elementwise(spec)(*args, np.int32(hw), np.int32(y.shape[1]), np.float32(slope), y)
    return y


def _epilogue_spec(has_bias: bool, has_residual: bool, activation: str):
    """The ElementwiseKernel spec of one epilogue variant (compiled per variant actually used)."""
    expressions = {"none": "v", "relu": "v > 0.0f ? v : 0.0f", "relu6": "fminf(fmaxf(v, 0.0f), 6.0f)",
                   "leaky_relu": "v < 0.0f ? v * slope : v", "sigmoid": "0.5f * (1.0f + tanhf(0.5f * v))",
                   "hardsigmoid": "fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f",
                   "hardswish": "v * fminf(fmaxf(v + 3.0f, 0.0f), 6.0f) / 6.0f", "silu": "v / (1.0f + expf(-v))",
                   "gelu": "0.5f * v * erfcf(-0.70710678f * v)",
                   "gelu_tanh": "v / (1.0f + expf(-1.59576912f * (v + 0.044715f * v * v * v)))"}
    if activation not in expressions:
        raise ValueError(f"unknown activation {activation!r}")
    params = (["raw float32 b"] if has_bias else []) + (["float32 r"] if has_residual else [])
    params += ["int32 hw", "int32 channels", "float32 slope"]
    body = "float v = y;"
    if has_bias:
        body += " v += b[(i / hw) % channels];"
    if has_residual:
        body += " v += r;"
    body += f" y = {expressions[activation]}"
    name = f"cnnc_epilogue_{'b' if has_bias else ''}{'r' if has_residual else ''}_{activation}"
    return (", ".join(params), "float32 y", body, name)


# ---------------------------------------------------------------------------------------
# convolutions and dense
# ---------------------------------------------------------------------------------------


def conv(x, w, b, *, stride, pads, dilation, groups: int, out_size, activation: str = "none",
           slope: float = 0.0, residual=None, out=None, workspace=None, layout_in: str = "nchw",
           layout_out: str = "nchw"):
    """2-D convolution (NCHW, OIHW weights, bias [O] or None) to `out_size` (Ho, Wo) with the fused
    epilogue act(conv + bias + residual). See the module docstring for the three methods;
    `workspace` (flat float32) holds the im2col columns of as many images as fit, at least one.
    NCHW only: the code generator lays channels-last values out NCHW again (passes/layout.py)."""
    if layout_in != "nchw" or layout_out != "nchw":
        raise ValueError(f"the CuPy conv reads and writes NCHW, got layouts {layout_in!r} → {layout_out!r}")
    x = _f32(x)
    w = _f32(w)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    ho, wo = out_size
    y = _output(out, (n, o, ho, wo))
    _check_index(x, y)
    method = conv_method(c, w.shape, stride, pads, groups)
    if method == "depthwise":
        total = y.size
        _raw("cnnc_depthwise_conv", _CU_DEPTHWISE)(_grid(total), (_BLOCK, 1, 1), (
            x, w, w if b is None else _f32(b), y if residual is None else _f32(residual), y,
            np.int32(total), np.int32(c), np.int32(h), np.int32(wd), np.int32(o // c), np.int32(kh),
            np.int32(kw), np.int32(sh), np.int32(sw), np.int32(top), np.int32(left), np.int32(dh),
            np.int32(dw), np.int32(ho), np.int32(wo), np.int32(b is not None), np.int32(residual is not None),
            np.int32(_ACTIVATIONS[activation]), np.float32(slope)))
        return y
    og = o // groups
    hw = ho * wo
    kdim = cg * kh * kw
    if method == "gemm":  # 1x1: the input itself is the column matrix [C, H*W] of each image
        for g in range(groups):
            _gemm(w[g * og:], x[:, g * cg:], y[:, g * og:], og, hw, kdim, lda=kdim, ldb=hw, ldc=hw,
                  stride_a=0, stride_b=c * hw, stride_c=o * hw, batch=n)
    else:
        per_image = c * kh * kw * hw
        if workspace is None:
            workspace = cp.empty(chunk_images(n, per_image, WORKSPACE_LIMIT // 4) * per_image, dtype=cp.float32)
        chunk = chunk_images(n, per_image, workspace.size)
        if chunk * per_image > workspace.size:
            raise ValueError(f"workspace of {workspace.size} elements is smaller than one image's "
                             f"columns ({per_image})")
        _check_index(workspace[:chunk * per_image])
        im2col = _raw("cnnc_im2col", _CU_IM2COL)
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            cols = workspace[:count * per_image]
            total = cols.size
            im2col(_grid(total), (_BLOCK, 1, 1), (
                x[start:start + count], cols, np.int32(total), np.int32(h), np.int32(wd), np.int32(kh),
                np.int32(kw), np.int32(sh), np.int32(sw), np.int32(top), np.int32(left), np.int32(dh),
                np.int32(dw), np.int32(ho), np.int32(wo)))
            for g in range(groups):
                _gemm(w[g * og:], cols[g * kdim * hw:], y[start:start + count, g * og:], og, hw, kdim,
                      lda=kdim, ldb=hw, ldc=hw, stride_a=0, stride_b=per_image, stride_c=o * hw, batch=count)
    return _epilogue(y, b, None if residual is None else _f32(residual), activation, slope, hw)


def winograd_conv(x, u, b, *, pads, out_size, activation: str = "none", slope: float = 0.0,
                  residual=None, out=None, workspace=None):
    """3x3 stride-1 conv by Winograd F(4x4, 3x3) (``u`` [36, O, C] = G g Gᵀ, NumPy twin's docs):
    for as many images as the workspace holds, a RawKernel transforms the input tiles into
    [36, C, tiles], one strided-batched GEMM computes the 36 products [O, C]·[C, tiles], and a
    RawKernel transforms them back into 4x4 output tiles with the fused epilogue."""
    x = _f32(x)
    u = _f32(u)
    n, c, h, wd = x.shape
    o = u.shape[1]
    ho, wo = out_size
    th, tw = -(-ho // 4), -(-wo // 4)
    y = _output(out, (n, o, ho, wo))
    per_image = winograd_columns(x.shape, u.shape, out_size)
    if workspace is None:
        workspace = cp.empty(chunk_images(n, per_image, WORKSPACE_LIMIT // 4) * per_image, dtype=cp.float32)
    chunk = chunk_images(n, per_image, workspace.size)
    if chunk * per_image > workspace.size:
        raise ValueError(f"workspace of {workspace.size} elements is smaller than one image's "
                         f"Winograd tiles ({per_image})")
    _check_index(x, y, workspace[:chunk * per_image])
    transform_in = _raw("cnnc_winograd_input", _CU_WINOGRAD_INPUT)
    transform_out = _raw("cnnc_winograd_output", _CU_WINOGRAD_OUTPUT)
    res = None if residual is None else _f32(residual)
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        tiles = count * th * tw
        v = workspace[:36 * c * tiles]
        m = workspace[36 * c * tiles:36 * (c + o) * tiles]
        transform_in(_grid(c * tiles), (_BLOCK, 1, 1), (
            x[start:start + count], v, np.int32(c * tiles), np.int32(c), np.int32(h), np.int32(wd),
            np.int32(th), np.int32(tw), np.int32(pads[0]), np.int32(pads[1])))
        _gemm(u, v, m, o, tiles, c, lda=c, ldb=tiles, ldc=tiles, stride_a=o * c, stride_b=c * tiles,
              stride_c=o * tiles, batch=36)
        part = y[start:start + count]
        transform_out(_grid(o * tiles), (_BLOCK, 1, 1), (
            m, u if b is None else _f32(b), part if res is None else res[start:start + count], part,
            np.int32(o * tiles), np.int32(o), np.int32(th), np.int32(tw), np.int32(ho), np.int32(wo),
            np.int32(b is not None), np.int32(res is not None), np.int32(_ACTIVATIONS[activation]),
            np.float32(slope)))
    return y


def conv_transpose(x, w, b, *, stride, pads, output_padding, dilation, groups: int, out=None,
                     workspace=None):
    """Transposed convolution, weights [C, O/groups, kh, kw]: per group the GEMM W_g^T x gives
    every tap's contribution as columns [O·kh·kw, H·W] per image (chunks of the batch as the
    workspace allows), then col2im gathers them into the output cropped by the pads, plus bias."""
    x = _f32(x)
    w = _f32(w)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    o = og * groups
    sh, sw = stride
    dh, dw = dilation
    oph, opw = output_padding
    top, left, bottom, right = pads
    hout = (h - 1) * sh + dh * (kh - 1) + 1 + oph - top - bottom
    wout = (wd - 1) * sw + dw * (kw - 1) + 1 + opw - left - right
    y = _output(out, (n, o, hout, wout))
    hw = h * wd
    rows = og * kh * kw  # column rows of one group
    per_image = o * kh * kw * hw
    if workspace is None:
        workspace = cp.empty(chunk_images(n, per_image, WORKSPACE_LIMIT // 4) * per_image, dtype=cp.float32)
    chunk = chunk_images(n, per_image, workspace.size)
    if chunk * per_image > workspace.size:
        raise ValueError(f"workspace of {workspace.size} elements is smaller than one image's columns ({per_image})")
    _check_index(x, y, workspace[:chunk * per_image])
    col2im = _raw("cnnc_col2im", _CU_COL2IM)
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        cols = workspace[:count * per_image]
        for g in range(groups):
            _gemm(w[g * cg:], x[start:start + count, g * cg:], cols[g * rows * hw:], rows, hw, cg,
                  lda=rows, ldb=hw, ldc=hw, stride_a=0, stride_b=c * hw, stride_c=per_image, batch=count,
                  trans_a=True)
        part = y[start:start + count]
        total = part.size
        col2im(_grid(total), (_BLOCK, 1, 1), (
            cols, w if b is None else _f32(b), part, np.int32(total), np.int32(o), np.int32(hout),
            np.int32(wout), np.int32(h), np.int32(wd), np.int32(kh), np.int32(kw), np.int32(sh), np.int32(sw),
            np.int32(top), np.int32(left), np.int32(dh), np.int32(dw), np.int32(b is not None)))
    return y


def dense(x, w, b, *, activation: str = "none", slope: float = 0.0, out=None):
    """Fully connected layer [N, F] → [N, O] (or [N, F, 1, 1] → [N, O, 1, 1]): one GEMM x · W^T,
    then bias and activation in one elementwise pass."""
    x = _f32(x)
    w = _f32(w)
    n = x.shape[0]
    features = x.size // n if n else 0
    units = w.shape[0]
    y = _output(out, (n, units, 1, 1) if x.ndim == 4 else (n, units))
    _gemm(x, w, y, n, units, features, lda=features, ldb=features, ldc=units, trans_b=True)
    return _epilogue(y, b, None, activation, slope, 1)


# ---------------------------------------------------------------------------------------
# normalisation and activations
# ---------------------------------------------------------------------------------------


def _plane(x) -> int:
    """Values per channel of one example: H·W for [N, C, H, W], 1 for [N, C]."""
    return int(math.prod(x.shape[2:]))


def batch_norm(x, gamma, beta, mean, var, *, eps: float, out=None):
    """Inference batch norm over axis 1: x·s + (β − μ·s) with s = γ/√(σ² + ε), one pass."""
    x = _f32(x)
    y = _output(out, x.shape)
    _elementwise(_EW_BATCH_NORM)(x, _f32(gamma), _f32(beta), _f32(mean), _f32(var), np.float32(eps),
                                 np.int32(_plane(x)), np.int32(x.shape[1]), y)
    return y


def channel_affine(x, scale, shift, out=None):
    """Per-channel x·scale[c] + shift[c] over axis 1 (a batch norm that could not be folded)."""
    x = _f32(x)
    y = _output(out, x.shape)
    _elementwise(_EW_CHANNEL_AFFINE)(x, _f32(scale), _f32(shift), np.int32(_plane(x)), np.int32(x.shape[1]), y)
    return y


def _channel_shape(x) -> tuple:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def layer_norm(x, gamma, beta, *, eps: float, out=None):
    """Normalize over axis 1 at each position, then γ·x + β (CuPy reductions, NumPy twin's docs)."""
    x = _f32(x)
    y = _output(out, x.shape)
    centered = x - x.mean(axis=1, keepdims=True)
    var = cp.mean(centered * centered, axis=1, keepdims=True)
    shape = _channel_shape(x)
    cp.multiply(centered, (1.0 / cp.sqrt(var + np.float32(eps))).astype(cp.float32), out=y)
    y *= _f32(gamma).reshape(shape)
    y += _f32(beta).reshape(shape)
    return y


def group_norm(x, gamma, beta, *, groups: int, eps: float, out=None):
    """Normalize over each group of channels and every position, then γ·x + β."""
    x = _f32(x)
    y = _output(out, x.shape)
    flat = x.reshape(x.shape[0], groups, -1)
    centered = flat - flat.mean(axis=2, keepdims=True)
    var = cp.mean(centered * centered, axis=2, keepdims=True)
    cp.multiply(centered, (1.0 / cp.sqrt(var + np.float32(eps))).astype(cp.float32), out=y.reshape(flat.shape))
    shape = _channel_shape(x)
    y *= _f32(gamma).reshape(shape)
    y += _f32(beta).reshape(shape)
    return y


def layer_scale(x, scale, out=None):
    """x · scale[c] over axis 1; `out` may be `x`."""
    x = _f32(x)
    y = _output(out, x.shape)
    cp.multiply(x, _f32(scale).reshape(_channel_shape(x)), out=y)
    return y


def clip(x, *, min: float, max: float, out=None):  # noqa: A002
    """min(max(x, min), max); `out` may be `x`."""
    x = _f32(x)
    y = _output(out, x.shape)
    cp.clip(x, np.float32(min), np.float32(max), out=y)
    return y


def prelu(x, slope, out=None):
    """x if x ≥ 0 else slope[c]·x; `out` may be `x`."""
    x = _f32(x)
    y = _output(out, x.shape)
    s = _f32(slope).reshape(_channel_shape(x))
    cp.multiply(x, cp.where(x >= 0, np.float32(1), s), out=y)
    return y


def relu(x, out=None):
    """max(x, 0); `out` may be x itself (here and in the other elementwise kernels)."""
    return _elementwise(_EW_RELU)(_f32(x), _output(out, x.shape))


def relu6(x, out=None):
    """min(max(x, 0), 6)."""
    return _elementwise(_EW_RELU6)(_f32(x), _output(out, x.shape))


def sigmoid(x, out=None):
    """0.5·(1 + tanh(x/2)), as the NumPy kernel."""
    return _elementwise(_EW_SIGMOID)(_f32(x), _output(out, x.shape))


def tanh(x, out=None):
    """Hyperbolic tangent."""
    return _elementwise(_EW_TANH)(_f32(x), _output(out, x.shape))


def hardsigmoid(x, out=None):
    """relu6(x + 3) / 6, as the NumPy kernel."""
    return _elementwise(_EW_HARDSIGMOID)(_f32(x), _output(out, x.shape))


def hardswish(x, out=None):
    """x · relu6(x + 3) / 6, as the NumPy kernel."""
    return _elementwise(_EW_HARDSWISH)(_f32(x), _output(out, x.shape))


def silu(x, out=None):
    """x / (1 + e^(−x)), as the NumPy kernel."""
    return _elementwise(_EW_SILU)(_f32(x), _output(out, x.shape))


def gelu(x, out=None):
    """x · ½ erfc(−x/√2), the exact GELU (CUDA's erfcf: relative accuracy in the negative tail)."""
    return _elementwise(_EW_GELU)(_f32(x), _output(out, x.shape))


def gelu_tanh(x, out=None):
    """PyTorch's tanh-approximate GELU as x / (1 + e^(−2u)), as the NumPy kernel."""
    return _elementwise(_EW_GELU_TANH)(_f32(x), _output(out, x.shape))


def leaky_relu(x, *, slope: float, out=None):
    """x if x ≥ 0 else slope·x."""
    return _elementwise(_EW_LEAKY_RELU)(_f32(x), np.float32(slope), _output(out, x.shape))


def softmax(x, *, axis: int, out=None):
    """Numerically stable softmax along `axis` (CuPy reductions; small temporaries)."""
    x = _f32(x)
    y = _output(out, x.shape)
    cp.subtract(x, x.max(axis=axis, keepdims=True), out=y)
    cp.exp(y, out=y)
    cp.divide(y, y.sum(axis=axis, keepdims=True), out=y)
    return y


def lrn(x, *, size: int, alpha: float, beta: float, k: float, out=None):
    """AlexNet LRN across channels (α not divided by size), one elementwise pass."""
    x = _f32(x)
    y = _output(out, x.shape)
    _elementwise(_EW_LRN)(x, np.int32(x.shape[1]), np.int32(_plane(x)), np.int32(size), np.float32(alpha),
                          np.float32(beta), np.float32(k), y)
    return y


# ---------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------


def max_pool(x, *, kernel, stride, pads, dilation, out_size, out=None):
    """Max pooling (−∞ padding) to `out_size` (Ho, Wo), one thread per output."""
    x = _f32(x)
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    top, left = pads[0], pads[1]
    ho, wo = out_size
    y = _output(out, (n, c, ho, wo))
    _check_index(x, y)
    total = y.size
    _raw("cnnc_max_pool", _CU_MAX_POOL)(_grid(total), (_BLOCK, 1, 1), (
        x, y, np.int32(total), np.int32(h), np.int32(wd), np.int32(kh), np.int32(kw), np.int32(sh), np.int32(sw),
        np.int32(top), np.int32(left), np.int32(dh), np.int32(dw), np.int32(ho), np.int32(wo)))
    return y


def avg_pool(x, *, kernel, stride, pads, count_include_pad: bool, out_size, out=None):
    """Average pooling to `out_size` (Ho, Wo) with PyTorch's divisor rules, one thread per output."""
    x = _f32(x)
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    ho, wo = out_size
    y = _output(out, (n, c, ho, wo))
    _check_index(x, y)
    total = y.size
    _raw("cnnc_avg_pool", _CU_AVG_POOL)(_grid(total), (_BLOCK, 1, 1), (
        x, y, np.int32(total), np.int32(h), np.int32(wd), np.int32(kh), np.int32(kw), np.int32(sh), np.int32(sw),
        np.int32(top), np.int32(left), np.int32(bottom), np.int32(right), np.int32(ho), np.int32(wo),
        np.int32(bool(count_include_pad))))
    return y


def _reduce_rows(x, y, rows: int, length: int, mode: str):
    """Mean or max of each of `rows` contiguous rows of `length` values, a thread per row."""
    _check_index(x)
    _raw("cnnc_reduce_rows", _CU_REDUCE_ROWS)(_grid(rows), (_BLOCK, 1, 1), (
        x, y, np.int32(rows), np.int32(length), np.int32(0 if mode == "mean" else 1)))
    return y


def global_avg_pool(x, out=None):
    """Mean over H and W: [N, C, H, W] → [N, C, 1, 1]."""
    x = _f32(x)
    n, c, h, wd = x.shape
    return _reduce_rows(x, _output(out, (n, c, 1, 1)), n * c, h * wd, "mean")


def global_max_pool(x, out=None):
    """Max over H and W: [N, C, H, W] → [N, C, 1, 1]."""
    x = _f32(x)
    n, c, h, wd = x.shape
    return _reduce_rows(x, _output(out, (n, c, 1, 1)), n * c, h * wd, "max")


def adaptive_pool(x, *, size, mode: str, out=None):
    """PyTorch's adaptive bins, max or mean, separably: rows of each bin, then columns."""
    x = _f32(x)
    n, c, h, wd = x.shape
    ho, wo = size
    y = _output(out, (n, c, ho, wo))
    reduce = cp.amax if mode == "max" else cp.mean
    rows = cp.empty((n, c, ho, wd), dtype=cp.float32)
    for i in range(ho):
        rows[:, :, i] = reduce(x[:, :, (i * h) // ho:-(-(i + 1) * h // ho)], axis=2)
    for j in range(wo):
        y[:, :, :, j] = reduce(rows[:, :, :, (j * wd) // wo:-(-(j + 1) * wd // wo)], axis=3)
    return y


def depthwise_pool(x, *, size: int, mode: str, out=None):
    """Pool groups of `size` consecutive channels ("max" or "avg") with CuPy reductions."""
    x = _f32(x)
    n, c, h, wd = x.shape
    y = _output(out, (n, c // size, h, wd))
    groups = x.reshape(n, c // size, size, h, wd)
    if mode == "max":
        cp.amax(groups, axis=2, out=y)
    elif mode == "avg":
        cp.mean(groups, axis=2, out=y)
    else:
        raise ValueError(f"depthwise_pool: unknown mode {mode!r}")
    return y


def reduce(x, *, mode: str, axes, keepdims: bool, out=None):
    """Mean or maximum over `axes`: a thread per row when the axes are the trailing ones (global
    pooling), else CuPy's reduction."""
    x = _f32(x)
    axes = sorted(a % x.ndim for a in axes)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    y = _output(out, shape)
    if mode not in ("mean", "max", "sum"):
        raise ValueError(f"reduce: unknown mode {mode!r}")
    if mode != "sum" and axes and axes == list(range(x.ndim - len(axes), x.ndim)):
        length = int(math.prod(x.shape[a] for a in axes))
        return _reduce_rows(x, y, x.size // length if length else 0, length, mode)
    reduced = y.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    if mode == "mean":
        cp.mean(x, axis=tuple(axes), keepdims=True, out=reduced)
    elif mode == "sum":
        cp.sum(x, axis=tuple(axes), keepdims=True, out=reduced)
    else:
        cp.amax(x, axis=tuple(axes), keepdims=True, out=reduced)
    return y


# ---------------------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------------------


def flatten(x):
    """[N, ...] → [N, prod(...)]: a view."""
    return x.reshape(x.shape[0], -1)


def reshape(x, *, shape):
    """Reshape keeping the batch dimension: a view."""
    return x.reshape((x.shape[0],) + tuple(shape))


def add(a, b, out=None):
    """Elementwise sum with broadcasting; `out` may be `a` when nothing broadcasts."""
    return cp.add(a, b, out=out)


def sub(a, b, out=None):
    """Elementwise difference with broadcasting; `out` may be `a` when nothing broadcasts."""
    return cp.subtract(a, b, out=out)


def div(a, b, out=None):
    """Elementwise quotient with broadcasting; `out` may be `a` when nothing broadcasts."""
    return cp.divide(a, b, out=out)


def scalar_affine(x, *, scale: float, shift: float, out=None):
    """x·scale + shift with two numbers; `out` may be `x`."""
    x = _f32(x)
    y = _output(out, x.shape)
    cp.multiply(x, np.float32(scale), out=y)
    if shift:
        cp.add(y, np.float32(shift), out=y)
    return y


def mul(a, b, out=None):
    """Elementwise product with broadcasting; `out` may be `a` when nothing broadcasts."""
    return cp.multiply(a, b, out=out)


def concat(*xs, axis: int, out=None):
    """Concatenate along `axis`: one copy kernel per input into its slice of the output (no
    host-side pointer table, so it can be captured in a CUDA graph)."""
    ndim = xs[0].ndim
    axis %= ndim
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    y = _output(out, tuple(shape))
    index = [slice(None)] * ndim
    start = 0
    for x in xs:
        index[axis] = slice(start, start + x.shape[axis])
        cp.copyto(y[tuple(index)], x)
        start += x.shape[axis]
    return y


def upsample(x, *, scale, mode: str, out=None):
    """Integer-factor upsampling, "nearest" or "bilinear" (PyTorch's align_corners=False)."""
    x = _f32(x)
    n, c, h, wd = x.shape
    sh, sw = scale
    y = _output(out, (n, c, h * sh, wd * sw))
    if mode == "nearest":
        spec = _EW_UPSAMPLE_NEAREST
    elif mode == "bilinear":
        spec = _EW_UPSAMPLE_BILINEAR
    else:
        raise ValueError(f"upsample: unknown mode {mode!r}")
    _elementwise(spec)(x, np.int32(h), np.int32(wd), np.int32(sh), np.int32(sw), y)
    return y


def pad(x, *, pads, mode: str, value: float = 0.0, out=None):
    """Spatial padding (top, left, bottom, right): "constant", "reflect" or "edge"."""
    x = _f32(x)
    n, c, h, wd = x.shape
    top, left, bottom, right = pads
    modes = {"constant": 0, "reflect": 1, "edge": 2}
    if mode not in modes:
        raise ValueError(f"pad: unknown mode {mode!r}")
    ho, wo = h + top + bottom, wd + left + right
    y = _output(out, (n, c, ho, wo))
    _elementwise(_EW_PAD)(x, np.int32(h), np.int32(wd), np.int32(top), np.int32(left), np.int32(ho),
                          np.int32(wo), np.int32(modes[mode]), np.float32(value), y)
    return y


def crop(x, *, offset, size, out=None):
    """x[:, :, oy:oy+h, ox:ox+w], copied into its own array."""
    oy, ox = offset
    h, w = size
    part = x[:, :, oy:oy + h, ox:ox + w]
    y = _output(out, part.shape)
    cp.copyto(y, part)
    return y


def channel_shuffle(x, *, groups: int, out=None):
    """Channel g·(C/groups) + k moves to k·groups + g."""
    x = _f32(x)
    n, c, h, wd = x.shape
    y = _output(out, x.shape)
    cp.copyto(y.reshape(n, c // groups, groups, h, wd),
              x.reshape(n, groups, c // groups, h, wd).transpose(0, 2, 1, 3, 4))
    return y


def pixel_shuffle(x, *, factor: int, out=None):
    """y[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]."""
    x = _f32(x)
    n, c, h, wd = x.shape
    r = factor
    y = _output(out, (n, c // (r * r), h * r, wd * r))
    cp.copyto(y.reshape(n, c // (r * r), h, r, wd, r),
              x.reshape(n, c // (r * r), r, r, h, wd).transpose(0, 1, 4, 2, 5, 3))
    return y


def permute(x, *, order, out=None):
    """x.transpose(order), copied into its own C-contiguous array."""
    part = x.transpose(tuple(order))
    y = _output(out, part.shape)
    cp.copyto(y, part)
    return y


def matmul(a, b, out=None):
    """Matrix product over the last two axes, the others broadcast."""
    a, b = _f32(a), _f32(b)
    y = _output(out, (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]))
    cp.matmul(a, b, out=y)
    return y


def slice_axis(x, *, axis: int, start: int, stop: int, out=None):
    """x[..., start:stop, ...] along `axis`, copied into its own array."""
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    part = x[tuple(index)]
    y = _output(out, part.shape)
    cp.copyto(y, part)
    return y


# ---------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------


def iou(a, b, *, format: str, out=None):
    """Pairwise IoU [N, A, 4] × [N, B, 4] → [N, A, B], computed in float64, 0 where the union is 0."""
    if format not in ("corners", "center"):
        raise ValueError(f"unknown box format {format!r}")
    a = _f32(a)
    b = _f32(b)
    y = _output(out, (a.shape[0], a.shape[1], b.shape[1]))
    _elementwise(_EW_BOX_IOU)(a, b, np.int32(a.shape[1]), np.int32(b.shape[1]), np.int32(format == "center"), y)
    return y


def nms(boxes, scores, extras=None, *, iou_threshold: float, score_threshold: float, max_boxes: int,
        format: str, out=None):
    """Class-wise greedy NMS on the host (the NumPy kernel): greedy NMS is sequential, so the
    inputs (boxes, scores and, when given, the extra columns [N, K, E] each kept row carries) are
    copied to the host and the result [N, max_boxes, 6 + E] back. This synchronizes the stream: a
    network with nms runs eagerly, without a CUDA graph."""
    result = _host_nms(cp.asnumpy(boxes), cp.asnumpy(scores), None if extras is None else cp.asnumpy(extras),
                       iou_threshold=iou_threshold, score_threshold=score_threshold, max_boxes=max_boxes,
                       format=format)
    if out is None:
        return cp.asarray(result)
    _output(out, result.shape).set(result)
    return out


def yolo_decode(x, *, anchors, classes: int, stride, extras: int = 0, out=None):
    """YOLOv3 decoding [N, A·(5+C+E), H, W] → [N, H·W·A, 4+C+E] (the E extra channels copied as
    they are), one thread per output value. The anchors are uploaded once per distinct set
    (before any CUDA-graph capture: the first call runs eagerly)."""
    x = _f32(x)
    n, _, h, w = x.shape
    count = len(anchors)
    key = ("anchors", tuple(tuple(float(v) for v in a) for a in anchors))
    table = _CACHE.get(key)
    if table is None:
        table = _CACHE[key] = cp.asarray(np.asarray(anchors, dtype=np.float32).reshape(-1))
    y = _output(out, (n, h * w * count, 4 + classes + extras))
    _elementwise(_EW_YOLO_DECODE)(x, table, np.int32(count), np.int32(classes), np.int32(extras), np.int32(h),
                                  np.int32(w), np.float32(stride[0]), np.float32(stride[1]), y)
    return y


def instance_masks(protos, detections, *, stride, out=None):
    """YOLACT's masks [N, D, H, W] from prototypes [N, P, H, W] and nms rows [N, D, 6 + P]: one
    strided-batched GEMM coefficients · prototypes per image (the coefficients read in place
    from the rows, leading dimension 6 + P), then one elementwise pass in place: σ where the
    pixel centre lies in the row's box (compared in float64, as the NumPy kernel), else 0; padding
    rows (score < 0) give empty masks."""
    protos = _f32(protos)
    detections = _f32(detections)
    n, count, h, w = protos.shape
    rows, fields = detections.shape[1], detections.shape[2]
    y = _output(out, (n, rows, h, w))
    _check_index(protos, detections, y)
    hw = h * w
    _gemm(detections[:, :, 6:], protos, y, rows, hw, count, lda=fields, ldb=hw, ldc=hw, stride_a=rows * fields,
          stride_b=count * hw, stride_c=rows * hw, batch=n)
    _elementwise(_EW_INSTANCE_MASKS)(detections, np.int32(h), np.int32(w), np.int32(fields),
                                     np.float64(stride[0]), np.float64(stride[1]), y)
    return y


# ---------------------------------------------------------------------------------------
# running a generated network: preallocated buffers, CUDA graphs, parameters on the device
# ---------------------------------------------------------------------------------------


def _capture(stream, run):
    """Capture `run()` on `stream` into a CUDA graph; returns (graph, run's result, the memory
    allocated during the capture). That memory is kept for the graph's lifetime: a temporary a
    kernel allocates while being captured has its address baked into the graph, so it must
    never go back to the pool."""
    allocate = cp.cuda.get_allocator()
    kept = []

    def keep(size):
        memory = allocate(size)
        kept.append(memory)
        return memory

    cp.cuda.set_allocator(keep)
    try:
        stream.begin_capture()
        try:
            result = run()
        except BaseException:
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001 - the capture is already invalid; report the first error
                pass
            raise
        graph = stream.end_capture()
    finally:
        cp.cuda.set_allocator(allocate)
    return graph, result, kept


class Runner:
    """Runs a generated module's `forward` on the GPU, fast for repeated calls.

    Parameters stay on the device (`update_params` copies new values into the same arrays). For
    each distinct set of input shapes (at most `max_sessions`, least recently used dropped) it
    preallocates the input, intermediate and workspace buffers once; the first call runs eagerly
    (compiling the kernels), then the whole forward pass is captured in a CUDA graph that later
    calls replay after copying the inputs in. Capture is skipped when the network has host steps
    (`blockers`) or `cuda_graph=False`, and falls back to eager launches when it fails
    (`status` says which and why). Outputs are NumPy arrays, or fresh CuPy arrays with
    outputs="cupy".
    """

    def __init__(self, forward, allocate, input_names, params, *, blockers=(), cuda_graph=True, tf32=False,
                 outputs="numpy", workspace_limit=WORKSPACE_LIMIT, max_sessions=4):
        if outputs not in ("numpy", "cupy"):
            raise ValueError(f"outputs must be 'numpy' or 'cupy', got {outputs!r}")
        self.forward = forward
        self.allocate = allocate
        self.input_names = tuple(input_names)
        self.params = dict(params)
        self.blockers = tuple(blockers)
        self.cuda_graph = bool(cuda_graph)
        self.tf32 = tf32
        self.outputs = outputs
        self.workspace_limit = workspace_limit
        self.max_sessions = max_sessions
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.sessions = {}  # input shapes -> session dict
        self.status = {}  # input shapes -> "cuda graph" | "eager (why)"

    def update_params(self, values) -> None:
        """Copy new parameter values (host or device arrays) into the device arrays in place, so
        captured graphs stay valid; a changed shape or a new name drops them."""
        for name, value in values.items():
            current = self.params.get(name)
            if current is not None and tuple(current.shape) == tuple(value.shape):
                if isinstance(value, np.ndarray):
                    current.set(np.ascontiguousarray(value, dtype=np.float32), stream=self.stream)
                else:
                    with self.stream:
                        cp.copyto(current, value)
            else:
                self.params[name] = cp.asarray(np.asarray(value, dtype=np.float32)) \
                    if isinstance(value, np.ndarray) else cp.ascontiguousarray(value, dtype=cp.float32)
                self.sessions.clear()
                self.status.clear()
        self.stream.synchronize()

    def __call__(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} input(s) ({', '.join(self.input_names)}), "
                            f"got {len(inputs)}")
        shapes = tuple(tuple(int(d) for d in x.shape) for x in inputs)
        # the inputs may come from another stream (CuPy's default one): wait for it
        self.stream.wait_event(cp.cuda.get_current_stream().record())
        set_tf32(self.tf32)
        with self.stream:
            session = self.sessions.pop(shapes, None)
            if session is None:
                session = self._start(shapes, inputs)
            else:
                self._copy_in(session, inputs)
                if session["graph"] is not None:
                    session["graph"].launch(self.stream)
                else:
                    self.forward(self.params, *session["inputs"], buffers=session["buffers"])
            self.sessions[shapes] = session  # most recently used last
            while len(self.sessions) > self.max_sessions:
                del self.sessions[next(iter(self.sessions))]
            return self._results(session["outputs"])

    def _copy_in(self, session, inputs) -> None:
        for buffer, value in zip(session["inputs"], inputs):
            if isinstance(value, np.ndarray):
                buffer.set(np.ascontiguousarray(value, dtype=np.float32), stream=self.stream)
            else:
                cp.copyto(buffer, value)

    def _start(self, shapes, inputs):
        """Allocate a session's buffers, run eagerly once, then capture the graph if allowed."""
        session = {"inputs": [cp.empty(s, dtype=cp.float32) for s in shapes],
                   "buffers": self.allocate(shapes[0][0], self.workspace_limit), "graph": None, "kept": []}
        self._copy_in(session, inputs)
        session["outputs"] = self.forward(self.params, *session["inputs"], buffers=session["buffers"])
        self.stream.synchronize()
        if not self.cuda_graph:
            self.status[shapes] = "eager (cuda_graph=False)"
        elif self.blockers:
            self.status[shapes] = f"eager ({'; '.join(self.blockers)})"
        else:
            try:
                graph, outputs, kept = _capture(
                    self.stream, lambda: self.forward(self.params, *session["inputs"], buffers=session["buffers"]))
            except Exception as error:  # noqa: BLE001 - capture unsupported here: eager launches
                self.status[shapes] = f"eager (capture failed: {type(error).__name__}: {error})"
                self.stream.synchronize()
            else:
                session.update(graph=graph, outputs=outputs, kept=kept)
                self.status[shapes] = "cuda graph"
        return session

    def _results(self, arrays):
        if self.outputs == "cupy":
            results = {name: array.copy() for name, array in arrays.items()}
            self.stream.synchronize()
            return results
        return {name: array.get(stream=self.stream) for name, array in arrays.items()}
