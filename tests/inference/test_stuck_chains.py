"""A chain stuck after warmup is found, named with its start, and refitted from new starts.

The trap: a normal of sd 0.5 around 0, and beyond x = 3 a comb of 40-nat ridges 0.0006 apart,
far outside the typical set. A chain started there adapts a step size a thousand times
smaller than the others' and never leaves; a chain started below 3 never gets there.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import hjax as hj
from hjax.inference.workflow.diagnostics import check, stuck_chains

TRAP, MARGIN = 3.0, 0.05  # starts within MARGIN above the trap may slide out of it


def _trap(y, x):
    return -0.5 * ((y - x) / 0.5) ** 2 + jnp.where(x > TRAP, 20.0 * jnp.sin(1e4 * x), 0.0)


MODEL = hj.Model(hj.Custom(_trap, params={"x": hj.Fixed("x", hj.Normal(0, 10))}))
DATA = {"y": np.zeros((16, 1))}
# uniform(-4, 4) starts: about one chain in eight starts in the trap.
SETTINGS = dict(chains=4, warmup=200, draws=100, init_radius=4.0, progress=False, warn=False)


def _trapped(fit) -> np.ndarray:
    start = fit["start"]["x"].values
    clear = (start < TRAP) | (start > TRAP + MARGIN)
    return np.where(clear, start > TRAP, np.nan)


@pytest.fixture(scope="module")
def fit():
    return hj.sample(MODEL, DATA, key=1, **SETTINGS)


def test_exactly_the_chains_started_in_the_trap_are_stuck(fit):
    trapped = _trapped(fit)
    assert np.nansum(trapped) >= 1  # the test sees some
    stuck = stuck_chains(fit).values
    known = ~np.isnan(trapped)
    np.testing.assert_array_equal(stuck[known], trapped[known].astype(bool))
    np.testing.assert_array_equal(hj.diagnose(fit).stuck_chains.values, stuck.sum(axis=1))


def test_the_warning_names_each_stuck_chain_its_step_size_and_start(fit):
    dataset, chain = np.argwhere(stuck_chains(fit).values)[0]
    (message,) = [m for m in check(fit) if "stuck" in m]
    start = float(fit["start"]["x"][dataset, chain])
    assert f"chain {chain} of dataset {dataset} (step size " in message
    assert f"it started at x={start:.3g})" in message
    assert "refit from new starts" in message


def test_escalation_refits_stuck_fits_from_new_starts(fit):
    refitted = hj.sample(MODEL, DATA, key=1, escalation={"attempts": 2, "max_rhat": 10.0,
                                                        "min_ess_bulk": 0}, **SETTINGS)
    stats = refitted.fit_stats
    first = stats.attempt_stuck_chains.isel(attempt=0).values
    np.testing.assert_array_equal(first, stuck_chains(fit).values.sum(axis=1))
    assert np.array_equal(stats.attempts.values > 1, first > 0)  # refitted: those, only those
    for d in np.flatnonzero(first > 0):  # the refit's starts are new ones
        assert not np.array_equal(refitted["start"]["x"][d], fit["start"]["x"][d])
    trapped = _trapped(refitted)  # the same rule holds for the last attempt's chains
    known = ~np.isnan(trapped)
    np.testing.assert_array_equal(stuck_chains(refitted).values[known],
                                  trapped[known].astype(bool))
    assert int(stats.stuck_chains.sum()) < int(first.sum())


def _stats_tree(lp_shift=0.0, step_scale=1.0):
    """4 chains of 200 draws: lp ~ N(-10, 2) and step sizes about 0.5; chain 3's lp shifted
    and its step size scaled."""
    rng = np.random.default_rng(0)
    lp = rng.normal(-10.0, 2.0, (4, 200))
    lp[3] += lp_shift
    step = np.broadcast_to(np.array([0.5, 0.4, 0.6, 0.5 * step_scale])[:, None], (4, 200))
    stats = xr.Dataset({"lp": (("chain", "draw"), lp), "step_size": (("chain", "draw"), step),
                        "diverging": (("chain", "draw"), np.zeros((4, 200), bool))})
    return xr.DataTree.from_dict({"sample_stats": stats})


@pytest.mark.parametrize(("lp_shift", "step_scale", "stuck"), [
    (0.0, 1.0, False), (-6.0, 1.0, False), (+30.0, 1.0, False), (-12.0, 1.0, True),
    (0.0, 0.05, False), (0.0, 0.005, True),
])
def test_a_chain_is_stuck_by_its_step_size_or_a_log_density_far_below(lp_shift, step_scale,
                                                                      stuck):
    found = stuck_chains(_stats_tree(lp_shift, step_scale)).values
    assert found.tolist() == [False, False, False, stuck]
