"""First-passage survival functions (no response by a deadline), checked like the densities:
numerical integration of the densities, simulation, finite-difference gradients, no NaN; and
censored likelihoods against scipy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import hjax as hj
from hjax.cognitive import (
    lba_log_density,
    lba_log_survival,
    lba_sample,
    wiener_log_density,
    wiener_log_survival,
    wiener_sample,
)

WIENER = [(1.0, 1.5, 0.5, 0.3, 1.0, 0.0), (-2.0, 2.0, 0.3, 0.2, 2.5, 0.0),
          (0.5, 1.0, 0.7, 0.25, 0.6, 0.0), (1.0, 1.5, 0.5, 0.3, 1.0, 1.0),
          (3.0, 0.8, 0.6, 0.1, 0.3, 0.5), (0.0, 3.0, 0.5, 0.2, 4.0, 0.0),
          # early deadlines, (deadline - t0) / a^2 < 0.1: the small-time series
          (1.0, 2.0, 0.5, 0.2, 0.5, 0.0), (-2.0, 1.5, 0.3, 0.3, 0.36, 0.0),
          (1.0, 2.0, 0.6, 0.2, 0.45, 1.0)]
LBA = [((1.2, 0.8), 0.5, 1.0, 0.2, 1.0, False), ((1.2, 0.8), 0.5, 1.0, 0.2, 1.0, True),
       ((0.3, -0.2), 0.7, 1.5, 0.3, 2.0, True), ((2.0, 1.0, 0.5), 0.4, 0.9, 0.15, 0.6, True)]


@pytest.mark.parametrize("case", WIENER)
def test_wiener_survival_is_one_minus_the_integrated_densities(case):
    v, a, w, t0, deadline, sv = case
    with jax.enable_x64(True):
        both = jax.jit(lambda t: jnp.exp(wiener_log_density(t, jnp.array([0, 1]), v, a, w, t0,
                                                            sv)).sum())
        mass, _ = integrate.quad(lambda t: float(both(t)), t0, deadline, limit=200,
                                 epsabs=1e-13)
        survival = float(np.exp(wiener_log_survival(deadline, v, a, w, t0, sv)))
    np.testing.assert_allclose(survival, 1 - mass, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", LBA)
def test_lba_survival_is_one_minus_the_integrated_densities(case):
    v, A, b, t0, deadline, positive = case
    v = np.asarray(v)
    with jax.enable_x64(True):
        every = jax.jit(lambda t: jnp.exp(lba_log_density(
            jnp.full(v.size, t), jnp.arange(v.size), jnp.tile(v, (v.size, 1)), A, b, t0,
            positive_drift=positive)).sum())
        mass, _ = integrate.quad(lambda t: float(every(t)), t0, deadline, limit=200,
                                 epsabs=1e-13)
        survival = float(np.exp(lba_log_survival(deadline, v, A, b, t0,
                                                 positive_drift=positive)))
    # Without conditioning, the densities integrate to P(respond): the survival keeps the rest.
    np.testing.assert_allclose(survival, 1 - mass, rtol=1e-9, atol=1e-12)


def test_wiener_survival_without_drift_variability_skips_the_quadrature_exactly():
    """sv = 0 as a Python number takes the one-node path; a traced zero the quadrature."""
    with jax.enable_x64(True):
        rt = jnp.array([0.35, 0.6, 1.0, 2.5])
        one_node = wiener_log_survival(rt, 1.0, 1.5, 0.4, 0.3, 0.0)
        quadrature = jax.jit(wiener_log_survival)(rt, 1.0, 1.5, 0.4, 0.3, jnp.asarray(0.0))
    np.testing.assert_allclose(one_node, quadrature, rtol=1e-12)


def test_survivals_match_simulation():
    n = 200_000
    rt, _ = wiener_sample(jax.random.key(0), 1.0, 1.5, 0.5, 0.3, 0.5, (n,))
    expected = float(np.exp(wiener_log_survival(1.0, 1.0, 1.5, 0.5, 0.3, 0.5)))
    seen = float(np.mean(np.asarray(rt) > 1.0))
    assert abs(seen - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    v = jnp.array([1.2, 0.8])
    rt, _ = lba_sample(jax.random.key(1), v, 0.5, 1.0, 0.2, 1.0, (n,), positive_drift=True)
    expected = float(np.exp(lba_log_survival(1.0, v, 0.5, 1.0, 0.2, positive_drift=True)))
    seen = float(np.mean(np.asarray(rt) > 1.0))
    assert abs(seen - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_survival_gradients_match_finite_differences_without_nan():
    with jax.enable_x64(True):
        survival = jax.jit(wiener_log_survival)
        gradient = jax.jit(jax.grad(wiener_log_survival, argnums=(1, 2, 3, 4, 5)))
        grid = itertools.product([-3.0, 0.0, 2.0], [0.6, 3.0], [0.2, 0.8], [0.05, 0.5, 3.0],
                                 [0.0, 1.0])
        for v, a, w, t, sv in grid:
            args = np.array([0.2 + t, v, a, w, 0.2, sv])
            grad = np.asarray(gradient(*args))
            assert np.all(np.isfinite(grad)), (v, a, w, t, sv)
            steps = np.eye(6)[1:] * 1e-6
            numeric = [(float(survival(*(args + h))) - float(survival(*(args - h)))) / 2e-6
                       for h in steps]
            np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
        v = jnp.array([1.2, 0.8])
        grad = jax.grad(lambda v: lba_log_survival(1.0, v, 0.5, 1.0, 0.2,
                                                   positive_drift=True))(v)
        numeric = [(float(lba_log_survival(1.0, v.at[j].add(1e-6), 0.5, 1.0, 0.2,
                                           positive_drift=True))
                    - float(lba_log_survival(1.0, v.at[j].add(-1e-6), 0.5, 1.0, 0.2,
                                             positive_drift=True))) / 2e-6 for j in range(2)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5)
    # Before t0 nothing can have ended: survival 1, zero gradients (float32 too).
    value, grad = jax.value_and_grad(wiener_log_survival, argnums=1)(0.1, 1.0, 1.5, 0.5, 0.3)
    assert float(value) == 0.0 and float(grad) == 0.0


def test_censored_gaussian_and_poisson_match_scipy():
    with jax.enable_x64(True):
        lik = hj.Censored(hj.Gaussian(mu=hj.Fixed("mu"), sigma=hj.Fixed(
            "sigma", hj.HalfNormal(1.0))), lower="lo", upper="hi", interval="end")
        model = hj.Model(lik, coords={})
        inf = np.inf
        raw = {"y": [0.0, 3.0, 1.0, 1.5], "lo": [0.0, -inf, -inf, -inf],
               "hi": [inf, 3.0, inf, inf], "end": [inf, inf, inf, 2.0]}
        p = {"mu": jnp.array(1.2), "sigma": jnp.array(np.log(0.8))}
        lp = np.asarray(model.log_likelihood(p, model.prepare(raw)))
        normal = stats.norm(1.2, 0.8)
        np.testing.assert_allclose(lp, [normal.logcdf(0.0), normal.logsf(3.0),
                                        normal.logpdf(1.0),
                                        np.log(normal.cdf(2.0) - normal.cdf(1.5))], rtol=1e-10)
        poisson = hj.Model(hj.Censored(hj.Poisson(hj.Fixed("b")), lower="lo", upper="hi"),
                           coords={})
        raw = {"y": [2, 7, 4], "lo": [2, -inf, -inf], "hi": [inf, 7, inf]}
        lp = np.asarray(poisson.log_likelihood({"b": jnp.array(np.log(4.0))},
                                                poisson.prepare(raw)))
        rate = stats.poisson(4.0)
        np.testing.assert_allclose(lp, [rate.logcdf(2), np.log(rate.sf(6)), rate.logpmf(4)],
                                   rtol=1e-10)


def test_deadlines_and_lapses_in_the_wiener_likelihood():
    """A trial past the deadline contributes P(no response by then), lapses included."""
    wiener = hj.Wiener(v=hj.Fixed("v"), a=1.5, t0=0.3, p_lapse=0.1, rt_max=3.0)
    model = hj.Model(hj.Censored(wiener, upper="deadline"), coords={})
    data = model.prepare({"rt": [2.0, 0.7], "choice": [1, 0], "deadline": [2.0, 2.0]})
    lp = np.asarray(model.log_likelihood({"v": jnp.array(1.0)}, data))
    no_decision = np.exp(float(wiener_log_survival(2.0, 1.0, 1.5, 0.5, 0.3)))
    np.testing.assert_allclose(lp[0], np.log(0.9 * no_decision + 0.1 * (3.0 - 2.0) / 3.0),
                               rtol=1e-5)
    with pytest.raises(ValueError, match=r"Wiener.p_lapse must be interval\(0, 1\)"):
        hj.Model(hj.Wiener(v=0.0, a=1.0, t0=0.2, p_lapse=hj.Fixed("p", hj.HalfNormal(1.0))),
                 coords={})


def test_simulated_deadlines_censor_and_fit():
    """Type-I censoring in simulation: RTs past the deadline are recorded at it."""
    model = hj.Model(hj.Censored(hj.Wiener(v=hj.Fixed("v"), a=1.5, t0=0.3), upper="deadline"),
                     coords={})
    design = model.prepare({"deadline": np.full(400, 1.2)}, observed=False)
    _, data = model.simulate(jax.random.key(0), design, given={"v": 0.5})
    rt = np.asarray(data["rt"])
    assert rt.max() == pytest.approx(1.2) and 0.05 < np.mean(rt >= 1.2) < 0.5
    lp = model.log_likelihood({"v": jnp.array(0.5)}, model.prepare(
        {k: np.asarray(v) for k, v in data.items()}))
    assert np.all(np.isfinite(np.asarray(lp)))


def test_lba_lapses_mix_into_density_survival_and_simulation():
    v = (hj.Fixed("v0"), hj.Fixed("v1"))
    plain = hj.LBA(v=v, A=0.5, B=0.5, t0=0.2)
    mixed = hj.LBA(v=v, A=0.5, B=0.5, t0=0.2, p_lapse=0.1, rt_max=3.0)
    params = {"v0": jnp.array(1.2), "v1": jnp.array(0.8), "A": 0.5, "B": 0.5, "t0": 0.2,
              "s": 1.0, "p_lapse": 0.1}
    rt, choice = jnp.array([0.1, 0.7]), jnp.array([0, 1])
    base = np.exp(plain.log_prob(rt, choice, **{k: v for k, v in params.items()
                                                if k != "p_lapse"}))
    np.testing.assert_allclose(np.exp(mixed.log_prob(rt, choice, **params)),
                               0.9 * base + 0.1 / (3.0 * 2), rtol=1e-5)
    race = np.exp(float(plain.log_survival(1.0, **{k: v for k, v in params.items()
                                                   if k != "p_lapse"})))
    np.testing.assert_allclose(np.exp(float(mixed.log_survival(1.0, **params))),
                               0.9 * race + 0.1 * 2.0 / 3.0, rtol=1e-5)
    draws = mixed.sample(jax.random.key(0), **{k: jnp.broadcast_to(v, (100_000,))
                                               for k, v in params.items()})
    # RTs below t0 come only from lapses: uniform on [0, 3], so 0.2 / 3 of them.
    fast = float(np.mean(np.asarray(draws["rt"]) < 0.2))
    assert abs(fast - 0.1 * 0.2 / 3.0) < 4 * np.sqrt(0.0067 / 100_000)


def test_deadline_below_the_smallest_t0_is_refused():
    wiener = hj.Wiener(v=hj.Fixed("v"), a=1.5, t0=hj.Fixed("t0", hj.Uniform(0.1, 0.5)))
    model = hj.Model(hj.Censored(wiener, upper="deadline"), coords={})
    with pytest.raises(ValueError, match=r"data\['deadline'\] has response deadlines at or below "
                                         r"the smallest non-decision time t0 allows \(0.1 s\) at "
                                         r"rows \[1\]"):
        model.prepare({"rt": [0.6, 0.3], "choice": [1, 0], "deadline": [2.0, 0.08]})
