"""Thinning keeps every `thin`-th draw of the same chain, and its statistics hide nothing."""

import numpy as np
import pytest

import hjax as hj

DATA = {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
        "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18]), "school": np.arange(8)}
THIN, DRAWS = 3, 40
# A short warmup on the centered eight schools: divergences in the kept iterations.
RUN = dict(key=3, chains=2, warmup=60, warn=False)


def centered_eight_schools() -> hj.Model:
    level = hj.Level("theta", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
                     scale=hj.HalfCauchy(5.0), centered=True)
    return hj.Model(hj.Gaussian(mu=level, sigma=hj.Data("sigma")), coords={"school": 8})


@pytest.mark.parametrize("sampler", ["nuts", "blackjax"])
def test_thinned_chain_is_every_thin_th_iteration_of_the_same_chain(sampler):
    model = centered_eight_schools()
    thinned = hj.sample(model, DATA, sampler=sampler, draws=DRAWS, thin=THIN, **RUN)
    whole = hj.sample(model, DATA, sampler=sampler, draws=DRAWS * THIN, **RUN)

    def blocks(name):  # (chain, kept draw, iteration within its block)
        values = whole.sample_stats[name].values
        return values.reshape(values.shape[0], DRAWS, THIN)

    for name in ("mu", "theta", "theta_sd"):
        np.testing.assert_array_equal(thinned.posterior[name].values,
                                      whole.posterior[name].values[:, THIN - 1::THIN])
    stats = thinned.sample_stats
    for name in ("lp", "energy", "step_size"):  # the kept (last) iteration's
        np.testing.assert_array_equal(stats[name].values, blocks(name)[..., -1])
    assert blocks("diverging").any() and not blocks("diverging").all(axis=-1).all()
    np.testing.assert_array_equal(stats.diverging.values, blocks("diverging").any(axis=-1))
    np.testing.assert_array_equal(stats.tree_depth.values, blocks("tree_depth").max(axis=-1))
    np.testing.assert_array_equal(stats.n_steps.values, blocks("n_steps").sum(axis=-1))
    np.testing.assert_allclose(stats.acceptance_rate.values,
                               blocks("acceptance_rate").mean(axis=-1), rtol=1e-5)
    # Every leapfrog step is counted, and every divergence in the diagnostics.
    assert thinned.posterior.attrs["grad_evals"] == whole.posterior.attrs["grad_evals"]
    assert thinned.posterior.attrs["thin"] == THIN
    assert int(hj.diagnose(thinned).divergences) == int(blocks("diverging").any(-1).sum())


def test_thin_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="thin"):
        hj.sample(centered_eight_schools(), DATA, key=0, thin=0)
