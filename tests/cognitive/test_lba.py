"""LBA density, gradients and sampler against numerical integration of the model definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from hjax.cognitive import lba_log_density, lba_sample

KS_P_MIN = 1e-3  # fixed seeds: a correct sampler fails a single KS test 0.1% of the time


def _single_pdf_by_quadrature(t, v, A, b, s):
    """Density of (b - x) / d with x ~ U(0, A), d ~ N(v, s), integrating over x."""

    def integrand(x):
        drift = (b - x) / t
        return stats.norm.pdf(drift, v, s) * drift / t / A

    return integrate.quad(integrand, 0, A, epsabs=1e-14, epsrel=1e-12)[0]


def _single_survival_by_quadrature(t, v, A, b, s):
    """P(x + d t < b), integrating over x."""
    return integrate.quad(
        lambda x: stats.norm.cdf((b - x) / t, v, s) / A, 0, A, epsabs=1e-14, epsrel=1e-12
    )[0]


@pytest.mark.parametrize("t", [0.05, 0.4, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("v, A, b, s", [(1.2, 0.5, 1.0, 1.0), (-0.4, 0.8, 0.9, 0.6)])
def test_single_accumulator_pdf_and_survival_match_quadrature(t, v, A, b, s):
    """pdf from a 1-accumulator race; survival from a 2-accumulator race minus that pdf."""
    with jax.enable_x64(True):
        t0 = 0.2
        log_pdf = lba_log_density(t0 + t, 0, jnp.array([v]), A, b, t0, s)
        np.testing.assert_allclose(
            np.exp(log_pdf), _single_pdf_by_quadrature(t, v, A, b, s), rtol=1e-9, atol=1e-300
        )
        log_race = lba_log_density(t0 + t, 0, jnp.array([v, v - 0.3]), A, b, t0, s)
        np.testing.assert_allclose(
            np.exp(log_race - log_pdf),
            _single_survival_by_quadrature(t, v - 0.3, A, b, s),
            rtol=1e-9,
        )


RACES = [  # v, A, b, t0, s
    (np.array([1.5, 0.7]), 0.6, 1.0, 0.2, 1.0),
    (np.array([0.4, -0.3, 0.1]), 0.5, 0.8, 0.3, 0.7),
]


def _choice_masses(v, A, b, t0, s, positive_drift):
    jitted = jax.jit(lba_log_density, static_argnames="positive_drift")

    def density(rt, c):
        return float(jnp.exp(jitted(rt, c, v, A, b, t0, s, positive_drift=positive_drift)))

    return np.array([
        integrate.quad(density, t0, np.inf, args=(c,), limit=500, epsabs=1e-13)[0]
        for c in range(len(v))
    ])


@pytest.mark.parametrize("v, A, b, t0, s", RACES)
@pytest.mark.parametrize("positive_drift", [False, True])
def test_density_integrates_to_response_probability(v, A, b, t0, s, positive_drift):
    with jax.enable_x64(True):
        total = _choice_masses(v, A, b, t0, s, positive_drift).sum()
        p_respond = 1 - np.prod(stats.norm.cdf(-v / s))
        assert abs(total - (1.0 if positive_drift else p_respond)) < 1e-7


def _defective_cdfs(v, A, b, t0, s, positive_drift, t_max):
    with jax.enable_x64(True):
        grid = t0 + np.linspace(0, t_max - t0, 20_001)
        dens = np.exp(np.stack([
            np.asarray(lba_log_density(grid, c, v, A, b, t0, s, positive_drift=positive_drift))
            for c in range(len(v))
        ]))
    return grid, integrate.cumulative_simpson(dens, x=grid, initial=0, axis=-1)


@pytest.mark.parametrize("v, A, b, t0, s", RACES)
@pytest.mark.parametrize("positive_drift", [False, True])
def test_sampler_matches_density(v, A, b, t0, s, positive_drift):
    """Per choice: KS of rt | choice, and choice rates within 4 binomial SE of the masses."""
    n = 4000
    rt, choice = lba_sample(
        jax.random.key(7), v, A, b, t0, s, shape=(n,), positive_drift=positive_drift
    )
    rt, choice = np.asarray(rt, np.float64), np.asarray(choice)
    responded = choice >= 0
    if positive_drift:
        assert responded.all()
    with jax.enable_x64(True):
        masses = _choice_masses(v, A, b, t0, s, positive_drift)
    # The grid stops at a large finite time; the CDF is normalised by the exact mass.
    grid, cdfs = _defective_cdfs(v, A, b, t0, s, positive_drift, rt[responded].max() + 1)
    for c in range(len(v)):
        p = masses[c]
        assert abs((choice == c).mean() - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-12
        sample = rt[choice == c]
        ks = stats.kstest(sample, lambda x, f=cdfs[c] / p: np.interp(x, grid, f))
        assert ks.pvalue > KS_P_MIN, (c, ks.pvalue)
    assert np.all(np.isinf(rt[~responded]))


def test_gradients_match_finite_differences():
    """Central differences with relative step 1e-6 in float64; all six argument kinds."""
    with jax.enable_x64(True):
        rt = jnp.array([0.25, 0.5, 0.9, 2.0, 6.0, 0.5])
        choice = jnp.array([0, 1, 2, 0, 1, 2])
        v = jnp.array([1.5, 0.4, -0.6])
        args = dict(rt=rt, v=v, A=jnp.array([0.6, 0.3, 0.9]), b=jnp.array([1.0, 0.8, 1.2]),
                    t0=jnp.asarray(0.2), s=jnp.array([1.0, 0.5, 0.8]))

        def f(a):
            return jnp.sum(lba_log_density(a["rt"], choice, a["v"], a["A"], a["b"], a["t0"],
                                           a["s"]))

        grads = jax.grad(f)(args)
        for name, x in args.items():
            x = np.asarray(x)
            fd = np.zeros_like(x)
            for idx in np.ndindex(x.shape):
                h = 1e-6 * max(1.0, abs(x[idx]))
                up, down = x.copy(), x.copy()
                up[idx] += h
                down[idx] -= h
                fd[idx] = (f(args | {name: up}) - f(args | {name: down})) / (2 * h)
            assert np.all(np.isfinite(grads[name])), name
            np.testing.assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("x64", [False, True])
def test_tails_and_rt_at_or_below_t0(x64):
    """Extreme RTs stay finite with finite gradients; rt <= t0 is -inf with zero gradients."""
    with jax.enable_x64(x64):
        rt = jnp.array([0.2, 0.1, 0.2 + 1e-3, 0.2 + 5e-3, 50.0, 500.0])
        choice = jnp.array([0, 1, 0, 1, 0, 1])

        def f(v, A, b, t0, s):
            return lba_log_density(rt, choice, v, A, b, t0, s)

        lp = f(jnp.array([2.0, 1.0]), 0.5, 1.0, 0.2, 0.3)
        assert np.all(np.isneginf(lp[:2]))
        assert np.all(np.isfinite(lp[2:]))
        jac = jax.jacobian(f, argnums=range(5))(jnp.array([2.0, 1.0]), 0.5, 1.0, 0.2, 0.3)
        for j in jac:
            assert np.all(np.isfinite(j))
            np.testing.assert_array_equal(np.asarray(j)[:2], 0.0)


def test_float32_agrees_with_float64():
    rt = np.array([0.3, 0.5, 0.9, 2.0, 6.0])
    choice = np.array([0, 1, 0, 1, 0])
    v, A, b, t0, s = np.array([1.5, 0.4]), 0.6, 1.0, 0.2, np.array([1.0, 0.5])
    with jax.enable_x64(True):
        lp64 = np.asarray(lba_log_density(rt, choice, v, A, b, t0, s))
    lp32 = np.asarray(lba_log_density(rt.astype(np.float32), choice, v.astype(np.float32),
                                      np.float32(A), np.float32(b), np.float32(t0),
                                      s.astype(np.float32)))
    assert lp32.dtype == np.float32
    np.testing.assert_allclose(lp32, lp64, rtol=1e-5, atol=1e-5)
