"""Linear Ballistic Accumulator (Brown & Heathcote, 2008).

Each of ``n`` accumulators starts at ``x ~ Uniform(0, A)`` and rises linearly with a drift
``d ~ Normal(v, s)`` drawn once per trial; the first to reach the threshold ``b`` gives the
choice and ``rt = t0 + (b - x) / d``. Accumulators with ``d <= 0`` never finish, so a trial
with no positive drift gives no response; ``positive_drift=True`` conditions on a response.

Closed forms, with ``z(y) = (y - v) / s`` and the drift interval ``[(b - A) / t, b / t]``
that reaches ``b`` exactly at ``t``:

- density ``f(t) = (1/A) * integral of y * Normal(y; v, s) over that interval``,
- survival ``S(t) = (t s / A) * integral of Phi(z) dz over [z((b-A)/t), z(b/t)]``,

written in log space with the dominant scale factored out, so that far tails stay finite.
"""

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfcx, log_ndtr
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from hjax.cognitive._dtype import float_dtype

__all__ = ["lba_log_density", "lba_log_survival", "lba_sample"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_diff_exp(x, y):
    """log(exp(x) - exp(y)) for y <= x, floored instead of -inf when they round equal."""
    tiny = jnp.finfo(jnp.result_type(x)).tiny
    return x + jnp.log(jnp.maximum(-jnp.expm1(y - x), tiny))


def _log_normal_pdf(z):
    return -0.5 * z**2 - _LOG_SQRT_2PI


def _log_int_cdf(z):
    """log of the integral of Phi from -inf to z, i.e. log(z Phi(z) + phi(z))."""
    tiny = jnp.finfo(jnp.result_type(z)).tiny
    pos = z >= 0
    z_pos = jnp.where(pos, z, 0.0)
    z_neg = jnp.where(pos, -1.0, z)
    log_pos = jnp.log(z_pos * jnp.exp(log_ndtr(z_pos)) + jnp.exp(_log_normal_pdf(z_pos)))
    # For z < 0, phi(z) (1 - |z| Q(|z|) / phi(z)) avoids subtracting two underflowing terms.
    mills = math.sqrt(math.pi / 2) * erfcx(-z_neg / math.sqrt(2))
    log_neg = _log_normal_pdf(z_neg) + jnp.log(jnp.maximum(1 + z_neg * mills, tiny))
    return jnp.where(pos, log_pos, log_neg)


def _log_pdf_and_log_survival(t, v, A, b, s):
    """Per-accumulator log density and log survival at decision time t > 0."""
    z_lo = ((b - A) / t - v) / s
    z_hi = (b / t - v) / s

    # log(Phi(z_hi) - Phi(z_lo)), from the upper tails when both are far right: the tails are
    # chosen before `log_ndtr`, which then runs twice, not four times.
    right = z_lo > 0
    log_dcdf = _log_diff_exp(log_ndtr(jnp.where(right, -z_lo, z_hi)),
                             log_ndtr(jnp.where(right, -z_hi, z_lo)))
    log_pdf_lo = _log_normal_pdf(z_lo)
    log_pdf_hi = _log_normal_pdf(z_hi)
    scale = jnp.maximum(log_dcdf, jnp.maximum(log_pdf_lo, log_pdf_hi))
    inner = v * jnp.exp(log_dcdf - scale) + s * (
        jnp.exp(log_pdf_lo - scale) - jnp.exp(log_pdf_hi - scale)
    )
    tiny = jnp.finfo(t.dtype).tiny
    log_pdf = scale + jnp.log(jnp.maximum(inner, tiny)) - jnp.log(A)

    log_surv = jnp.log(t * s / A) + _log_diff_exp(_log_int_cdf(z_hi), _log_int_cdf(z_lo))
    return log_pdf, jnp.minimum(log_surv, 0.0)


def lba_log_density(
    rt: Float[ArrayLike, "*batch"],
    choice: Int[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch n_acc"],
    A: Float[ArrayLike, "*batch n_acc"],
    b: Float[ArrayLike, "*batch n_acc"],
    t0: Float[ArrayLike, "*batch"],
    s: Float[ArrayLike, "*batch n_acc"] = 1.0,
    *,
    positive_drift: bool = False,
) -> Float[Array, "*batch"]:
    """Log density of accumulator ``choice`` finishing first at ``rt``.

    ``log f_choice(t) + sum over the others of log S_j(t)`` with ``t = rt - t0``. ``v``
    carries the accumulators on its last axis; ``A``, ``b`` and ``s`` broadcast against
    ``v`` (a per-trial value needs a trailing axis of size 1), ``rt``, ``choice`` and ``t0``
    against ``v.shape[:-1]``. Without ``positive_drift`` the densities over all choices
    integrate to ``1 - prod_j Phi(-v_j / s_j)``, the probability of responding at all;
    ``positive_drift=True`` divides by it (the model conditioned on a response).

    ``rt <= t0`` gives ``-inf`` with zero gradients. Parameters are not checked
    (``b >= A > 0``, ``s > 0`` are assumed).

    Args:
        rt: response times.
        choice: index of the winning accumulator, in ``[0, n_acc)``.
        v: mean drift rates, accumulators on the last axis.
        A: upper end of the start-point distribution.
        b: threshold.
        t0: non-decision time.
        s: between-trial standard deviation of the drifts.
        positive_drift: normalise by the probability that some drift is positive.

    Returns:
        The log density, shape ``broadcast(rt, choice, t0, v[..., 0])``.

    Example:
        >>> import jax.numpy as jnp
        >>> lp = lba_log_density(jnp.array([0.7, 0.9]), jnp.array([0, 1]),
        ...                      v=jnp.array([1.2, 0.8]), A=0.5, b=1.0, t0=0.2)
        >>> lp.round(2)
        Array([-0.21, -1.36], dtype=float32)
    """
    dtype = float_dtype(rt, v, A, b, t0, s)
    rt, v, A, b, t0, s = (jnp.asarray(x, dtype) for x in (rt, v, A, b, t0, s))
    v, A, b, s = jnp.broadcast_arrays(v, A, b, s)
    choice = jnp.asarray(choice)

    t = rt - t0
    valid = t > 0
    t = jnp.where(valid, t, 1.0)
    log_pdf, log_surv = _log_pdf_and_log_survival(t[..., None], v, A, b, s)
    winner = jnp.arange(v.shape[-1]) == choice[..., None]
    log_p = jnp.sum(jnp.where(winner, log_pdf, log_surv), axis=-1)
    if positive_drift:
        log_p_none = jnp.sum(log_ndtr(-v / s), axis=-1)
        log_p = log_p - jnp.log(-jnp.expm1(log_p_none))
    return jnp.where(valid, log_p, -jnp.inf)


def lba_log_survival(
    rt: Float[ArrayLike, "*batch"],
    v: Float[ArrayLike, "*batch n_acc"],
    A: Float[ArrayLike, "*batch n_acc"],
    b: Float[ArrayLike, "*batch n_acc"],
    t0: Float[ArrayLike, "*batch"],
    s: Float[ArrayLike, "*batch n_acc"] = 1.0,
    *,
    positive_drift: bool = False,
) -> Float[Array, "*batch"]:
    """log P(no response by ``rt``): no accumulator has reached its threshold by ``rt - t0``.

    The product of the accumulators' survivals (each includes the chance its drift is not
    positive, so it never finishes). With ``positive_drift`` the race is conditioned on some
    positive drift, as the density is: ``(prod_j S_j - prod_j Phi(-v_j/s_j)) / (1 - prod_j
    Phi(-v_j/s_j))``. ``rt <= t0`` gives 0.

    Example:
        >>> round(float(lba_log_survival(1.0, v=jnp.array([1.2, 0.8]), A=0.5, b=1.0, t0=0.2)), 3)
        -1.512
    """
    dtype = float_dtype(rt, v, A, b, t0, s)
    rt, v, A, b, t0, s = (jnp.asarray(x, dtype) for x in (rt, v, A, b, t0, s))
    v, A, b, s = jnp.broadcast_arrays(v, A, b, s)
    t = rt - t0
    started = t > 0
    t = jnp.where(started, t, 1.0)
    _, log_surv = _log_pdf_and_log_survival(t[..., None], v, A, b, s)
    log_all = jnp.sum(log_surv, axis=-1)
    if positive_drift:
        log_none = jnp.sum(log_ndtr(-v / s), axis=-1)
        log_all = _log_diff_exp(log_all, log_none) - jnp.log(-jnp.expm1(log_none))
    return jnp.where(started, jnp.minimum(log_all, 0.0), 0.0)


def lba_sample(
    key: PRNGKeyArray,
    v: Float[ArrayLike, "*batch n_acc"],
    A: Float[ArrayLike, "*batch n_acc"],
    b: Float[ArrayLike, "*batch n_acc"],
    t0: Float[ArrayLike, "*batch"],
    s: Float[ArrayLike, "*batch n_acc"] = 1.0,
    shape: tuple[int, ...] = (),
    *,
    positive_drift: bool = False,
) -> tuple[Float[Array, "*shape"], Int[Array, "*shape"]]:
    """Exact draws of (rt, choice): start points and drifts drawn, race run in closed form.

    Trials in which no drift is positive never respond and return ``rt = inf`` and
    ``choice = -1``; with ``positive_drift=True`` their drifts are redrawn instead, which
    samples the model conditioned on a response (the density with the same flag).

    Args:
        key: PRNG key.
        v: mean drift rates, accumulators on the last axis.
        A: upper end of the start-point distribution (broadcast against ``v``).
        b: threshold (broadcast against ``v``).
        t0: non-decision time (broadcast against ``v.shape[:-1]``).
        s: between-trial standard deviation of the drifts (broadcast against ``v``).
        shape: sample shape, broadcast with the parameters' batch shape.
        positive_drift: condition on at least one positive drift.

    Returns:
        ``(rt, choice)``, choice the index of the winning accumulator.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> rt, choice = lba_sample(jax.random.key(0), jnp.array([1.2, 0.8]), 0.5, 1.0, 0.2,
        ...                         shape=(100,))
        >>> rt.shape
        (100,)
    """
    dtype = float_dtype(v, A, b, t0, s)
    v, A, b, t0, s = (jnp.asarray(x, dtype) for x in (v, A, b, t0, s))
    v, A, b, s = jnp.broadcast_arrays(v, A, b, s)
    batch = jnp.broadcast_shapes(shape, v.shape[:-1], t0.shape)
    full = (*batch, v.shape[-1])
    v, A, b, s = (jnp.broadcast_to(x, full) for x in (v, A, b, s))
    k_start, k_drift = jax.random.split(key)

    start = A * jax.random.uniform(k_start, full, dtype)
    drift = v + s * jax.random.normal(k_drift, full, dtype)
    if positive_drift:

        def redraw(state):
            i, drift = state
            fresh = v + s * jax.random.normal(jax.random.fold_in(k_drift, i), full, dtype)
            none = jnp.all(drift <= 0, axis=-1, keepdims=True)
            return i + 1, jnp.where(none, fresh, drift)

        def any_silent(state):
            return jnp.any(jnp.all(state[1] <= 0, axis=-1))

        drift = jax.lax.while_loop(any_silent, redraw, (jnp.asarray(1), drift))[1]

    finish = jnp.where(drift > 0, (b - start) / jnp.where(drift > 0, drift, 1.0), jnp.inf)
    choice = jnp.argmin(finish, axis=-1).astype(jnp.int32)
    decision = jnp.min(finish, axis=-1)
    responded = jnp.isfinite(decision)
    return t0 + decision, jnp.where(responded, choice, -1)
