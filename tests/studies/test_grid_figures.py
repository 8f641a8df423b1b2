"""Figures and report of grid recovery studies: per grid point, implied shrinkage, ticks."""

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg

from hjax import catalog
from hjax.studies.metrics import grid_points, implied_shrinkage, shrinkage
from hjax.studies.plots import plot_recovery, plot_shrinkage
from hjax.studies.ranks import sbc_ranks
from hjax.studies.recover import group_means, shrinkage_table
from hjax.studies.report import write_report

U_SD = [0.2, 0.5, 1.0]
SIZES = np.array([2, 2, 5, 5, 10, 10, 20, 20, 40, 40])


@pytest.fixture
def grid_table(study):
    """A 90-dataset study table whose datasets are three grid points of u_sd, b0 held at 0.5."""
    table = sbc_ranks(*study(n_datasets=90, seed=4))
    return table.assign_coords(held_u_sd=("dataset", np.repeat(U_SD, 30)),
                               held_b0=("dataset", np.full(90, 0.5)))


def recovery_like(*, held_sigma: bool, replicates: int = 4, seed: int = 0) -> xr.Dataset:
    """What `recover(..., grid={"u_sd": U_SD}, shrinkage="u")` returns, in miniature.

    Posterior group means are exact for known sigma and u_sd (the normal-hierarchy weights),
    so each pooling fraction equals the implied one of its dataset's sds.
    """
    rng = np.random.default_rng(seed)
    u_sd = np.repeat(U_SD, replicates)
    n = u_sd.size
    sigma_mean = 1.0 + rng.uniform(-0.2, 0.2, n)  # the posterior means of sigma
    b0 = 0.5 + rng.normal(0, 0.1, n)
    observed = b0[:, None] + rng.normal(0, 1, (n, SIZES.size))
    weight = implied_shrinkage(SIZES, sigma_mean[:, None], u_sd[:, None])
    posterior = weight * b0[:, None] + (1 - weight) * observed
    dims = ("dataset", "group")
    table = xr.Dataset(
        {"observed_group_mean": (dims, observed),
         "group_size": (dims, np.broadcast_to(SIZES, observed.shape)),
         "posterior_group_mean": (dims, posterior),
         "posterior_population_mean": ("dataset", b0),
         # The posterior u_sd is off on purpose: a held value must win over it.
         "posterior_scale_mean": (("dataset", "shrinkage_scale"),
                                  np.stack([u_sd * 1.1, sigma_mean], axis=1))},
        coords={"dataset": np.arange(n), "shrinkage_scale": ["group_sd", "noise_sd"],
                "shrinkage_scale_parameter": ("shrinkage_scale", ["u_sd", "sigma"]),
                "held_u_sd": ("dataset", u_sd), "held_b0": ("dataset", np.full(n, 0.5))},
    )
    if held_sigma:
        table = table.assign_coords(held_sigma=("dataset", np.ones(n)))
    return table


def suptitles(fig):
    return [sub.get_suptitle() for sub in fig.subfigs]


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


def test_grid_points_keep_the_grid_order_and_only_varying_values():
    table = xr.Dataset(coords={"held_u_sd": ("dataset", [1.0, 1.0, 0.2, 0.2]),
                               "held_b0": ("dataset", [0.5, 0.5, 0.5, 0.5]),
                               "held_k": ("dataset", [1.0, 2.0, 1.0, 2.0])})
    points = grid_points(table)
    assert [label for label, _ in points] == ["u_sd = 1, k = 1", "u_sd = 1, k = 2",
                                              "u_sd = 0.2, k = 1", "u_sd = 0.2, k = 2"]
    np.testing.assert_array_equal(np.stack([m for _, m in points]), np.eye(4, dtype=bool))
    ((label, mask),) = grid_points(table.drop_vars(["held_u_sd", "held_k"]))
    assert label == "" and mask.all()


def test_held_values_drawn_per_dataset_are_not_a_grid():
    table = xr.Dataset(coords={"held_b0": ("dataset", np.linspace(-1.0, 1.0, 20))})
    ((label, mask),) = grid_points(table)
    assert label == "" and mask.all()
    assert len(grid_points(table, max_points=20)) == 20


def test_implied_shrinkage_is_the_normal_hierarchy_weight():
    n = np.array([1, 4, 16])
    np.testing.assert_allclose(implied_shrinkage(n, 2.0, 1.0), [4 / 5, 1 / 2, (1 / 4) / (5 / 4)])
    result = shrinkage(np.array([1.0, 2.0, 3.0]), n, np.zeros(3), 0.0, noise_sd=2.0, group_sd=1.0)
    np.testing.assert_allclose(result["implied_shrinkage"], [0.8, 0.5, 0.2])
    with pytest.raises(ValueError, match="both noise_sd and group_sd"):
        shrinkage(np.ones(3), n, np.zeros(3), 0.0, noise_sd=2.0)


@pytest.mark.parametrize("held_sigma", [True, False])
def test_shrinkage_table_keeps_datasets_grid_and_the_sds_of_the_curve(held_sigma):
    table = recovery_like(held_sigma=held_sigma)
    result = shrinkage_table(table)
    assert result.sizes["group"] == table.sizes["dataset"] * SIZES.size
    np.testing.assert_array_equal(result["dataset"], np.repeat(table["dataset"], SIZES.size))
    np.testing.assert_array_equal(result["held_u_sd"], np.repeat(table["held_u_sd"], SIZES.size))
    # Held values where held, else the dataset's posterior mean: never the posterior u_sd here.
    np.testing.assert_allclose(result["group_sd"], result["held_u_sd"])
    sigma = np.ones(12) if held_sigma else table["posterior_scale_mean"].values[:, 1]
    np.testing.assert_allclose(result["noise_sd"], np.repeat(sigma, SIZES.size))
    assert result["noise_sd"].attrs == {"parameter": "sigma",
                                        "source": "held" if held_sigma else "posterior mean"}
    if not held_sigma:  # the simulated posteriors pool exactly as the dataset's sds imply
        np.testing.assert_allclose(result["shrinkage"], result["implied_shrinkage"])


def test_shrinkage_table_survives_batches_combined_without_attrs():
    table = recovery_like(held_sigma=False)
    halves = [table.isel(dataset=slice(0, 5)), table.isel(dataset=slice(5, None))]
    combined = xr.concat(halves, dim="dataset", combine_attrs="drop")
    xr.testing.assert_identical(shrinkage_table(combined), shrinkage_table(table))
    assert "implied_shrinkage" in shrinkage_table(combined)


def test_a_fixed_group_sd_is_used_as_is():
    table = recovery_like(held_sigma=True).drop_vars("held_u_sd")
    table = table.assign_coords(shrinkage_scale_parameter=("shrinkage_scale", ["", "sigma"]))
    table["posterior_scale_mean"][:, 0] = 0.7
    result = shrinkage_table(table)
    np.testing.assert_allclose(result["group_sd"], 0.7)
    assert result["group_sd"].attrs == {"parameter": "group_sd", "source": "fixed"}


def test_group_means_hook_reports_means_sizes_and_scales():
    model, design = catalog.varying_intercept(groups=3, per_group=[1, 2, 3])
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 6))
    draws = {"b0": rng.normal(size=(2, 1, 5)), "u": rng.normal(size=(2, 1, 5, 3)),
             "u_sd": rng.uniform(0.5, 1.0, (2, 1, 5)), "sigma": rng.uniform(1, 2, (2, 1, 5))}
    posterior = xr.Dataset({k: (("dataset", "chain", "draw", "group")[:v.ndim], v)
                            for k, v in draws.items()})
    fit = SimpleNamespace(posterior=SimpleNamespace(to_dataset=lambda: posterior))
    data = {"group": np.tile(design["group"], (2, 1)), "y": y}
    out = group_means(model, "u")(fit, data, np.array([4, 5]))
    np.testing.assert_allclose(out["observed_group_mean"][1], [y[1, 0], y[1, 1:3].mean(),
                                                                y[1, 3:].mean()])
    np.testing.assert_array_equal(out["group_size"][0], [1, 2, 3])
    b0 = draws["b0"].mean((1, 2))
    np.testing.assert_allclose(out["posterior_group_mean"],
                               draws["u"].mean((1, 2)) + b0[:, None], rtol=1e-6)
    np.testing.assert_allclose(out["posterior_scale_mean"].sel(shrinkage_scale="noise_sd"),
                               draws["sigma"].mean((1, 2)))
    assert list(out["shrinkage_scale_parameter"].values) == ["u_sd", "sigma"]
    assert list(out["dataset"].values) == [4, 5]


def test_shrinkage_table_without_scales_draws_no_curve():
    table = recovery_like(held_sigma=True).drop_vars(
        ["posterior_scale_mean", "shrinkage_scale", "shrinkage_scale_parameter"])
    result = shrinkage_table(table)
    assert "implied_shrinkage" not in result
    fig = plot_shrinkage(result)
    assert not [line for ax in fig.axes for line in ax.lines
                if line.get_label().startswith("implied")]


def test_recovery_plot_has_one_titled_row_per_grid_point(grid_table, tmp_path):
    fig = plot_recovery(grid_table, path=tmp_path / "recovery.png")
    assert suptitles(fig) == ["u_sd = 0.2", "u_sd = 0.5", "u_sd = 1"]
    for sub, u_sd in zip(fig.subfigs, U_SD, strict=True):
        axes = [ax for ax in sub.axes if ax.axison]
        assert [ax.get_title().split("\n")[0] for ax in axes] == ["mu", "theta"]
        # Each row shows only its grid point's datasets: 30 of them, 3 groups for theta.
        points = sum(len(line.get_xdata()) for line in axes[1].lines if line.get_marker() == "o")
        assert points == 30 * 3, u_sd
    assert (tmp_path / "recovery.png").is_file()


def test_recovery_plot_without_a_grid_has_no_grid_titles(grid_table):
    fig = plot_recovery(grid_table.drop_vars("held_u_sd"))
    assert fig.subfigs == [] and len(visible_axes(fig)) == 2
    assert all(not text.get_text() for text in fig.texts)


def implied_curves(fig):
    return [line for ax in fig.axes for line in ax.lines if line.get_label().startswith("implied")]


@pytest.mark.parametrize("held_sigma", [True, False])
def test_shrinkage_plot_per_grid_point_with_the_implied_curve(held_sigma):
    table = recovery_like(held_sigma=held_sigma)
    fig = plot_shrinkage(shrinkage_table(table))
    assert suptitles(fig) == ["u_sd = 0.2", "u_sd = 0.5", "u_sd = 1"]
    assert len(visible_axes(fig)) == 2 * len(U_SD)
    curves = implied_curves(fig)
    assert len(curves) == len(U_SD)
    for line, u_sd, sub in zip(curves, U_SD, fig.subfigs, strict=True):
        rows = table["held_u_sd"].values == u_sd
        # Posterior means of sigma are averaged over the grid point's datasets.
        sigma = 1.0 if held_sigma else table["posterior_scale_mean"].values[rows, 1].mean()
        n, y = line.get_data()
        for at in (2.0, 10.0, 40.0):
            expected = (sigma**2 / at) / (sigma**2 / at + u_sd**2)
            np.testing.assert_allclose(np.interp(np.log(at), np.log(n), y), expected, rtol=2e-3)
        title = line.axes.get_title()
        assert f"u_sd = {u_sd:.3g} (held)" in title
        assert ("sigma = 1 (held)" if held_sigma else "(posterior mean)") in title
        assert line.axes in sub.axes


def test_shrinkage_plot_of_one_dataset_is_a_plain_pair():
    result = shrinkage(np.array([2.0, -1.0, 0.5]), np.array([3, 30, 10]),
                       np.array([1.0, -0.9, 0.4]), 0.0)
    fig = plot_shrinkage(result)
    assert fig.subfigs == [] and len(visible_axes(fig)) == 2
    assert not implied_curves(fig)


def tick_label_boxes(ax, renderer):
    labels = [t for t in ax.get_xticklabels(minor=False) + ax.get_xticklabels(minor=True)
              if t.get_visible() and t.get_text()]
    return [t.get_text() for t in labels], [t.get_window_extent(renderer) for t in labels]


@pytest.mark.parametrize("sizes", [SIZES, np.arange(1, 201), np.arange(3, 9), np.arange(11, 21)])
def test_group_size_ticks_are_plain_integers_that_do_not_overlap(sizes):
    rng = np.random.default_rng(1)
    observed = rng.normal(size=sizes.size)
    fig = plot_shrinkage(shrinkage(observed, sizes, 0.5 * observed, 0.0, noise_sd=1.0,
                                   group_sd=0.5))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    size_axis = next(ax for ax in fig.axes if ax.get_xlabel() == "group size")
    texts, boxes = tick_label_boxes(size_axis, renderer)
    assert len(texts) >= 2
    assert all(text.isdigit() for text in texts), texts  # no "2x10^0"
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)


def test_grid_report_has_metrics_per_grid_point_and_explains_the_curve(grid_table, tmp_path):
    pooled = shrinkage_table(recovery_like(held_sigma=True))
    text = write_report(tmp_path, grid_table, calibration=False, shrinkage=pooled).read_text()
    assert "over 3 grid points (u_sd = 0.2; u_sd = 0.5; u_sd = 1; 30 datasets each)" in text
    assert "| grid point | parameter | bias |" in text
    for label in ("u_sd = 0.2", "u_sd = 0.5", "u_sd = 1", "all"):
        assert f"| {label} | mu |" in text and f"| {label} | theta |" in text
    assert "one row per grid point" in text
    assert "sigma held and u_sd held" in text
    assert "One column of panels per grid point" in text


def test_report_without_a_grid_has_no_grid_column(grid_table, tmp_path):
    table = grid_table.drop_vars("held_u_sd")
    text = write_report(tmp_path, table, calibration=False).read_text()
    assert "grid point" not in text
    assert "| parameter | bias |" in text
