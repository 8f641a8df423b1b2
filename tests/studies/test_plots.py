import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from hjax.studies.calibration import uniformity_test
from hjax.studies.metrics import shrinkage
from hjax.studies.plots import plot_ecdf_diff, plot_rank_hist, plot_recovery, plot_shrinkage
from hjax.studies.ranks import sbc_ranks
from hjax.studies.report import write_report

PNG_MAGIC = b"\x89PNG"


@pytest.fixture
def table(study):
    """A study where `mu` is calibrated and every `theta` posterior is twice too narrow."""
    return sbc_ranks(*study(n_datasets=100, sd_scale=0.5, wrong=("theta",), seed=2))


def is_png(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:4] == PNG_MAGIC


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


@pytest.mark.parametrize(("plot", "panels"), [
    (plot_ecdf_diff, 2),   # one per parameter: mu, theta
    (plot_rank_hist, 4),   # one per variable
    (plot_recovery, 2),
])
def test_study_plots_write_pngs(table, tmp_path, plot, panels):
    path = tmp_path / "figs" / "plot.png"
    fig = plot(table, path=path)
    assert isinstance(fig, Figure)
    assert len(visible_axes(fig)) == panels
    assert is_png(path)


def test_ecdf_plot_draws_one_line_per_variable(table):
    fig = plot_ecdf_diff(table, parameters=["theta"])
    (ax,) = visible_axes(fig)
    assert [line.get_label() for line in ax.lines if line.get_label().startswith("theta")] == [
        "theta[A]", "theta[B]", "theta[C]"]


def test_unknown_parameter_is_refused(table):
    with pytest.raises(ValueError, match="Unknown parameters"):
        plot_recovery(table, parameters=["sigma"])


def test_shrinkage_plot(tmp_path):
    result = shrinkage(np.array([2.0, -1.0, 0.5]), np.array([3, 30, 10]),
                       np.array([1.0, -0.9, 0.4]), 0.0)
    fig = plot_shrinkage(result, path=tmp_path / "shrinkage.png")
    assert len(visible_axes(fig)) == 2
    assert is_png(tmp_path / "shrinkage.png")


def test_report_names_rejected_parameters_and_links_existing_figures(table, tmp_path):
    diagnostics = xr.Dataset({"divergences": ("dataset", np.r_[3, 1, np.zeros(98, int)]),
                              "max_rhat": ("dataset", np.full(100, 1.004)),
                              "min_ess_bulk": ("dataset", np.full(100, 350.0))})
    result = shrinkage(np.array([2.0, -1.0]), np.array([3, 30]), np.array([1.0, -0.9]), 0.0)
    path = write_report(tmp_path / "out", table, diagnostics=diagnostics, shrinkage=result)
    text = path.read_text()
    assert path.name == "report.md"
    rejected_line = next(line for line in text.splitlines() if line.startswith("**Rejected"))
    assert rejected_line == "**Rejected: theta[A], theta[B], theta[C].**"
    assert "| fits with divergences | 2 |" in text
    assert "| draws with a divergence | 4 |" in text
    assert "| max R-hat | 1.004 |" in text
    assert "all 100 datasets" in text
    links = [line.split("](")[1].rstrip(")") for line in text.splitlines() if "](" in line]
    assert set(links) == {"sbc_ecdf_diff.png", "sbc_ranks.png", "recovery.png", "shrinkage.png"}
    assert all(is_png(path.parent / link) for link in links)


def test_report_says_none_rejected_for_a_calibrated_study(study, tmp_path):
    table = sbc_ranks(*study(n_datasets=100, seed=3))
    test = uniformity_test(table)
    assert not test["rejected"].any()
    # Per-fit diagnostics merged into the table (as the study runner does) are reported.
    table["init_failures"] = ("dataset", np.r_[1, np.zeros(99, int)])
    text = write_report(tmp_path, table, test=test).read_text()
    assert "**Rejected: none.**" in text
    assert "| chains that failed to initialize | 1 |" in text
    assert "divergen" not in text.split("## Fit diagnostics")[1].split("Failed")[0]
