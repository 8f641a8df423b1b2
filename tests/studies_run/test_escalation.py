"""Fits that fail their diagnostics are refitted with stronger settings, batched; every attempt
is recorded; refits depend on their dataset alone (batch size, resume); the report shows the
calibration of all fits beside that of the passing ones."""

import jax
import numpy as np
import pytest
import xarray as xr

import hjax as hj
from hjax.inference.workflow.diagnostics import DIAGNOSTICS, warn_problems

# Short warmup: many first fits fail a strict R-hat, and their refits get 2x and 4x warmup
# and 2x and 4x longer chains (thinned to the same draws).
RUN = dict(n_datasets=6, chains=2, warmup=40, draws=60, max_rank=19,
           escalation={"attempts": 2, "max_rhat": 1.05, "min_ess_bulk": 20})


@pytest.fixture(scope="module")
def small():
    return hj.catalog.varying_intercept(groups=4, per_group=5)


@pytest.fixture(scope="module")
def table(small):
    model, design = small
    return hj.sbc(model, design, key=0, batch_size=3, **RUN)


@pytest.mark.xdist_group("escalation_table")  # one worker builds the module fixture once
def test_every_attempt_is_recorded_with_its_settings(table):
    assert table["attempt_warmup"].values.tolist() == [40, 80, 160]
    assert table["attempt_target_accept"].values.tolist() == [0.8, 0.9, 0.95]
    assert table["attempt_thin"].values.tolist() == [1, 2, 4]
    made = table["attempts"].values
    assert 1 < made.max() <= 3 and made.min() >= 1  # some fits were refitted
    rhat = table["attempt_max_rhat"].values
    for d, n in enumerate(made):
        assert np.all(np.isfinite(rhat[d, :n])) and np.all(np.isnan(rhat[d, n:]))
        # Refitted because the attempt before failed the policy (here: R-hat or ESS).
        for k in range(n - 1):
            failed = (rhat[d, k] > 1.05 or table["attempt_min_ess_bulk"].values[d, k] < 20
                      or table["attempt_divergences"].values[d, k] > 0)
            assert failed, (d, k)
        # The table's diagnostics are those of the last attempt.
        assert rhat[d, n - 1] == pytest.approx(float(table["max_rhat"][d]))
    passed = (table["max_rhat"] <= 1.05) & (table["min_ess_bulk"] >= 20) & (
        table["divergences"] == 0) & (table["init_failures"] == 0)
    np.testing.assert_array_equal(table["passed"].values, passed.values)


def test_refits_do_not_depend_on_batch_size_or_on_resuming(small, tmp_path):
    """In float64 (where another chunk width does not round differently), refitted datasets
    get the same draws whatever batch they are in, and after an interruption."""
    model, design = small
    with jax.enable_x64(True):
        two = hj.sbc(model, design, key=1, batch_size=2, **RUN)
        six = hj.sbc(model, design, key=1, batch_size=6, **RUN)

        class Stop(Exception):
            pass

        def stop_after_first(done, total):
            if done == 2:
                raise Stop

        with pytest.raises(Stop):
            hj.sbc(model, design, key=1, batch_size=2, directory=tmp_path,
                   on_batch=stop_after_first, **RUN)
        resumed = hj.sbc(model, design, key=1, batch_size=2, directory=tmp_path, **RUN)
    assert int((two["attempts"] > 1).sum()) > 0
    for other in (six, resumed):
        np.testing.assert_array_equal(other["attempts"], two["attempts"])
        np.testing.assert_allclose(other["mean"], two["mean"], rtol=1e-9)
        xr.testing.assert_equal(other["rank"], two["rank"])


@pytest.mark.xdist_group("escalation_table")  # one worker builds the module fixture once
def test_report_shows_escalation_and_the_passing_fits_calibration(table, tmp_path):
    mixed = table.assign(passed=("dataset", np.arange(6) % 2 == 0))
    report = hj.write_report(tmp_path, mixed).read_text()
    assert "fits refitted with stronger settings (up to 2 times)" in report
    # R-hat is judged by the limit the study used, not the default.
    assert mixed.attrs["rhat_limit"] == 1.05
    assert "share with R-hat > 1.05: first fit / after refits" in report
    assert "The same test over the 3 fits that pass their diagnostics (of 6)" in report


def test_sample_refits_only_when_asked(small):
    model, design = small
    prepared = model.prepare(design, observed=False)
    _, data = jax.jit(model.simulate)(jax.random.key(0), prepared)
    plain = hj.sample(model, data, key=0, chains=2, warmup=40, draws=60, warn=False)
    assert int(plain.fit_stats["attempts"]) == 1
    assert plain.fit_stats.sizes["attempt"] == 1


def test_sample_keeps_the_returned_draws_diagnostics(small):
    """`fit_stats` holds `hj.diagnose` of the draws returned (refitted rows included), which
    the warnings and the study tables use instead of diagnosing again."""
    model, design = small
    prepared = model.prepare(design, observed=False)
    batch = jax.vmap(lambda k: model.simulate(k, prepared)[1])(
        jax.random.split(jax.random.key(2), 6))
    fit = hj.sample(model, batch, key=3, chains=2, warmup=40, draws=60, warn=False,
                    escalation={"attempts": 1, "max_rhat": 1.05, "min_ess_bulk": 20})
    assert int((fit.fit_stats["attempts"] > 1).sum()) > 0  # some rows were replaced
    fresh = hj.diagnose(fit)
    stored = fit.fit_stats.to_dataset()
    assert set(fresh.data_vars) == set(DIAGNOSTICS)
    for name in DIAGNOSTICS:
        np.testing.assert_allclose(stored[name].values, fresh[name].values, rtol=1e-12,
                                   err_msg=name)
    one = hj.sample(model, {k: v[0] for k, v in batch.items()}, key=3, chains=2, warmup=40,
                    draws=60, warn=False)
    with pytest.warns(UserWarning) as issued:
        messages = warn_problems(one, one.fit_stats.to_dataset()[list(DIAGNOSTICS)])
    assert messages and messages == hj.check(one)  # 2 x 60 draws: too few effective draws
    assert [str(w.message) for w in issued] == messages
