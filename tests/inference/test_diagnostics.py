"""Diagnostics are data: numbers per dataset, a summary table, and warnings with a remedy."""

import warnings

import numpy as np
import pytest
import xarray as xr
from arviz_base import rcParams
from arviz_stats.base import array_stats

import hjax as hj
from hjax.inference import check, diagnose, summary
from hjax.inference.workflow.diagnostics import warn_problems


def _tree(stuck_dataset=None, divergent_dataset=None, datasets=4, chains=4, draws=400,
          levels=None):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(datasets, chains, draws))
    theta = rng.normal(size=(datasets, chains, draws, 3))
    if stuck_dataset is not None:  # one chain far from the others: R-hat >> 1
        mu[stuck_dataset, 0] += 5.0
    diverging = np.zeros((datasets, chains, draws), bool)
    if divergent_dataset is not None:
        diverging[divergent_dataset, 1, :12] = True
    lead = ("dataset", "chain", "draw")
    attrs = {"target_accept": 0.8, "max_tree_depth": 10} | (levels or {})
    posterior = xr.Dataset({"mu": (lead, mu), "theta": (lead + ("g",), theta)},
                           coords={"g": ["a", "b", "c"]}, attrs=attrs)
    stats = xr.Dataset({"diverging": (lead, diverging),
                        "tree_depth": (lead, np.full(diverging.shape, 3))})
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def test_clean_fits_have_no_messages():
    tree = _tree()
    assert check(tree) == []
    diag = diagnose(tree)
    assert diag.sizes["dataset"] == 4
    assert float(diag.max_rhat.max()) < 1.01
    assert float(diag.min_ess_bulk.min()) > 400


def test_divergences_are_counted_per_dataset_and_named():
    tree = _tree(divergent_dataset=3)
    diag = diagnose(tree)
    np.testing.assert_array_equal(diag.divergences.values, [0, 0, 0, 12])
    (message,) = check(tree)
    assert "12 divergences in dataset 3" in message and "target_accept" in message


@pytest.mark.parametrize(("levels", "advice"), [
    ({"levels_centered": "theta", "levels_non_centered": "u"},
     "make the centered levels non-centered (centered=False: theta)"),
    ({"levels_centered": "", "levels_non_centered": "u, v"},
     "the levels are non-centered already (u, v)"),
    ({"levels_centered": "", "levels_non_centered": ""}, "a parameter driven to the edge"),
])
def test_divergence_advice_fits_the_models_levels(levels, advice):
    (message,) = check(_tree(divergent_dataset=0, levels=levels))
    assert advice in message


def test_a_fit_records_its_levels_parameterization():
    model, design = hj.catalog.eight_schools()
    fit = hj.sample(model, design | {"y": np.zeros(8)}, key=0, chains=2, warmup=100, draws=50,
                    warn=False)
    assert fit.posterior.attrs["levels_non_centered"] == "theta"
    assert fit.posterior.attrs["levels_centered"] == ""


def test_unmixed_chains_give_rhat_warning():
    tree = _tree(stuck_dataset=1)
    diag = diagnose(tree)
    assert float(diag.max_rhat[1]) > 1.1 and float(diag.max_rhat[0]) < 1.01
    with pytest.warns(UserWarning, match=r"R-hat .* in dataset 1"):
        warn_problems(tree)


def test_warnings_are_not_exceptions():
    tree = _tree(stuck_dataset=0, divergent_dataset=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages = warn_problems(tree)
    assert len(messages) >= 2 and len(caught) == len(messages)


def test_summary_rows_and_values():
    tree = _tree(datasets=2)
    table = summary(tree)
    assert list(table.index.names) == ["dataset", "param"]
    assert len(table) == 2 * 4  # mu and theta[a..c] per dataset
    row = table.loc[(1, "theta[b]")]
    values = tree.posterior["theta"].sel(dataset=1, g="b").values
    np.testing.assert_allclose(row["mean"], values.mean())
    np.testing.assert_allclose(row["sd"], values.std(ddof=1))
    assert {"mcse_mean", "ess_bulk", "ess_tail", "r_hat", "q5", "q95"} <= set(table.columns)
    single = summary(xr.DataTree.from_dict(
        {"posterior": tree.posterior.to_dataset().isel(dataset=0)}))
    assert "mu" in single.index and "theta[c]" in single.index


def test_summary_diagnostics_are_arviz_stats_of_each_series():
    tree = _tree(datasets=2, stuck_dataset=1)
    table = summary(tree)
    posterior = tree.posterior
    for (dataset, label), row in table.iterrows():
        name, _, group = label.partition("[")
        series = posterior[name].sel(dataset=dataset)
        if group:
            series = series.sel(g=group.rstrip("]"))
        values = series.transpose("chain", "draw").values
        expected = [array_stats.rhat(values), array_stats.ess(values, method="bulk"),
                    array_stats.ess(values, method="tail", prob=rcParams["stats.ci_prob"])]
        np.testing.assert_allclose(row[["r_hat", "ess_bulk", "ess_tail"]].to_numpy(float),
                                   expected, rtol=1e-10, err_msg=f"dataset {dataset}, {label}")
