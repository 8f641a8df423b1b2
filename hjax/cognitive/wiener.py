"""Two-boundary Wiener first-passage times (the drift diffusion model).

Hand-written because no maintained JAX implementation exists: HSSM's analytic density is
PyTensor, fddm/WienR/RWiener are R/C++, Stan's ``wiener_lpdf`` is C++. The math follows
Navarro & Fuss (2009) for the density, Blurton, Kesselmeier & Gondan (2012/2017) for
integrating the drift variability ``sv`` out in closed form, and a rejection sampler whose
envelope is the one-boundary (inverse Gaussian) first-passage time.

Parameter convention (HDDM, Navarro & Fuss, RWiener, Stan ``wiener_lpdf``), diffusion
coefficient 1:

- ``a``: boundary separation; the lower boundary is at 0, the upper at ``a``.
- ``w``: relative start point in (0, 1); the process starts at ``w * a``.
- ``v``: drift rate; positive drift moves towards the upper boundary.
- ``t0``: non-decision time, added to the first-passage time.
- ``sv``: standard deviation of the drift across trials (``v_trial ~ Normal(v, sv)``).
- ``choice``: 1 for the upper boundary, 0 for the lower one.

HSSM's ``ddm`` uses boundaries at +-``a_hssm``, so ``a = 2 * a_hssm``; HSSM's ``z`` is ``w``,
its ``t`` is ``t0`` and its response +1/-1 is ``choice`` 1/0.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from hjax.cognitive._dtype import float_dtype

__all__ = [
    "wiener_log_density",
    "wiener_log_density_with_lapse",
    "wiener_log_survival",
    "wiener_prob_upper",
    "wiener_sample",
    "wiener_sample_with_lapse",
]

# Standardised time u = t / a**2 below which the small-time series is used. With the term
# counts below, the truncation error relative to the leading term is < 1e-20 on both sides
# of the switch: small-time omits |k| >= 4, each at most 9 * exp(-2 * 4 * 3 / 0.5) ~ 1e-20
# times the k=0 term; large-time omits k >= 6, each at most 36 * exp(-35 * pi**2 / 4)
# ~ 1e-36 times the k=1 term (|sin(k x)| <= k |sin(x)|). So accuracy is set by rounding.
_U_SWITCH = 0.5
_K_SMALL = 3
_K_LARGE = 5
# Proposals are redrawn until accepted; a lane still unaccepted after this many rounds
# (probability below 1e-40 for w in [0.01, 0.99]) returns NaN rather than a biased draw.
_MAX_REJECTION_ROUNDS = 10_000


def _small_time_sum(u, w):
    """sum over |k| <= K of (w + 2k) exp(-2k(k + w) / u), from three exponentials.

    With q = exp(-2 / u), the k = j and k = -j terms are exp(-2(1 + w) / u)**j q**(j(j - 1))
    and exp(-2(1 - w) / u)**j q**(j(j - 1)): every factor is at most 1, so nothing overflows.
    """
    q = jnp.exp(-2 / u)
    plus, minus = jnp.exp(-2 * (1 + w) / u), jnp.exp(-2 * (1 - w) / u)
    total, plus_j, minus_j = w, plus, minus
    for j in range(1, _K_SMALL + 1):
        pair = (w + 2 * j) * plus_j + (w - 2 * j) * minus_j
        total = total + (pair if j == 1 else q ** (j * (j - 1)) * pair)
        plus_j, minus_j = plus_j * plus, minus_j * minus
    return total


def _multiple_sines(x, n):
    """[sin(x), sin(2x), ..., sin(nx)] from one sine and one cosine, by the recurrence
    sin(k x) = 2 cos(x) sin((k - 1) x) - sin((k - 2) x)."""
    cos_x = jnp.cos(x)
    sines = [jnp.zeros_like(x), jnp.sin(x)]
    for _ in range(n - 1):
        sines.append(2 * cos_x * sines[-1] - sines[-2])
    return sines[1:]


def _large_time_sum(u, w):
    """sum over 1 <= k <= K of k sin(k pi w) exp(-(k**2 - 1) pi**2 u / 2), from one
    exponential (g = exp(-pi**2 u / 2), raised to k**2 - 1) and `_multiple_sines`."""
    g = jnp.exp(-jnp.pi**2 * u / 2)
    sines = _multiple_sines(jnp.pi * w, _K_LARGE)
    return sum(k * sin_k * g ** (k * k - 1) for k, sin_k in enumerate(sines, start=1))


def _log_density_standard(u, w):
    """Log density of hitting the lower boundary at time u, for v=0, a=1, start w."""
    small = u < _U_SWITCH
    # Each branch gets an argument inside its own regime so the unused one stays finite
    # (and its zero cotangent cannot turn into NaN).
    u_s = jnp.where(small, u, _U_SWITCH)
    u_l = jnp.where(small, _U_SWITCH, u)
    tiny = jnp.finfo(u.dtype).tiny
    # The two sums take four exponentials, a sine and a cosine, where an `exp` per term and a
    # `sin` per large-time term took 2.4 times as long in the hierarchical DDM's gradient.

    # Small time, with exp(-w^2 / 2u) factored out: the k=0 term is w, others decay.
    log_small = (
        -0.5 * math.log(2 * math.pi)
        - 1.5 * jnp.log(u_s)
        - w**2 / (2 * u_s)
        + jnp.log(jnp.maximum(_small_time_sum(u_s, w), tiny))
    )
    # Large time, with exp(-pi^2 u / 2) factored out: the k=1 term dominates (u >= 1/2).
    log_large = (
        math.log(math.pi)
        - jnp.pi**2 * u_l / 2
        + jnp.log(jnp.maximum(_large_time_sum(u_l, w), tiny))
    )
    return jnp.where(small, log_small, log_large)


def wiener_log_density(
    rt: Float[ArrayLike, "*batch"],
    choice: Int[ArrayLike, "*batch"] | Bool[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
    t0: Float[ArrayLike, "*batch"],
    sv: Float[ArrayLike, "*batch"] = 0.0,
) -> Float[Array, "*batch"]:
    """Log density of a response at time ``rt`` on boundary ``choice`` of a Wiener process.

    Per-trial log density of the two-boundary first-passage time (parameter convention in
    the module docstring), with the across-trial drift variability ``sv`` integrated out
    analytically. All arguments broadcast against each other.

    The infinite series use a fixed number of terms (static under ``jit``): the small-time
    series (|k| <= 3) for ``(rt - t0) / a**2 < 0.5`` and the large-time series (k <= 5)
    otherwise, which bounds the truncation error below 1e-20 relative to the density's
    leading term, i.e. below float64 rounding. Everything is in log space, so densities far
    below the float range (RTs just above ``t0``, very long RTs) stay finite in float32.

    ``rt <= t0`` gives ``-inf`` with zero gradients. Parameters are not checked (``a > 0``,
    ``0 < w < 1``, ``sv >= 0`` are assumed; pass constrained values).

    Args:
        rt: response times (seconds).
        choice: 1 (or True) for the upper boundary, 0 for the lower one.
        v: drift rate.
        a: boundary separation.
        w: relative start point in (0, 1).
        t0: non-decision time.
        sv: across-trial standard deviation of the drift.

    Returns:
        The log density, broadcast shape of the arguments.

    Example:
        >>> import jax.numpy as jnp
        >>> lp = wiener_log_density(jnp.array([0.6, 1.1]), jnp.array([1, 0]),
        ...                         v=1.0, a=1.5, w=0.5, t0=0.3)
        >>> lp.round(2)
        Array([ 0.26, -2.57], dtype=float32)
    """
    dtype = float_dtype(rt, v, a, w, t0, sv)
    rt, v, a, w, t0, sv = (jnp.asarray(x, dtype) for x in (rt, v, a, w, t0, sv))
    upper = jnp.asarray(choice) == 1
    # The upper boundary is the lower one of the mirrored process (v -> -v, w -> 1 - w).
    v_b = jnp.where(upper, -v, v)
    w_b = jnp.where(upper, 1 - w, w)

    t = rt - t0
    valid = t > 0
    t = jnp.where(valid, t, 1.0)

    sv2t = sv**2 * t
    log_p = (
        -2 * jnp.log(a)
        - 0.5 * jnp.log1p(sv2t)
        + ((sv * a * w_b) ** 2 - 2 * a * v_b * w_b - v_b**2 * t) / (2 * (1 + sv2t))
        + _log_density_standard(t / a**2, w_b)
    )
    return jnp.where(valid, log_p, -jnp.inf)


def wiener_prob_upper(
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch"]:
    """Probability of absorption at the upper boundary, for a fixed drift.

    ``(1 - exp(-2 v a w)) / (1 - exp(-2 v a))``, and ``w`` at ``v = 0``; computed with
    ``expm1`` on non-positive arguments so that it neither overflows nor loses precision.

    Args:
        v: drift rate.
        a: boundary separation.
        w: relative start point in (0, 1).

    Returns:
        P(choice = 1), broadcast shape of the arguments.

    Example:
        >>> round(float(wiener_prob_upper(0.0, 2.0, 0.3)), 2)  # no drift: the start point
        0.3
        >>> round(float(wiener_prob_upper(1.0, 2.0, 0.5)), 2)
        0.88
    """
    dtype = float_dtype(v, a, w)
    v, a, w = (jnp.asarray(x, dtype) for x in (v, a, w))
    x = 2 * v * a
    zero = x == 0
    y = -jnp.abs(jnp.where(zero, 1.0, x))
    ratio = jnp.expm1(y * w) / jnp.expm1(y)
    # For x < 0, multiply numerator and denominator by exp(x) to keep exponents negative.
    p = jnp.where(x > 0, ratio, jnp.exp(y * (1 - w)) * ratio)
    return jnp.where(zero, w, p)


def _sample_inverse_gaussian(key, d, nu):
    """First-passage time to a level at distance d for unit-variance drift nu >= 0 towards it.

    Michael, Schucany & Haas (1976), with the smaller root written so that it stays exact as
    nu -> 0 (where the law becomes the Levy distribution d**2 / Z**2).
    """
    k_z, k_u = jax.random.split(key)
    y = jax.random.normal(k_z, d.shape, d.dtype) ** 2
    x1 = 2 * d**2 / (2 * d * nu + y + jnp.sqrt(4 * nu * d * y + y**2))
    keep_x1 = jax.random.uniform(k_u, d.shape, d.dtype) * (d + nu * x1) <= d
    return jnp.where(keep_x1, x1, d**2 / jnp.where(keep_x1, 1.0, nu**2 * x1))


def _sample_standard_time(key, d, nu):
    """Exact draw of the standardised (a=1) time of absorption at a boundary at distance d.

    Given the boundary, the drift only tilts the density by exp(-nu**2 u / 2), which the
    one-boundary inverse Gaussian envelope shares, so the acceptance ratio is the zero-drift
    two-boundary density over its one-boundary image term (<= 1: the second boundary only
    removes paths). Acceptance rate is P(boundary) / P(one-boundary hit) >= 1 - d at v=0.
    """

    def log_one_boundary(u):
        return jnp.log(d) - 0.5 * jnp.log(2 * jnp.pi * u**3) - d**2 / (2 * u)

    def body(state):
        i, u, done = state
        k_prop, k_acc = jax.random.split(jax.random.fold_in(key, i))
        u_prop = _sample_inverse_gaussian(k_prop, d, nu)
        log_ratio = _log_density_standard(u_prop, d) - log_one_boundary(u_prop)
        accept = jnp.log(jax.random.uniform(k_acc, d.shape, d.dtype)) < log_ratio
        u = jnp.where(done, u, jnp.where(accept, u_prop, u))
        return i + 1, u, done | accept

    def cond(state):
        i, _, done = state
        return (i < _MAX_REJECTION_ROUNDS) & ~jnp.all(done)

    init = (jnp.asarray(0), jnp.full(d.shape, jnp.nan, d.dtype), jnp.zeros(d.shape, bool))
    return jax.lax.while_loop(cond, body, init)[1]


SURVIVAL_SWITCH = 0.1  # u = t / a^2 below which the small-time (image) series is used
SURVIVAL_TERMS = 10  # large-time terms for u >= 0.1: omitted ones below exp(-11^2 pi^2 u / 2)
SURVIVAL_NODES = 24  # Gauss-Hermite nodes over the drift when sv > 0


def _log_survival_large_time(t, v, a, w):
    """log S(t) for u = t / a^2 >= SURVIVAL_SWITCH: both boundaries' large-time density series
    (Navarro & Fuss 2009) integrated from t to infinity term by term,

    S(t) = (2 pi / a^2) e^{-v^2 t / 2} sum_k k e^{-k^2 pi^2 t / (2 a^2)} / (v^2 + k^2 pi^2 / a^2)
           * [e^{-v a w} sin(k pi w) + e^{v a (1 - w)} sin(k pi (1 - w))],

    in log space with the larger of the two exponentials factored out. As in the density's
    `_large_time_sum`, the terms take one exponential and `_multiple_sines`:
    e^{-k^2 pi^2 t / (2 a^2)} is a power of the k = 1 factor, and
    sin(k pi (1 - w)) = (-1)^{k+1} sin(k pi w) (half the time of one exp and two sines a term)."""
    lower, upper = -v * a * w, v * a * (1 - w)
    top = jnp.maximum(lower, upper)
    lower_factor, upper_factor = jnp.exp(lower - top), jnp.exp(upper - top)
    decay = jnp.exp(-((math.pi / a) ** 2) * t / 2)
    sines = _multiple_sines(math.pi * w, SURVIVAL_TERMS)
    total = sum(k * decay ** (k * k) / (v**2 + (k * math.pi / a) ** 2) * sin_k
                * (lower_factor + (-1) ** (k + 1) * upper_factor)
                for k, sin_k in enumerate(sines, start=1))
    tiny = jnp.finfo(t.dtype).tiny
    return (jnp.log(2 * math.pi) - 2 * jnp.log(a) - v**2 * t / 2 + top
            + jnp.log(jnp.maximum(total, tiny)))


def _log_cdf_lower_small_time(t, v, a, w):
    """log P(lower boundary hit by t), the small-time (image) series integrated term by term
    (Blurton, Kesselmeier & Gondan 2012): the zero-drift density's image at distance r, tilted
    by the drift, integrates to the inverse Gaussian CDF

    G(r) = e^{-r|v|} Phi((|v| t - r) / sqrt t) + e^{r|v|} Phi(-(|v| t + r) / sqrt t),

    and F(t) = e^{-v a w} [G(a w) + G(a (w + 2)) - G(a (2 - w)) - ...]. The images kept are
    those three: the next are 3 a and more away, below exp(-9 / 2u) = exp(-45) at u = 0.1."""
    speed, root = jnp.abs(v), jnp.sqrt(t)
    ndtr = jax.scipy.special.log_ndtr

    def log_g(r):
        return jnp.logaddexp(-r * speed + ndtr((speed * t - r) / root),
                             r * speed + ndtr(-(speed * t + r) / root))

    z = a * w
    series = jax.scipy.special.logsumexp(
        jnp.stack([log_g(z), log_g(z + 2 * a), log_g(2 * a - z)]),
        b=jnp.array([1.0, 1.0, -1.0], t.dtype).reshape((3,) + (1,) * t.ndim), axis=0)
    return -v * z + series


def _log_survival_fixed_drift(t, v, a, w):
    """log P(no boundary hit by decision time t > 0) for a fixed drift: 1 minus both
    boundaries' small-time CDFs while u = t / a^2 is small (there the survival is near 1 and
    the large-time series needs many terms), the large-time series after."""
    small = t < SURVIVAL_SWITCH * a**2
    t_small = jnp.where(small, t, SURVIVAL_SWITCH * a**2)
    t_large = jnp.where(small, SURVIVAL_SWITCH * a**2, t)
    hit = jnp.logaddexp(_log_cdf_lower_small_time(t_small, v, a, w),
                        _log_cdf_lower_small_time(t_small, -v, a, 1 - w))
    # Early survival below float precision (an extreme drift) is floored there, and the
    # branch not taken is kept away from log(0) so that its gradient stays finite.
    hit = jnp.where(small, jnp.minimum(hit, math.log1p(-float(jnp.finfo(t.dtype).eps))), -1.0)
    log_small = jnp.log1p(-jnp.exp(hit))
    log_s = jnp.where(small, log_small, _log_survival_large_time(t_large, v, a, w))
    return jnp.minimum(log_s, 0.0)


def wiener_log_survival(
    rt: Float[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
    t0: Float[ArrayLike, "*batch"],
    sv: Float[ArrayLike, "*batch"] = 0.0,
) -> Float[Array, "*batch"]:
    """log P(no response by ``rt``): neither boundary reached by decision time ``rt - t0``.

    The probability a trial with a response deadline ``rt`` ends without one. Written as the
    integral from ``rt - t0`` to infinity of both boundaries' large-time density series, taken
    term by term, or for early times (``(rt - t0) / a**2 < 0.1``) as 1 minus the boundaries'
    small-time CDF series; both truncated below float64 rounding. With ``sv > 0`` the drift is
    integrated out by Gauss-Hermite quadrature. ``rt <= t0`` gives 0 (no decision can have ended).

    Example:
        >>> round(float(wiener_log_survival(1.0, v=1.0, a=1.5, w=0.5, t0=0.3)), 3)
        -1.591
    """
    dtype = float_dtype(rt, v, a, w, t0, sv)
    # A drift sd known to be zero when traced (the default) needs one node, not a quadrature.
    fixed_drift = isinstance(sv, (int, float)) and sv == 0
    rt, v, a, w, t0, sv = jnp.broadcast_arrays(*(jnp.asarray(x, dtype)
                                                 for x in (rt, v, a, w, t0, sv)))
    t = rt - t0
    started = t > 0
    t = jnp.where(started, t, 1.0)
    if fixed_drift:
        return jnp.where(started, _log_survival_fixed_drift(t, v, a, w), 0.0)
    nodes, weights = np.polynomial.hermite_e.hermegauss(SURVIVAL_NODES)
    nodes = jnp.asarray(nodes, dtype)
    log_weights = jnp.asarray(np.log(weights / weights.sum()), dtype)
    drifts = v[..., None] + sv[..., None] * nodes
    log_s = jax.vmap(_log_survival_fixed_drift, in_axes=(None, -1, None, None), out_axes=-1)(
        t, drifts, a, w)
    log_s = jax.scipy.special.logsumexp(log_s + log_weights, axis=-1)
    return jnp.where(started, jnp.minimum(log_s, 0.0), 0.0)


def wiener_sample(
    key: PRNGKeyArray,
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
    t0: Float[ArrayLike, "*batch"],
    sv: Float[ArrayLike, "*batch"] = 0.0,
    shape: tuple[int, ...] = (),
) -> tuple[Float[Array, "*shape"], Int[Array, "*shape"]]:
    """Exact draws of (rt, choice) from the Wiener model of :func:`wiener_log_density`.

    Per trial: the drift is drawn from Normal(v, sv); the boundary from its exact
    probability (:func:`wiener_prob_upper`); the time given the boundary by rejection
    sampling from an inverse Gaussian envelope (no time discretisation). The result has the
    broadcast shape of ``shape`` and the parameters.

    Args:
        key: PRNG key.
        v: drift rate.
        a: boundary separation.
        w: relative start point in (0, 1).
        t0: non-decision time.
        sv: across-trial standard deviation of the drift.
        shape: sample shape, broadcast with the parameters' shapes.

    Returns:
        ``(rt, choice)`` with choice 1 for the upper boundary and 0 for the lower one.

    Example:
        >>> import jax
        >>> rt, choice = wiener_sample(jax.random.key(0), 1.0, 1.5, 0.5, 0.3, shape=(1000,))
        >>> rt.shape, choice.shape
        ((1000,), (1000,))
        >>> round(float(choice.mean()), 1)  # about wiener_prob_upper(1.0, 1.5, 0.5) = 0.82
        0.8
    """
    dtype = float_dtype(v, a, w, t0, sv)
    v, a, w, t0, sv = (jnp.asarray(x, dtype) for x in (v, a, w, t0, sv))
    shape = jnp.broadcast_shapes(shape, *(x.shape for x in (v, a, w, t0, sv)))
    v, a, w, t0, sv = (jnp.broadcast_to(x, shape) for x in (v, a, w, t0, sv))
    k_drift, k_choice, k_time = jax.random.split(key, 3)

    v_trial = v + sv * jax.random.normal(k_drift, shape, dtype)
    upper = jax.random.uniform(k_choice, shape, dtype) < wiener_prob_upper(v_trial, a, w)
    d = jnp.where(upper, 1 - w, w)
    u = _sample_standard_time(k_time, d, jnp.abs(v_trial) * a)
    return t0 + a**2 * u, upper.astype(jnp.int32)


def wiener_log_density_with_lapse(
    rt: Float[ArrayLike, "*batch"],
    choice: Int[ArrayLike, "*batch"] | Bool[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
    t0: Float[ArrayLike, "*batch"],
    sv: Float[ArrayLike, "*batch"] = 0.0,
    *,
    p_lapse: Float[ArrayLike, "*batch"],
    rt_max: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch"]:
    """Log density of the Wiener model mixed with a uniform lapse (contaminant) process.

    With probability ``p_lapse`` a trial is a lapse: its RT is uniform on ``[0, rt_max]``
    and its choice a fair coin flip, independently of the Wiener parameters. So

    ``p(rt, c) = (1 - p_lapse) * wiener(rt, c) + p_lapse * 1[0 <= rt <= rt_max] / (2 rt_max)``.

    Lapses make RTs below ``t0`` possible (finite density), which keeps a few fast guesses
    from dragging ``t0`` down. Gradients are finite for ``0 < p_lapse < 1``; at
    ``p_lapse = 0`` the value equals :func:`wiener_log_density`.

    Args:
        rt: response times.
        choice: 1 (or True) for the upper boundary, 0 for the lower one.
        v: drift rate.
        a: boundary separation.
        w: relative start point in (0, 1).
        t0: non-decision time.
        sv: across-trial standard deviation of the drift.
        p_lapse: lapse probability in [0, 1).
        rt_max: upper end of the lapse RT range (> 0).

    Returns:
        The mixture log density, broadcast shape of the arguments.

    Example:
        >>> lp = wiener_log_density_with_lapse(0.1, 1, 1.0, 1.5, 0.5, 0.3,
        ...                                    p_lapse=0.05, rt_max=3.0)
        >>> round(float(lp), 2)  # rt < t0: a lapse, log(0.05 / (2 * 3.0))
        -4.79
    """
    dtype = float_dtype(rt, v, a, w, t0, sv, p_lapse, rt_max)
    rt, p_lapse, rt_max = (jnp.asarray(x, dtype) for x in (rt, p_lapse, rt_max))
    log_wiener = jnp.log1p(-p_lapse) + wiener_log_density(rt, choice, v, a, w, t0, sv)
    in_range = (rt >= 0) & (rt <= rt_max)
    log_lapse = jnp.where(
        in_range, jnp.log(p_lapse) - jnp.log(2 * rt_max), -jnp.inf
    )
    # A logaddexp whose gradient stays finite when both parts are -inf.
    m = jnp.maximum(log_wiener, log_lapse)
    finite = jnp.isfinite(m)
    m_safe = jnp.where(finite, m, 0.0)
    total = jnp.exp(log_wiener - m_safe) + jnp.exp(log_lapse - m_safe)
    return jnp.where(finite, m_safe + jnp.log(jnp.where(finite, total, 1.0)), m)


def wiener_sample_with_lapse(
    key: PRNGKeyArray,
    v: Float[ArrayLike, "*batch"],
    a: Float[ArrayLike, "*batch"],
    w: Float[ArrayLike, "*batch"],
    t0: Float[ArrayLike, "*batch"],
    sv: Float[ArrayLike, "*batch"] = 0.0,
    *,
    p_lapse: Float[ArrayLike, "*batch"],
    rt_max: Float[ArrayLike, "*batch"],
    shape: tuple[int, ...] = (),
) -> tuple[Float[Array, "*shape"], Int[Array, "*shape"]]:
    """Exact draws from the lapse mixture of :func:`wiener_log_density_with_lapse`.

    Args:
        key: PRNG key.
        v: drift rate.
        a: boundary separation.
        w: relative start point in (0, 1).
        t0: non-decision time.
        sv: across-trial standard deviation of the drift.
        p_lapse: lapse probability in [0, 1).
        rt_max: upper end of the lapse RT range.
        shape: sample shape, broadcast with the parameters' shapes.

    Returns:
        ``(rt, choice)`` as in :func:`wiener_sample`.

    Example:
        >>> import jax
        >>> rt, choice = wiener_sample_with_lapse(jax.random.key(0), 1.0, 1.5, 0.5, 0.3,
        ...                                       p_lapse=0.05, rt_max=3.0, shape=(10,))
        >>> rt.shape
        (10,)
    """
    k_wiener, k_lapse, k_rt, k_choice = jax.random.split(key, 4)
    rt, choice = wiener_sample(k_wiener, v, a, w, t0, sv, shape)
    p_lapse = jnp.asarray(p_lapse, rt.dtype)
    lapse = jax.random.uniform(k_lapse, rt.shape, rt.dtype) < p_lapse
    rt_lapse = jax.random.uniform(k_rt, rt.shape, rt.dtype) * jnp.asarray(rt_max, rt.dtype)
    choice_lapse = jax.random.bernoulli(k_choice, 0.5, rt.shape).astype(choice.dtype)
    return jnp.where(lapse, rt_lapse, rt), jnp.where(lapse, choice_lapse, choice)
