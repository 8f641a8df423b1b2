"""The study runner: seeds by dataset index, storage per batch, interrupt-and-resume."""

import jax
import numpy as np
import pytest
import xarray as xr

import hjax as hj

SMALL = dict(chains=2, warmup=100, draws=100, max_rank=19)


@pytest.fixture(scope="module")
def small():
    return hj.catalog.varying_intercept(groups=4, per_group=5)


class Interrupted(Exception):
    pass


def _stop_after(n_datasets):
    def on_batch(done, total):
        if done == n_datasets:
            raise Interrupted

    return on_batch


def test_interrupted_run_resumes_to_identical_results(small, tmp_path):
    model, design = small
    key = jax.random.key(7)
    run = dict(n_datasets=6, key=key, batch_size=2, **SMALL)
    full = hj.sbc(model, design, **run)
    with pytest.raises(Interrupted):
        hj.sbc(model, design, directory=tmp_path, on_batch=_stop_after(4), **run)
    assert len(list(tmp_path.glob("batch-*.nc"))) == 2
    resumed = hj.sbc(model, design, directory=tmp_path, **run)
    assert resumed["dataset"].values.tolist() == list(range(6))
    xr.testing.assert_equal(resumed["rank"], full["rank"])
    xr.testing.assert_allclose(resumed["mean"], full["mean"])
    assert len(list(tmp_path.glob("batch-*.nc"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_results_do_not_depend_on_batch_size(small):
    model, design = small
    key = jax.random.key(3)
    a = hj.sbc(model, design, n_datasets=4, key=key, batch_size=2, **SMALL)
    b = hj.sbc(model, design, n_datasets=4, key=key, batch_size=4, **SMALL)
    np.testing.assert_array_equal(a.simulated_value, b.simulated_value)
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # each transition is BlackJAX's already (tests/inference/test_lanes.py)
def test_studies_run_either_sampler_to_the_same_results(small):
    """The lanes sampler and the BlackJAX reference make the same transitions (in float64;
    over long runs rounding differences grow, as chains are chaotic)."""
    model, design = small
    run = dict(n_datasets=2, key=jax.random.key(4), batch_size=2, chains=2, warmup=8, draws=8,
               max_rank=7)
    with jax.enable_x64(True):
        lanes = hj.sbc(model, design, sampler="nuts", lanes=3, **run)
        reference = hj.sbc(model, design, sampler="blackjax", **run)
    np.testing.assert_allclose(lanes["mean"], reference["mean"], rtol=1e-8)
    xr.testing.assert_equal(lanes["rank"], reference["rank"])
    with pytest.raises(ValueError, match="lanes applies to sampler='nuts'"):
        hj.sbc(model, design, sampler="blackjax", lanes=3, **run)


def test_directory_of_another_study_is_refused(small, tmp_path):
    model, design = small
    hj.sbc(model, design, n_datasets=2, key=jax.random.key(0), batch_size=2,
           directory=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="holds a different study; it differs in settings.draws"):
        hj.sbc(model, design, n_datasets=2, key=jax.random.key(0), batch_size=2,
               directory=tmp_path, **{**SMALL, "draws": 120})


def test_table_has_one_row_per_dataset_and_scalar(small):
    model, design = small
    table = hj.sbc(model, design, n_datasets=3, key=jax.random.key(1), batch_size=2, **SMALL)
    # b0, sigma, u_sd, u[0..3]; the first fit and up to two refits (the default policy).
    assert table.sizes == {"dataset": 3, "variable": 3 + 4, "attempt": 3}
    assert set(table.parameter.values) == {"b0", "sigma", "u_sd", "u"}
    for column in ["rank", "max_rank", "z_score", "simulated_value", "contraction",
                   "covered_95", "divergences", "max_rhat", "min_ess_bulk", "attempts", "passed",
                   "attempt_max_rhat", "attempt_divergences"]:
        assert column in table, column
    # 2 chains x 100 draws thinned by 12 keeps L = 18 <= max_rank = 19 draws per fit.
    assert np.all(table.max_rank == 18) and bool((table["rank"] <= table.max_rank).all())


def test_recover_holds_given_values(small):
    model, design = small
    table = hj.recover(model, design, key=jax.random.key(2), given={"sigma": 0.5},
                       grid={"u_sd": [0.1, 2.0]}, replicates=2, batch_size=4, **{
                           k: v for k, v in SMALL.items() if k != "max_rank"})
    assert table.held_u_sd.values.tolist() == [0.1, 0.1, 2.0, 2.0]
    np.testing.assert_allclose(table.simulated_value.sel(variable="sigma"), 0.5)
    np.testing.assert_allclose(table.simulated_value.sel(variable="u_sd"), [0.1, 0.1, 2, 2])


def test_recover_reports_shrinkage_stronger_for_small_groups():
    model, design = hj.catalog.varying_intercept(groups=6, per_group=[1, 1, 2, 2, 30, 30])
    table = hj.recover(model, design, key=jax.random.key(5), given={"u_sd": 0.5, "sigma": 1.0},
                       replicates=8, batch_size=8, shrinkage="u",
                       **{k: v for k, v in SMALL.items() if k != "max_rank"})
    assert table.group_size.isel(dataset=0).values.tolist() == [1, 1, 2, 2, 30, 30]
    fractions = hj.studies.recover.shrinkage_table(table)
    small = np.nanmedian(fractions.shrinkage.values[fractions.group_size.values <= 2])
    large = np.nanmedian(fractions.shrinkage.values[fractions.group_size.values == 30])
    # Normal hierarchy: fraction ~ sigma^2 / (sigma^2 + n tau^2), 0.8 for n = 1 and 0.12 for 30
    # at the true tau (more at the posterior's, with only 6 groups to learn tau from).
    assert small > 0.6 and large < 0.45 and small - large > 0.3, (small, large)


def test_recover_contraction_does_not_depend_on_batch_size(small):
    """Contraction divides by each parameter's prior variance over prior draws: the same for
    every batch, finite for the parameters a recovery holds fixed. (Float64: the two batch
    sizes compile two programs, whose float32 roundings a chain could amplify past rtol.)"""
    model, design = small
    run = dict(key=jax.random.key(2), given={"sigma": 0.5}, grid={"u_sd": [0.3, 1.0]},
               replicates=2, chains=2, warmup=100, draws=100)
    with jax.enable_x64(True):
        two = hj.recover(model, design, batch_size=2, **run)
        four = hj.recover(model, design, batch_size=4, **run)
    np.testing.assert_allclose(two.contraction, four.contraction, rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(two.contraction.values))
    assert float(two.contraction.sel(variable="sigma").min()) > 0.5  # held, and well informed
