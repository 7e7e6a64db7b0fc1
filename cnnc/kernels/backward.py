"""Backward kernels, training-mode forward kernels and losses of the elementwise, normalization,
reshaping and reduction ops (the windowed ops, conv, dense and pooling, are in backward_windows.py).

The calling convention is `Grad`'s (cnnc/ir/ops.py): an op whose forward kernel is `f` has
``f_backward(dy, *saved, *params_in_role_order, **kwargs)``, returning one gradient per data
input, then one per parameter role (None for a role that has none: batch norm's running
statistics). ``saved`` is the data inputs (when the rule saves "inputs"), then the forward output
("output"), then the context the training-mode forward returned (batch_norm_train,
dropout_train); ``kwargs`` are exactly the forward kernel's keyword arguments, plus ``in_shapes``
(each data input's shape without the batch dimension) for the rules that save nothing and still
need sizes. The rule each kernel implements is written in its docstring as
``Grad(kernel, saves, train_forward, in_shapes)``.

Rules every kernel keeps:

- It never writes into ``dy`` or a saved array: one gradient may be shared by several consumers
  (add passes ``dy`` on to both of its inputs), and a saved value may be saved for another node
  too. It may return ``dy`` itself or a view of it (add, flatten, reshape, concat), so a
  gradient a kernel returns must be treated as read-only (cnnc/codegen/train.py adds the parts of
  a gradient into a new array).
- It keeps the dtype it is given. The forward kernels cast to float32; these do not, so the tests
  can check them in float64 against PyTorch's autograd (constants are Python scalars, which NumPy
  2 applies in the array's dtype).
- Like numpy_kernels.py, the module imports only ``math`` and ``numpy as np`` and defines only
  top-level functions with no module-level state: cnnc/codegen/train.py copies the functions a
  training step uses (and the helpers they call, found by name) into a self-contained module.
  Helpers start with ``_grad_`` so they cannot collide with numpy_kernels' or backward_windows'
  functions in that module.

Loss kernels are ``loss(pred, target, **options) -> (loss, dpred)``: the mean loss (PyTorch's
default reduction) as a Python float and its gradient with ``pred``'s shape and dtype.
"""

import math

import numpy as np

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _grad_channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    """Broadcast shape of a per-channel (axis 1) vector against an array of rank ``ndim``."""
    return (1, channels) + (1,) * (ndim - 2)


def _grad_channel_sum(a: np.ndarray) -> np.ndarray:
    """Sum over every axis but 1: the ``[C]`` gradient of a per-channel parameter."""
    return a.sum(axis=(0,) + tuple(range(2, a.ndim)))


def _grad_unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``g`` summed down to ``shape``, NumPy broadcasting in reverse: over the leading axes ``shape``
    lacks and over those where it has size 1 and ``g`` has not. ``g`` itself when it has that shape
    (no copy: the caller may share it)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def _grad_sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow: with e = e^(−|z|) ≤ 1, σ = 1/(1 + e) for z ≥ 0 and e/(1 + e) below
    (e^(−z) would overflow for very negative z, and 1 − σ(−z) would cancel)."""
    e = np.exp(-np.abs(z))
    s = np.where(z >= 0, 1.0, e)
    e += 1.0
    s /= e
    return s


def _grad_sigmoid_and_slope(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(σ(z), σ′(z)) from one exponential: σ as in _grad_sigmoid, and σ′ = σ(z)·σ(−z) =
    e/(1 + e)², e = e^(−|z|), on either side of 0 (no 1 − σ to cancel in the tails)."""
    e = np.exp(-np.abs(z))
    d = 1.0 + e
    s = np.where(z >= 0, 1.0, e)
    s /= d
    e /= d
    e /= d
    return s, e


def _grad_polynomial(x: np.ndarray, coefficients: tuple[float, ...]) -> np.ndarray:
    """c₀·xⁿ + c₁·xⁿ⁻¹ + … + cₙ by Horner's rule (cephes' polevl), in x's dtype."""
    p = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        p *= x
        p += c
    return p


def _grad_normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), the standard normal CDF, to the accuracy of x's dtype: a float32 fit for float32 and
    smaller (a third of the passes of the float64 one, measured), cephes' for float64."""
    if x.dtype.itemsize < 8:
        return _grad_normal_cdf_single(x)
    return _grad_normal_cdf_double(x)


def _grad_normal_cdf_single(x: np.ndarray) -> np.ndarray:
    """Φ(x) to float32 accuracy, as numpy_kernels.gelu computes it (without its float32 casts):
    ½ erfc(|x|/√2) from Numerical Recipes' Chebyshev fit erfc(z) ≈ t·exp(−z² + P(t)),
    t = 1/(1 + z/2), relative error below 1.2e-7 for every z ≥ 0; then Φ is that value for x < 0
    and 1 minus it for x ≥ 0, so the negative tail keeps its relative accuracy."""
    z = np.abs(x)
    z *= 0.7071067811865476
    t = z * 0.5
    t += 1.0
    np.divide(1.0, t, out=t)
    p = t * 0.17087277
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196,
              1.00002368):
        p += c
        p *= t
    p -= 1.26551223
    with np.errstate(over="ignore", under="ignore"):  # z² = ∞ far out: e^−∞ = 0, the limit
        z *= z
        p -= z
        np.exp(p, out=p)
    p *= t
    p *= 0.5  # Φ(−|x|)
    return np.where(x < 0, p, 1.0 - p)


def _grad_normal_cdf_double(x: np.ndarray) -> np.ndarray:
    """Φ(x) to float64 accuracy (relative error about 1e-16; 1e-13 in the far tail, where
    e^(−x²/2) is as accurate as x² is).

    The float32 fit is too coarse for a gradient checked in float64 against PyTorch, and math.erf
    is scalar. So this is cephes' ndtr (Moshier, the rational approximations SciPy compiles)
    evaluated on whole arrays: with t = x/√2,
    Φ = ½ + ½·erf(t) for |t| < 1 (erf = t·T(t²)/U(t²)), else ½·erfc(|t|) or 1 − ½·erfc(|t|),
    erfc(z) = e^(−z²)·P(z)/Q(z) below z = 8 and e^(−z²)·R(z)/S(z) above. Every branch is
    computed everywhere and selected; the polynomials' arguments are clipped to their ranges so
    that an unused branch cannot overflow (z above 30 has erfc(z) = 0 in float64 anyway).
    """
    t = x * 0.7071067811865476
    z = np.abs(t)
    small = np.clip(t, -1.0, 1.0)
    s2 = small * small
    erf = small * _grad_polynomial(s2, (9.60497373987051638749e0, 9.00260197203842689217e1,
                                        2.23200534594684319226e3, 7.00332514112805075473e3,
                                        5.55923013010394962768e4))
    erf /= _grad_polynomial(s2, (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2,
                                 4.59432382970980127987e3, 2.26290000613890934246e4, 4.92673942608635921086e4))
    big = np.clip(z, 1.0, 30.0)
    near = _grad_polynomial(big, (2.46196981473530512524e-10, 5.64189564831068821977e-1,
                                  7.46321056442269912687e0, 4.86371970985681366614e1,
                                  1.96520832956077098242e2, 5.26445194995477358631e2,
                                  9.34528527171957607540e2, 1.02755188689515710272e3,
                                  5.57535335369399327526e2))
    near /= _grad_polynomial(big, (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1,
                                   3.54937778887819891062e2, 9.75708501743205489753e2,
                                   1.82390916687909736289e3, 2.24633760818710981792e3,
                                   1.65666309194161350182e3, 5.57535340817727675546e2))
    far = _grad_polynomial(big, (5.64189583547755073984e-1, 1.27536670759978104416e0,
                                 5.01905042251180477414e0, 6.16021097993053585195e0,
                                 7.40974269950448939160e0, 2.97886665372100240670e0))
    far /= _grad_polynomial(big, (1.0, 2.26052863220117276590e0, 9.39603524938001434673e0,
                                  1.20489539808096656605e1, 1.70814450747565897222e1,
                                  9.60896809063285878198e0, 3.36907645100081516050e0))
    with np.errstate(over="ignore", under="ignore"):  # z² overflows far out: e^−∞ = 0, the limit
        half_erfc = np.exp(-(z * z))
    half_erfc *= np.where(big < 8.0, near, far)
    half_erfc *= 0.5
    tail = np.where(t > 0, 1.0 - half_erfc, half_erfc)
    return np.where(z < 1.0, 0.5 + 0.5 * erf, tail)


# ---------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------


def relu_backward(dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
    """Grad("relu_backward", saves=("output",)): dy where y > 0, which is exactly where x > 0;
    at x = 0 the gradient is 0, as PyTorch's."""
    return (dy * (y > 0),)


def leaky_relu_backward(dy: np.ndarray, x: np.ndarray, *, slope: float) -> tuple[np.ndarray]:
    """Grad("leaky_relu_backward", saves=("inputs",)): dy where x > 0, else slope·dy (PyTorch's
    choice at 0). It saves the input: with a negative slope the output's sign no longer tells
    which side of 0 x was."""
    return (np.where(x > 0, dy, dy * slope),)


def relu6_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("relu6_backward", saves=("inputs",)), or saves=("output",): dy strictly inside (0, 6),
    0 at and beyond the bounds (PyTorch computes relu6 as hardtanh, whose gradient is 0 at min and
    max). The test 0 < v < 6 holds for the output exactly where it holds for the input, so either
    may be passed."""
    return (dy * ((x > 0) & (x < 6)),)


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
    """Grad("sigmoid_backward", saves=("output",)): dy·y·(1 − y)."""
    dx = dy * y
    dx *= 1.0 - y
    return (dx,)


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
    """Grad("tanh_backward", saves=("output",)): dy·(1 − y²)."""
    dx = np.square(y)
    np.subtract(1.0, dx, out=dx)
    dx *= dy
    return (dx,)


def hardsigmoid_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("hardsigmoid_backward", saves=("inputs",)): dy/6 strictly between −3 and 3, 0 at ±3
    and beyond, as PyTorch. (The output would do as well, 0 < y < 1, but y = (x + 3)/6 can round
    to 1 a hair below x = 3; the input costs the same to keep.)"""
    dx = dy * ((x > -3.0) & (x < 3.0))
    dx *= 1.0 / 6.0
    return (dx,)


def hardswish_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("hardswish_backward", saves=("inputs",)): PyTorch's piecewise derivative, 0 up to −3,
    x/3 + ½ strictly between −3 and 3, 1 from 3 on (at the kinks, the outer pieces' values)."""
    slope = x / 3.0
    slope += 0.5
    slope = np.where(x <= -3.0, 0.0, np.where(x < 3.0, slope, 1.0))
    slope *= dy
    return (slope,)


def silu_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("silu_backward", saves=("inputs",)): dy·(σ(x) + x·σ′(x)), which is PyTorch's
    dy·σ·(1 + x·(1 − σ)) with σ′ = σ(x)·σ(−x) taken without cancellation."""
    s, dx = _grad_sigmoid_and_slope(x)
    dx *= x
    dx += s
    dx *= dy
    return (dx,)


def gelu_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("gelu_backward", saves=("inputs",)): dy·(Φ(x) + x·φ(x)), φ(x) = e^(−x²/2)/√(2π), the
    exact (erf) GELU's derivative."""
    with np.errstate(over="ignore", under="ignore"):  # x² = ∞ far out: φ = 0, x·φ → 0
        pdf = np.square(x)
        pdf *= -0.5
        np.exp(pdf, out=pdf)
    pdf *= 0.3989422804014327
    pdf *= x
    pdf += _grad_normal_cdf(x)
    pdf *= dy
    return (pdf,)


def gelu_tanh_backward(dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """Grad("gelu_tanh_backward", saves=("inputs",)): the derivative of ½x(1 + tanh u),
    u = k(x + a x³), k = √(2/π), a = 0.044715.

    With s = σ(2u) = ½(1 + tanh u), y = x·s and dy/dx = s + x·2σ′(2u)·k(1 + 3a x²), σ′ = s(1 − s)
    taken without subtraction, so the negative tail keeps its relative accuracy. x is clipped to
    ±50 first: beyond it s is exactly 0 or 1 in every float format, and x³ can no longer
    overflow into ∞·0.
    """
    xc = np.clip(x, -50.0, 50.0)
    x2 = np.square(xc)
    two_u = x2 * 0.044715
    two_u += 1.0
    two_u *= xc
    two_u *= 2.0 * 0.7978845608028654
    s, dx = _grad_sigmoid_and_slope(two_u)
    x2 *= 3.0 * 0.044715
    x2 += 1.0
    dx *= x2
    dx *= xc
    dx *= 2.0 * 0.7978845608028654
    dx += s
    dx *= dy
    return (dx,)


def clip_backward(dy: np.ndarray, x: np.ndarray, *, min: float, max: float) -> tuple[np.ndarray]:  # noqa: A002
    """Grad("clip_backward", saves=("inputs",)): dy where min ≤ x ≤ max (both bounds included, as
    torch.clamp); the output cannot tell a clipped value from one at the bound, hence the input."""
    return (dy * ((x >= min) & (x <= max)),)


def prelu_backward(dy: np.ndarray, x: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad("prelu_backward", saves=("inputs",)): dx = dy where x > 0, else slope[c]·dy; dslope[c]
    = Σ dy·x over the batch and positions where x ≤ 0 (PyTorch's split at 0)."""
    s = slope.reshape(_grad_channel_shape(x.ndim, x.shape[1]))
    positive = x > 0
    dx = np.where(positive, dy, dy * s)
    dslope = _grad_channel_sum(np.where(positive, 0.0, dy * x))
    return dx, dslope


def softmax_backward(dy: np.ndarray, y: np.ndarray, *, axis: int) -> tuple[np.ndarray]:
    """Grad("softmax_backward", saves=("output",)): y·(dy − Σ_axis dy·y)."""
    dx = dy * y
    total = dx.sum(axis=axis, keepdims=True)
    dx -= y * total
    return (dx,)


# ---------------------------------------------------------------------------------------
# normalization and per-channel scales
# ---------------------------------------------------------------------------------------


def _grad_normalized_backward(g: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, axis) -> np.ndarray:
    """The gradient through x̂ = (x − mean)·rstd, the statistics taken over ``axis``:
    rstd·(g − mean(g) − x̂·mean(g·x̂)), g the gradient with respect to x̂."""
    dx = g - g.mean(axis=axis, keepdims=True)
    dx -= xhat * np.mean(g * xhat, axis=axis, keepdims=True)
    dx *= rstd
    return dx


def _grad_normalize(x: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x − mean, mean, biased variance) over ``axis``, the statistics with kept dimensions; the
    caller scales the first by rstd = 1/√(var + eps) into x̂."""
    mean = x.mean(axis=axis, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=axis, keepdims=True)
    return centered, mean, var


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                        eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad("layer_norm_backward", saves=("inputs",)): the statistics over the channels (axis 1)
    at each position are recomputed from x (cheaper to keep than x̂ and rstd, and the output
    cannot give x̂ back where γ = 0)."""
    xhat, _, var = _grad_normalize(x, 1)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat *= rstd
    g = dy * gamma.reshape(_grad_channel_shape(x.ndim, x.shape[1]))
    dx = _grad_normalized_backward(g, xhat, rstd, 1)
    xhat *= dy
    return dx, _grad_channel_sum(xhat), _grad_channel_sum(dy)


def group_norm_backward(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, groups: int,
                        eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad("group_norm_backward", saves=("inputs",)): the statistics of each image's group of
    C/groups channels and all positions, recomputed from x (instance norm: groups = C)."""
    n = x.shape[0]
    xhat, _, var = _grad_normalize(x.reshape(n, groups, -1), 2)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat *= rstd
    g = (dy * gamma.reshape(_grad_channel_shape(x.ndim, x.shape[1]))).reshape(n, groups, -1)
    dx = _grad_normalized_backward(g, xhat, rstd, 2).reshape(x.shape)
    dxhat = xhat.reshape(x.shape)
    dxhat *= dy
    return dx, _grad_channel_sum(dxhat), _grad_channel_sum(dy)


def batch_norm_train(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                     eps: float, momentum: float = 0.1) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Batch norm in training mode: normalize with the batch's statistics over every axis but 1
    ((N, H, W), or N for [N, C]), then γ·x̂ + β; returns (y, (x̂, rstd)), the context
    batch_norm_backward reads.

    The running statistics ``mean`` and ``var`` are updated in place, as PyTorch's:
    running = (1 − momentum)·running + momentum·batch, with the unbiased batch variance
    (·m/(m − 1), m values per channel) for ``var``, while the normalization uses the biased one.
    A channel with a single value has no variance to estimate: refused, as PyTorch refuses it.
    """
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    if count < 2:
        raise ValueError(f"batch_norm_train: expected more than 1 value per channel, got input shape {x.shape}")
    xhat, batch_mean, batch_var = _grad_normalize(x, axes)
    rstd = 1.0 / np.sqrt(batch_var + eps)
    xhat *= rstd
    shape = _grad_channel_shape(x.ndim, x.shape[1])
    y = xhat * gamma.reshape(shape)
    y += beta.reshape(shape)
    mean *= 1.0 - momentum
    mean += momentum * batch_mean.reshape(-1)
    var *= 1.0 - momentum
    var += (momentum * count / (count - 1)) * batch_var.reshape(-1)
    return y, (xhat, rstd)


def batch_norm_backward(dy: np.ndarray, context: tuple[np.ndarray, np.ndarray], gamma: np.ndarray,
                        beta: np.ndarray, mean: np.ndarray, var: np.ndarray, *,
                        eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, None, None]:
    """Grad("batch_norm_backward", saves=(), train_forward="batch_norm_train"): through the batch
    statistics, dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)) over (N, H, W); dγ = Σ dy·x̂,
    dβ = Σ dy; the running statistics get no gradient (None, None). ``eps`` is already in the
    context's rstd."""
    xhat, rstd = context
    axes = (0,) + tuple(range(2, dy.ndim))
    count = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=axes, keepdims=True)
    dgamma = (dy * xhat).sum(axis=axes, keepdims=True)
    dx = xhat * (dgamma / count)
    np.subtract(dy, dx, out=dx)
    dx -= dbeta / count
    dx *= gamma.reshape(_grad_channel_shape(dy.ndim, dy.shape[1])) * rstd
    return dx, dgamma.reshape(-1), dbeta.reshape(-1), None, None


def layer_scale_backward(dy: np.ndarray, x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad("layer_scale_backward", saves=("inputs",)): dx = dy·scale[c], dscale[c] = Σ dy·x."""
    return dy * scale.reshape(_grad_channel_shape(dy.ndim, dy.shape[1])), _grad_channel_sum(dy * x)


def channel_affine_backward(dy: np.ndarray, x: np.ndarray, scale: np.ndarray,
                            shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad("channel_affine_backward", saves=("inputs",)): dx = dy·scale[c], dscale[c] = Σ dy·x,
    dshift[c] = Σ dy."""
    dx = dy * scale.reshape(_grad_channel_shape(dy.ndim, dy.shape[1]))
    return dx, _grad_channel_sum(dy * x), _grad_channel_sum(dy)


# ---------------------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------------------


def dropout_train(x: np.ndarray, *, rate: float, rng: np.random.Generator,
                  mode: str = "element") -> tuple[np.ndarray, tuple[np.ndarray, float] | None]:
    """Inverted dropout: each value is kept with probability 1 − rate and scaled by 1/(1 − rate),
    so the expectation is x's. Returns (y, (mask, scale)): the keep-mask as a bool array (1 byte
    per value, the least the backward can read) and the scale 1/(1 − rate), which the context
    carries because dropout's record passes its backward no kwargs (it has no forward kernel).
    At rate 0 it returns (x, None): nothing to drop, and dropout's output is a view of its input
    at inference too. The mask comes from ``rng`` (float32 draws: half the temporary of float64
    ones), so an identically seeded generator gives the same mask again."""
    if rate <= 0.0:
        return x, None
    # mode "row" (stochastic depth): one draw per example, its whole tensor kept or dropped
    shape = x.shape if mode == "element" else (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = rng.random(shape, dtype=np.float32) >= rate
    scale = 1.0 / (1.0 - rate) if rate < 1.0 else 0.0
    y = x * scale
    y *= keep
    return y, (keep, scale)


def dropout_backward(dy: np.ndarray, context: tuple[np.ndarray, float] | None, *,
                     rate: float | None = None) -> tuple[np.ndarray]:
    """Grad("dropout_backward", saves=(), train_forward="dropout_train"): dy·mask·scale with the
    forward's own mask and scale (its context; ``rate``, when given, is already in the scale); dy
    itself when the forward dropped nothing."""
    if context is None:
        return (dy,)
    keep, scale = context
    dx = dy * scale
    dx *= keep
    return (dx,)


# ---------------------------------------------------------------------------------------
# elementwise arithmetic
# ---------------------------------------------------------------------------------------


def add_backward(dy: np.ndarray, *, in_shapes: list) -> tuple[np.ndarray, np.ndarray]:
    """Grad("add_backward", saves=(), in_shapes=True): dy summed back over the axes each input
    was broadcast along (dy itself, shared, for an input of the output's shape). Every value of
    the IR has the batch dimension of the network input, so an input's shape is
    (N, *in_shapes[i])."""
    n = dy.shape[0]
    return _grad_unbroadcast(dy, (n, *in_shapes[0])), _grad_unbroadcast(dy, (n, *in_shapes[1]))


def sub_backward(dy: np.ndarray, *, in_shapes: list) -> tuple[np.ndarray, np.ndarray]:
    """Grad("sub_backward", saves=(), in_shapes=True): (dy, −dy), each summed back to its input's
    shape."""
    n = dy.shape[0]
    return _grad_unbroadcast(dy, (n, *in_shapes[0])), np.negative(_grad_unbroadcast(dy, (n, *in_shapes[1])))


def mul_backward(dy: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad("mul_backward", saves=("inputs",)): (dy·b, dy·a), each summed back to its input's shape
    (squeeze-excitation's [N, C, H, W] · [N, C, 1, 1] sums the gate's gradient over H, W)."""
    return _grad_unbroadcast(dy * b, a.shape), _grad_unbroadcast(dy * a, b.shape)


def div_backward(dy: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad("div_backward", saves=("inputs",)): (dy/b, −dy·a/b²), each summed back to its input's
    shape; computed as q = dy/b, then −q·a/b (no b² to overflow)."""
    q = dy / b
    db = q * a
    db /= b
    np.negative(db, out=db)
    return _grad_unbroadcast(q, a.shape), _grad_unbroadcast(db, b.shape)


def scalar_affine_backward(dy: np.ndarray, *, scale: float, shift: float) -> tuple[np.ndarray]:
    """Grad("scalar_affine_backward", saves=()): dy·scale (dy itself for scale 1: a `x + 3`)."""
    return (dy if scale == 1 else dy * scale,)


def matmul_backward(dy: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad("matmul_backward", saves=("inputs",)): (dy·bᵀ, aᵀ·dy) over the last two axes, each
    summed back over the leading axes its input was broadcast along."""
    da = np.matmul(dy, np.swapaxes(b, -1, -2))
    db = np.matmul(np.swapaxes(a, -1, -2), dy)
    return _grad_unbroadcast(da, a.shape), _grad_unbroadcast(db, b.shape)


def reduce_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray | None = None, *, mode: str, axes,
                    keepdims: bool) -> tuple[np.ndarray]:
    """Grad("reduce_backward", saves=("inputs", "output")): the sum spreads dy over the reduced
    axes, the mean spreads dy/count, the maximum gives dy to the maxima, split evenly between ties
    (as torch.amax). One rule serves the three modes: max needs x and its maximum y (a reduced
    array, cheap to keep; recomputed from x when not given), mean and sum read only x's shape.
    The result is a fresh array, not a broadcast view of dy."""
    reduced = tuple(sorted({a % x.ndim for a in axes}))
    g = dy if keepdims else np.expand_dims(dy, reduced)
    if mode == "sum" or mode == "mean":
        dx = np.empty(x.shape, dtype=dy.dtype)
        count = math.prod(x.shape[a] for a in reduced) if mode == "mean" else 1
        np.multiply(g, 1.0 / count, out=dx)
        return (dx,)
    if mode != "max":
        raise ValueError(f"reduce_backward: unknown mode {mode!r}")
    if y is None:
        top = np.max(x, axis=reduced, keepdims=True)
    else:
        top = y if keepdims else np.expand_dims(y, reduced)
    hit = x == top
    ties = hit.sum(axis=reduced, keepdims=True).astype(dy.dtype)
    return (hit * (g / ties),)


# ---------------------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------------------


def flatten_backward(dy: np.ndarray, *, in_shapes: list) -> tuple[np.ndarray]:
    """Grad("flatten_backward", saves=(), in_shapes=True): dy reshaped to the input's shape (a view
    when dy is contiguous)."""
    return (dy.reshape((dy.shape[0], *in_shapes[0])),)


def reshape_backward(dy: np.ndarray, *, shape, in_shapes: list) -> tuple[np.ndarray]:
    """Grad("reshape_backward", saves=(), in_shapes=True): dy reshaped back to the input's shape."""
    return (dy.reshape((dy.shape[0], *in_shapes[0])),)


def concat_backward(dy: np.ndarray, *, axis: int, in_shapes: list) -> tuple[np.ndarray, ...]:
    """Grad("concat_backward", saves=(), in_shapes=True): dy split along ``axis`` at the inputs'
    sizes (in_shapes, which have no batch axis: the sizes are at axis − 1). The parts are views of
    dy, not copies."""
    ax = axis % dy.ndim
    bounds = []
    end = 0
    for shape in in_shapes[:-1]:
        end += shape[ax - 1]
        bounds.append(end)
    return tuple(np.split(dy, bounds, axis=ax))


def channel_shuffle_backward(dy: np.ndarray, *, groups: int) -> tuple[np.ndarray]:
    """Grad("channel_shuffle_backward", saves=()): the inverse permutation, channel k·groups + g
    back to g·(C/groups) + k (a shuffle with C/groups groups)."""
    n, c, h, w = dy.shape
    dx = np.empty(dy.shape, dtype=dy.dtype)  # C order, so that the reshape below is a view
    np.copyto(dx.reshape(n, groups, c // groups, h, w),
              dy.reshape(n, c // groups, groups, h, w).transpose(0, 2, 1, 3, 4))
    return (dx,)


def pixel_shuffle_backward(dy: np.ndarray, *, factor: int) -> tuple[np.ndarray]:
    """Grad("pixel_shuffle_backward", saves=()): space back to depth, dx[n, c·r² + i·r + j, h, w]
    = dy[n, c, h·r + i, w·r + j]."""
    n, c, hr, wr = dy.shape
    r = factor
    h, w = hr // r, wr // r
    dx = np.empty((n, c * r * r, h, w), dtype=dy.dtype)
    np.copyto(dx.reshape(n, c, r, r, h, w), dy.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4))
    return (dx,)


def permute_backward(dy: np.ndarray, *, order) -> tuple[np.ndarray]:
    """Grad("permute_backward", saves=()): dy transposed by the inverse order, as a fresh
    C-contiguous array (like the forward's result)."""
    inverse = [0] * len(order)
    for i, axis in enumerate(order):
        inverse[axis] = i
    return (np.ascontiguousarray(dy.transpose(inverse)),)


# ---------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------


def _grad_like(target, pred: np.ndarray, what: str) -> np.ndarray:
    """``target`` as an array of ``pred``'s shape: reshaped when it holds as many values ([N]
    targets of an [N, 1] output), else a ValueError."""
    t = np.asarray(target)
    if t.shape != pred.shape:
        if t.size != pred.size:
            raise ValueError(f"{what}: the target's shape {t.shape} does not match the prediction's {pred.shape}")
        t = t.reshape(pred.shape)
    return t


def cross_entropy(logits: np.ndarray, labels, *, label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy with integer class labels, mean over the samples, like
    torch.nn.functional.cross_entropy (its label_smoothing too: the target is
    (1 − ε)·onehot + ε/C). Returns (loss, dlogits), dlogits = (softmax − target)/M.

    ``logits`` is [N, C] with labels [N]; [N, C, 1, 1] with labels [N] (a convolutional head);
    or [N, C, H, W] with labels [N, H, W] (segmentation: M = N·H·W samples). Numerically stable:
    everything goes through s = z − max(z), log p = s − log Σ e^s, so logits of ±1e4 give
    finite results; log p itself is never stored.
    """
    n, c = logits.shape[0], logits.shape[1]
    labels = np.asarray(labels)
    per_image = logits.ndim > 2 and labels.shape == (n,)
    if per_image:
        if math.prod(logits.shape[2:]) != 1:
            raise ValueError(f"cross_entropy: one label per image needs [N, C] or [N, C, 1, 1] logits, "
                             f"got {logits.shape}")
        z = logits.reshape(n, c)
    elif labels.shape == (n,) + logits.shape[2:]:
        z = np.moveaxis(logits, 1, -1).reshape(-1, c)
    else:
        raise ValueError(f"cross_entropy: labels of shape {labels.shape} do not fit logits {logits.shape} "
                         f"(expected {(n,) + logits.shape[2:]})")
    flat = labels.reshape(-1)
    index = flat.astype(np.int64)
    if flat.dtype.kind not in "iub" and not np.array_equal(index, flat):
        raise ValueError("cross_entropy: labels must be integer class indices")
    if index.size and (index.min() < 0 or index.max() >= c):
        raise ValueError(f"cross_entropy: labels must lie in [0, {c}), got {index.min()} … {index.max()}")
    m = z.shape[0]
    rows = np.arange(m)
    s = z - z.max(axis=1, keepdims=True)
    e = np.exp(s)
    total = e.sum(axis=1, keepdims=True)
    log_total = np.log(total)
    nll = log_total[:, 0] - s[rows, index]
    loss = (1.0 - label_smoothing) * float(np.mean(nll, dtype=np.float64))
    if label_smoothing:
        smooth = c * log_total[:, 0] - s.sum(axis=1)  # −Σ_c log p_c
        loss += label_smoothing * float(np.mean(smooth, dtype=np.float64)) / c
    e /= total
    e[rows, index] -= 1.0 - label_smoothing
    if label_smoothing:
        e -= label_smoothing / c
    e *= 1.0 / m
    if logits.ndim == 2 or per_image:
        return loss, e.reshape(logits.shape)
    spatial = logits.shape[2:]
    return loss, np.ascontiguousarray(np.moveaxis(e.reshape((n, *spatial, c)), -1, 1))


def binary_cross_entropy(logits: np.ndarray, targets) -> tuple[float, np.ndarray]:
    """Binary cross-entropy on logits, mean over every value, like BCEWithLogitsLoss: per value
    max(z, 0) − z·t + log(1 + e^(−|z|)), which neither overflows nor loses the tails for large
    |z|; the gradient is (σ(z) − t)/M. Targets are probabilities (0/1 labels) of the logits'
    shape."""
    t = _grad_like(targets, logits, "binary_cross_entropy").astype(logits.dtype, copy=False)
    per = np.maximum(logits, 0.0)
    per -= logits * t
    per += np.log1p(np.exp(-np.abs(logits)))
    loss = float(np.mean(per, dtype=np.float64))
    grad = _grad_sigmoid(logits)
    grad -= t
    grad *= 1.0 / logits.size
    return loss, grad


def mse(pred: np.ndarray, target) -> tuple[float, np.ndarray]:
    """Mean squared error, mean((pred − target)²); gradient 2(pred − target)/M."""
    d = (pred - _grad_like(target, pred, "mse")).astype(pred.dtype, copy=False)
    loss = float(np.mean(np.square(d), dtype=np.float64))
    d *= 2.0 / pred.size
    return loss, d


def l1(pred: np.ndarray, target) -> tuple[float, np.ndarray]:
    """Mean absolute error; gradient sign(pred − target)/M (0 where they are equal, as PyTorch)."""
    d = (pred - _grad_like(target, pred, "l1")).astype(pred.dtype, copy=False)
    loss = float(np.mean(np.abs(d), dtype=np.float64))
    np.sign(d, out=d)
    d *= 1.0 / pred.size
    return loss, d


def smooth_l1(pred: np.ndarray, target, *, beta: float = 1.0) -> tuple[float, np.ndarray]:
    """Huber-like smooth L1, mean over every value, as torch.nn.functional.smooth_l1_loss:
    ½d²/β where |d| < β, |d| − ½β elsewhere, d = pred − target; gradient d/β or sign(d), over M.
    β = 0 is the L1 loss (PyTorch's special case; the quadratic piece would divide by 0)."""
    if beta == 0:
        return l1(pred, target)
    d = (pred - _grad_like(target, pred, "smooth_l1")).astype(pred.dtype, copy=False)
    a = np.abs(d)
    inside = a < beta
    per = np.where(inside, (0.5 / beta) * np.square(d), a - 0.5 * beta)
    loss = float(np.mean(per, dtype=np.float64))
    grad = np.where(inside, d * (1.0 / beta), np.sign(d))
    grad *= 1.0 / pred.size
    return loss, grad
