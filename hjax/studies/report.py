"""A study's report: report.md with calibration, recovery and fit diagnostics, plus its PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from hjax.studies.calibration import uniformity_test
from hjax.studies.metrics import recovery_metrics
from hjax.studies.plots import plot_ecdf_diff, plot_rank_hist, plot_recovery, plot_shrinkage

__all__ = ["write_report"]

MAX_ROWS = 40  # per-variable tables longer than this are summarized per parameter only
MAX_RANK_PANELS = 24
DIAGNOSTIC_ROWS = (  # key in `hj.diagnose` output, label, summary over fits
    ("treedepth_hits", "transitions at max tree depth", lambda v: int(v.sum())),
    ("init_failures", "chains that failed to initialize", lambda v: int(v.sum())),
    ("max_rhat", "max R-hat", lambda v: float(np.nanmax(v))),
    ("min_ess_bulk", "min bulk ESS", lambda v: float(np.nanmin(v))),
    ("min_ess_tail", "min tail ESS", lambda v: float(np.nanmin(v))),
)
DIAGNOSTIC_KEYS = ("divergences", *(key for key, _, _ in DIAGNOSTIC_ROWS))


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    def cell(value) -> str:
        if isinstance(value, bool | np.bool_):
            return "**yes**" if value else "no"
        if isinstance(value, float | np.floating):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _p(value) -> str | float:
    # The ECDF test's p-value is 1 - P(inside), exact only to about 1e-15.
    return "< 1e-12" if value < 1e-12 else float(value)


def _calibration(table: xr.Dataset, test: xr.Dataset, directory: Path) -> list[str]:
    rejected = list(test["variable"].values[test["rejected"].values])
    lines = ["## Calibration (SBC)", "",
             f"Uniformity of the ranks over {table.sizes['dataset']} datasets: "
             f"{test.attrs.get('method', '?')} test, {test.attrs.get('correction', '?')} "
             f"correction across {test.sizes['variable']} variables, family-wise level "
             f"{test.attrs.get('alpha', '?')}. Ranks use "
             f"{', '.join(map(str, np.unique(table['max_rank'].values)))} thinned draws per fit.",
             ""]
    lines.append("**Rejected: " + (", ".join(rejected) if rejected else "none") + ".**")
    lines.append("")
    per_parameter = []
    for name in dict.fromkeys(test["parameter"].values):
        part = test.isel(variable=test["parameter"].values == name)
        per_parameter.append((name, part.sizes["variable"], int(part["rejected"].sum()),
                              _p(part["p_adjusted"].min())))
    lines += _table(["parameter", "variables", "rejected", "smallest adjusted p"], per_parameter)
    if test.sizes["variable"] <= MAX_ROWS:
        lines += _table(["variable", "p-value", "adjusted p", "rejected"],
                        [(v, _p(p), _p(q), bool(r)) for v, p, q, r in zip(
                            test["variable"].values, test["p_value"].values,
                            test["p_adjusted"].values, test["rejected"].values, strict=True)])
    plot_ecdf_diff(table, prob=1 - test.attrs.get("alpha", 0.01),
                   path=directory / "sbc_ecdf_diff.png")
    # Rejected variables first, so the panels that need looking at are never cut off.
    shown = (rejected + [v for v in table["variable"].values if v not in rejected])
    plot_rank_hist(table, variables=shown[:MAX_RANK_PANELS], path=directory / "sbc_ranks.png")
    lines += ["![ECDF difference of the ranks with simultaneous bands](sbc_ecdf_diff.png)", "",
              "![Rank histograms with 99 % binomial bands](sbc_ranks.png)", ""]
    if len(shown) > MAX_RANK_PANELS:
        lines += [f"(Rank histograms of the first {MAX_RANK_PANELS} of {len(shown)} variables, "
                  "rejected ones first.)", ""]
    return lines


def _recovery(table: xr.Dataset, directory: Path) -> list[str]:
    lines = ["## Recovery", "",
             "Posterior mean against simulated value over datasets; coverage is the fraction of "
             "central intervals holding the simulated value.", ""]
    header = ["bias", "rmse", "correlation", "coverage_50", "coverage_80", "coverage_95"]
    tables = [recovery_metrics(table, by="parameter")]
    # Per-variable rows only add something for vector parameters, and only while readable.
    if tables[0].sizes["parameter"] < table.sizes["variable"] <= MAX_ROWS:
        tables.append(recovery_metrics(table, by="variable"))
    for metrics in tables:
        (by,) = metrics.dims
        lines += _table([by, *header], [
            (name, *(float(metrics[key].values[i]) for key in header))
            for i, name in enumerate(metrics[by].values)])
    plot_recovery(table, path=directory / "recovery.png")
    return lines + ["![Simulated value vs posterior mean, 90 % intervals](recovery.png)", ""]


def _diagnostics(table: xr.Dataset, diagnostics: xr.Dataset) -> list[str]:
    n = table.sizes["dataset"]
    non_finite = ~np.isfinite(table["mean"].values).all(axis=1)
    rows = [("fits", n), ("fits with non-finite draws", int(non_finite.sum()))]
    if "divergences" in diagnostics:
        divergences = diagnostics["divergences"].values
        rows += [("fits with divergences", int((divergences > 0).sum())),
                 ("divergent transitions", int(divergences.sum()))]
    for key, label, reduce in DIAGNOSTIC_ROWS:
        if key in diagnostics:
            rows.append((label, reduce(diagnostics[key].values)))
    lines = ["## Fit diagnostics", "", *_table(["", "value"], rows)]
    lines += [f"Failed or divergent fits are kept: all {n} datasets enter the tables above "
              "(dropping them would bias SBC).", ""]
    return lines


def write_report(
    directory: str | Path,
    table: xr.Dataset,
    *,
    test: xr.Dataset | None = None,
    diagnostics: xr.Dataset | None = None,
    shrinkage: xr.Dataset | None = None,
    title: str = "hjax study",
    calibration: bool = True,
) -> Path:
    """Write report.md and its figures into `directory`.

    Args:
        directory: created if missing; report.md and the PNGs go there.
        table: the study table of `sbc_ranks`.
        test: the `uniformity_test` of the table (default: run with its defaults).
        diagnostics: per-fit diagnostics with dim `dataset` (`hj.diagnose` of the batched fit:
            `divergences`, `treedepth_hits`, `max_rhat`, `min_ess_bulk`, `min_ess_tail`,
            `init_failures`; any subset). Default: those of them that `table` holds.
        shrinkage: the output of `shrinkage` for one dataset, to add the shrinkage figure.
        title: the report's heading.
        calibration: include the SBC calibration section (off for recovery studies, whose
            held-fixed truths make ranks non-uniform by design).

    Returns:
        The path of report.md.

    Example:
        >>> path = write_report("results/sbc", table, diagnostics=hj.diagnose(result))
        >>> path.name
        'report.md'
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    test = uniformity_test(table) if test is None and calibration else test
    if diagnostics is None:
        diagnostics = table[[key for key in DIAGNOSTIC_KEYS if key in table.data_vars]]
    lines = [f"# {title}", "",
             f"{table.sizes['dataset']} simulated datasets, {table.sizes['variable']} scalar "
             f"quantities ({', '.join(dict.fromkeys(table['parameter'].values))}).", ""]
    if calibration:
        lines += _calibration(table, test, directory)
    lines += _recovery(table, directory)
    if shrinkage is not None:
        plot_shrinkage(shrinkage, path=directory / "shrinkage.png")
        lines += ["## Shrinkage", "",
                  "Observed vs posterior group means (marker size: group size); small groups "
                  "are pulled further toward the population mean.", "",
                  "![Shrinkage of group means](shrinkage.png)", ""]
    lines += _diagnostics(table, diagnostics)
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
