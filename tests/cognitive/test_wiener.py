"""Wiener first-passage time density, gradients and sampler against independent references."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from hjax.cognitive import (
    wiener_log_density,
    wiener_log_density_with_lapse,
    wiener_prob_upper,
    wiener_sample,
    wiener_sample_with_lapse,
)

KS_P_MIN = 1e-3  # fixed seeds: a correct sampler fails a single KS test 0.1% of the time

# RWiener::dwiener(y, alpha, tau, beta, delta, give_log=TRUE), upper boundary, as recorded
# in Stan math test/prob/wiener/wiener_test.hpp. Columns: rt, a, t0, w, v, log density.
RWIENER_VALUES = [
    (1.1, 2.1, 0.3, 0.55, 0.4, -0.892976431870503),
    (2.1, 4.1, 0.6, 0.05, 0.1, -5.28933922584833),
    (1.2, 10.1, 0.35, 0.95, 0.5, -1.36212169454714),
    (50.1, 4.3, 1.05, 0.65, 0.15, -15.3049368722015),
    (1.51, 1.1, 0.9, 0.2, 10.5, -26.4531852275477),
]

# Stan math test/unit/math/rev/prob/wiener_full_test.cpp (wiener_full_lpdf, upper boundary,
# precision 1e-6, printed to ~7 digits), the cases with sw = st0 = 0. Columns: rt, a, t0,
# w, v, sv, log density, then d/d(rt, a, v, w, t0, sv).
STAN_FULL_VALUES = [
    (1.0, 1.0, 0.2, 0.5, 1.0, 0.1, -2.70665,
     (-5.436791, 6.394195, -0.297619, -0.9969335, 5.436791, -0.07050737)),
    (1.0, 1.0, 0.2, 0.5, 1.0, 0.0, -2.703112,
     (-5.434802, 6.395684, -0.3, -0.9999097, 5.434802, 0.0)),
    (1.0, 1.0, 0.0, 0.5, 1.0, 0.0, -3.790072,
     (-5.434802, 8.369604, -0.5, -0.9999953, 5.434802, 0.0)),
]


# Both boundaries and sv > 0: HDDM's Cython implementation (PyPI hddm-wfpt 0.1.7),
# wfpt.pdf_array(x, v, sv, a, w, 0, t0, 0, err=1e-10, logp=True) with x = -rt for the lower
# boundary. Columns: rt, choice, v, a, w, t0, sv, log density.
HDDM_VALUES = [
    (0.35, 0, -1.0, 0.8, 0.3, 0.2, 0.0, 0.458212492082),
    (0.9, 0, 2.0, 1.5, 0.5, 0.3, 0.0, -3.682227949347),
    (2.5, 0, 0.5, 2.5, 0.7, 0.4, 1.0, -3.012951525309),
    (0.61, 1, -3.0, 1.0, 0.9, 0.6, 0.5, 2.842090444604),
    (4.0, 1, 1.5, 3.0, 0.2, 0.5, 2.0, -4.121779828348),
    (0.3001, 0, 4.0, 0.6, 0.1, 0.3, 0.0, -8.157638692002),
]


def _logp_upper(rt, a, t0, w, v, sv):
    return wiener_log_density(rt, 1, v, a, w, t0, sv)


def test_matches_rwiener_values():
    with jax.enable_x64(True):
        rt, a, t0, w, v, expected = map(np.array, zip(*RWIENER_VALUES, strict=True))
        got = wiener_log_density(rt, np.ones(len(rt), int), v, a, w, t0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_matches_hddm_values():
    with jax.enable_x64(True):
        rt, choice, v, a, w, t0, sv, expected = map(np.array, zip(*HDDM_VALUES, strict=True))
        got = wiener_log_density(rt, choice.astype(int), v, a, w, t0, sv)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_matches_stan_values_and_gradients():
    with jax.enable_x64(True):
        grad = jax.jit(jax.value_and_grad(_logp_upper, argnums=(0, 1, 4, 3, 2, 5)))
        for rt, a, t0, w, v, sv, expected, expected_grad in STAN_FULL_VALUES:
            value, grads = grad(rt, a, t0, w, v, sv)
            # Stan's own tolerance for these values is 2e-6 (values printed to 7 digits).
            np.testing.assert_allclose(value, expected, atol=2e-6)
            np.testing.assert_allclose(np.array(grads), expected_grad, atol=2e-6)


def _long_series_density(u, w):
    """v=0, a=1 lower-boundary density from 60-term series (Navarro & Fuss 2009, eq. 6/7)."""
    k = np.arange(-30, 31)[:, None]
    small = (w + 2 * k) * np.exp(-((w + 2 * k) ** 2) / (2 * u)) / np.sqrt(2 * np.pi * u**3)
    k = np.arange(1, 61)[:, None]
    large = np.pi * k * np.sin(k * np.pi * w) * np.exp(-(k**2) * np.pi**2 * u / 2)
    return np.where(u < 1, small.sum(0), large.sum(0))


def test_truncated_series_match_long_series():
    """The fixed term counts, and the sums' few exponentials and sine recurrence, lose nothing
    measurable on either side of the series switch, start points near the boundaries too."""
    with jax.enable_x64(True):
        starts = np.r_[0.002, np.linspace(0.05, 0.95, 7), 0.998]
        u, w = map(np.ravel, np.meshgrid(np.geomspace(0.02, 20, 60), starts))
        got = wiener_log_density(u, np.zeros(u.shape, int), 0.0, 1.0, w, 0.0)
        np.testing.assert_allclose(got, np.log(_long_series_density(u, w)), rtol=1e-12)


PARAM_SETS = [  # v, a, w, t0, sv
    (1.0, 1.5, 0.5, 0.2, 0.0),
    (-2.0, 2.0, 0.3, 0.3, 1.0),
    (4.0, 0.6, 0.9, 0.1, 0.5),
    (0.0, 3.0, 0.05, 0.25, 0.0),
]


def _mass(v, a, w, t0, sv, choice):
    jitted = jax.jit(wiener_log_density)

    def density(rt):
        return float(jnp.exp(jitted(rt, choice, v, a, w, t0, sv)))

    return integrate.quad(density, t0, np.inf, limit=500, epsabs=1e-13, epsrel=1e-12)[0]


def _prob_upper_with_sv(v, a, w, sv):
    if sv == 0:
        return float(wiener_prob_upper(v, a, w))
    integrand = lambda x: float(wiener_prob_upper(x, a, w)) * stats.norm.pdf(x, v, sv)  # noqa: E731
    return integrate.quad(integrand, v - 12 * sv, v + 12 * sv, epsabs=1e-13)[0]


@pytest.mark.parametrize("v, a, w, t0, sv", PARAM_SETS)
def test_density_integrates_to_one_and_to_choice_probability(v, a, w, t0, sv):
    with jax.enable_x64(True):
        upper, lower = _mass(v, a, w, t0, sv, 1), _mass(v, a, w, t0, sv, 0)
        assert abs(upper + lower - 1) < 1e-6
        # The upper mass is an independent check of the closed-form sv integral.
        assert abs(upper - _prob_upper_with_sv(v, a, w, sv)) < 1e-6


def _grid():
    rows = itertools.product(
        [1e-4, 0.03, 0.4, 2.5],  # rt - t0, including RTs just above t0
        [0.5, 1.7, 5.0],  # a
        [-5.0, 0.0, 5.0],  # v
        [0.05, 0.5, 0.95],  # w
        [0.0, 1.0],  # sv
        [0, 1],  # choice
    )
    dt, a, v, w, sv, choice = map(np.array, zip(*rows, strict=True))
    t0 = 0.3
    return dict(rt=t0 + dt, choice=choice, v=v, a=a, w=w, t0=np.full(dt.shape, t0), sv=sv)


def test_gradients_match_finite_differences():
    """Central differences, relative step 1e-6 (1e-4 of rt - t0 for rt and t0), float64."""
    with jax.enable_x64(True):
        g = _grid()
        names = ["rt", "v", "a", "w", "t0", "sv"]

        def f(*args):
            return wiener_log_density(args[0], g["choice"], *args[1:4], args[4], args[5])

        args = [jnp.asarray(g[n], jnp.float64) for n in names]
        # Trials are independent, so the gradient of the sum is the per-trial gradient.
        grads = jax.grad(lambda *x: jnp.sum(f(*x)), argnums=range(6))(*args)
        dt = g["rt"] - g["t0"]
        for i, name in enumerate(names):
            assert np.all(np.isfinite(grads[i])), name
            x = np.asarray(args[i])
            h = 1e-4 * dt if name in ("rt", "t0") else 1e-6 * np.maximum(1.0, np.abs(x))
            up = [a if j != i else a + h for j, a in enumerate(args)]
            down = [a if j != i else a - h for j, a in enumerate(args)]
            fd = (np.asarray(f(*up)) - np.asarray(f(*down))) / (2 * h)
            # Observed worst case 7e-7 (v); the rt gradient reaches 1e9 near t0.
            np.testing.assert_allclose(grads[i], fd, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("x64", [False, True])
def test_rt_at_or_below_t0_is_minus_inf_with_zero_gradients(x64):
    with jax.enable_x64(x64):
        rt = jnp.array([0.1, 0.3, 0.3 - 1e-7])

        def f(rt, v, a, w, t0, sv):
            return jnp.sum(wiener_log_density(rt, jnp.array([0, 1, 1]), v, a, w, t0, sv))

        assert np.all(np.isneginf(wiener_log_density(rt, 1, 1.0, 1.0, 0.5, 0.3, 0.5)))
        grads = jax.grad(f, argnums=range(6))(rt, 1.0, 1.0, 0.5, 0.3, 0.5)
        for grad in grads:
            np.testing.assert_array_equal(grad, 0.0)


def test_float32_agrees_with_float64_and_is_finite():
    """Same grid as the gradient test; float32 loses ~1e-7 relative per operation."""
    g = _grid()
    args = [g[n] for n in ("rt", "choice", "v", "a", "w", "t0", "sv")]
    with jax.enable_x64(True):
        lp64 = np.asarray(wiener_log_density(*args))
    f32 = [np.asarray(x, np.float32) if x.dtype.kind == "f" else x for x in args]
    lp32 = np.asarray(wiener_log_density(*f32))
    assert lp32.dtype == np.float32
    near_t0 = g["rt"] - g["t0"] < 1e-3
    np.testing.assert_allclose(lp32[~near_t0], lp64[~near_t0], rtol=1e-5, atol=1e-5)
    # rt - t0 = 1e-4 is itself only known to 1.5e-4 relative in float32 (rt = 0.3001).
    np.testing.assert_allclose(lp32[near_t0], lp64[near_t0], rtol=5e-4)

    grads = jax.grad(
        lambda v, a, w, t0, sv: jnp.sum(wiener_log_density(f32[0], f32[1], v, a, w, t0, sv)),
        argnums=range(5),
    )(*f32[2:])
    assert all(np.all(np.isfinite(x)) for x in grads)


def _conditional_cdf(v, a, w, t0, sv, choice, t_max):
    """CDF of rt given the boundary, from integrating the density on a fine grid."""
    with jax.enable_x64(True):
        grid = t0 + np.linspace(0, t_max - t0, 20_001)
        dens = np.exp(np.asarray(wiener_log_density(grid, choice, v, a, w, t0, sv)))
    cdf = integrate.cumulative_simpson(dens, x=grid, initial=0)
    return grid, cdf / cdf[-1], cdf[-1]


def _check_sampler(v, a, w, t0, sv, n, seed):
    rt, choice = wiener_sample(jax.random.key(seed), v, a, w, t0, sv, shape=(n,))
    rt, choice = np.asarray(rt, np.float64), np.asarray(choice)
    assert rt.min() > t0
    t_max = rt.max() * 2 + 1
    p_upper = None
    for c in (0, 1):
        grid, cdf, mass = _conditional_cdf(v, a, w, t0, sv, c, t_max)
        p_upper = mass if c == 1 else p_upper
        sample = rt[choice == c]
        if len(sample) >= 20:
            p = stats.kstest(sample, lambda x, g=grid, f=cdf: np.interp(x, g, f)).pvalue
            assert p > KS_P_MIN, (c, p)
    se = np.sqrt(p_upper * (1 - p_upper) / n)
    assert abs(choice.mean() - p_upper) < 4 * se + 1e-12


@pytest.mark.parametrize(
    "v, a, w, t0, sv, seed",
    [(1.0, 1.5, 0.3, 0.2, 0.0, 0), (-0.5, 2.5, 0.6, 0.3, 1.0, 1)],
)
def test_sampler_matches_density(v, a, w, t0, sv, seed):
    """KS per boundary against the integrated density; choice rate within 4 binomial SE."""
    _check_sampler(v, a, w, t0, sv, n=4000, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed, params", list(enumerate(PARAM_SETS + [(5.0, 0.5, 0.1, 0.2, 0.0)]))
)
def test_sampler_matches_density_many(seed, params):
    _check_sampler(*params, n=50_000, seed=10 + seed)


def test_lapse_mixture_integrates_to_one_and_reduces_to_wiener():
    with jax.enable_x64(True):
        v, a, w, t0, sv, p, rt_max = 0.8, 1.2, 0.4, 0.3, 0.5, 0.1, 4.0
        jitted = jax.jit(wiener_log_density_with_lapse)

        def density(rt, c):
            return float(jnp.exp(jitted(rt, c, v, a, w, t0, sv, p_lapse=p, rt_max=rt_max)))

        total = sum(
            integrate.quad(density, lo, hi, args=(c,), limit=500, epsabs=1e-13)[0]
            for c in (0, 1)
            for lo, hi in ((0, t0), (t0, rt_max), (rt_max, np.inf))
        )
        assert abs(total - 1) < 1e-6
        rt = np.array([0.1, 0.5, 2.0, 5.0])
        lapse0 = wiener_log_density_with_lapse(rt, 1, v, a, w, t0, sv, p_lapse=0.0, rt_max=rt_max)
        np.testing.assert_allclose(lapse0, wiener_log_density(rt, 1, v, a, w, t0, sv))


def test_lapse_gradients_are_finite_everywhere():
    """Including RTs below t0 (only the lapse explains them) and above rt_max (only Wiener)."""
    rt = jnp.array([0.1, 0.3, 0.8, 5.0])

    def f(v, a, w, t0, sv, p):
        return jnp.sum(wiener_log_density_with_lapse(
            rt, jnp.array([1, 0, 1, 0]), v, a, w, t0, sv, p_lapse=p, rt_max=4.0))

    value = f(1.0, 1.0, 0.5, 0.3, 0.5, 0.05)
    grads = jax.grad(f, argnums=range(6))(1.0, 1.0, 0.5, 0.3, 0.5, 0.05)
    assert np.isfinite(value)
    assert all(np.isfinite(g) for g in grads)


def test_lapse_sampler_rate_of_fast_guesses():
    """RTs below t0 come only from lapses: rate p_lapse * t0 / rt_max, within 4 SE."""
    p, t0, rt_max, n = 0.2, 0.5, 2.0, 20_000
    rt, choice = wiener_sample_with_lapse(
        jax.random.key(3), 1.0, 1.0, 0.5, t0, p_lapse=p, rt_max=rt_max, shape=(n,))
    fast = np.asarray(rt) < t0
    rate = p * t0 / rt_max
    assert abs(fast.mean() - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    # Lapse choices are coin flips.
    assert abs(np.asarray(choice)[fast].mean() - 0.5) < 4 * np.sqrt(0.25 / fast.sum())
