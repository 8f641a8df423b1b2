"""A study's report: report.md with calibration, recovery and fit diagnostics, plus its PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from hjax.settings import RHAT_LIMIT
from hjax.studies.calibration import uniformity_test
from hjax.studies.metrics import grid_points, recovery_metrics
from hjax.studies.plots import plot_ecdf_diff, plot_rank_hist, plot_recovery, plot_shrinkage
from hjax.studies.status import summarize_missing

__all__ = ["escalation_summary", "rhat_limit", "write_report"]

MAX_ROWS = 40  # per-variable tables longer than this are summarized per parameter only
MAX_RANK_PANELS = 16  # a 4 x 4 grid; the ECDF figure shows every variable
DIAGNOSTIC_ROWS = (  # key in `hj.diagnose` output, label, summary over fits
    ("treedepth_hits", "draws at max tree depth", lambda v: int(v.sum())),
    ("init_failures", "chains that failed to initialize", lambda v: int(v.sum())),
    ("stuck_chains", "chains stuck after warmup", lambda v: int(v.sum())),
    ("nan_log_density", "transitions at a NaN log density", lambda v: int(v.sum())),
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
            return "–" if np.isnan(value) else f"{value:.4g}"
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
    lines += _calibration_of_passing(table, test)
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


def _calibration_of_passing(table: xr.Dataset, test: xr.Dataset) -> list[str]:
    """The test over the fits that pass their diagnostics beside the test over all fits:
    escalation must not hide a miscalibration, and dropping failed fits must not create one."""
    if "passed" not in table or table["passed"].all() or not table["passed"].any():
        return []
    passing = table.isel(dataset=table["passed"].values)
    again = uniformity_test(passing, alpha=test.attrs.get("alpha", 0.01))
    rows = []
    for name in dict.fromkeys(test["parameter"].values):
        every, some = (t.isel(variable=t["parameter"].values == name) for t in (test, again))
        rows.append((name, _p(every["p_adjusted"].min()), int(every["rejected"].sum()),
                     _p(some["p_adjusted"].min()), int(some["rejected"].sum())))
    return [f"The same test over the {passing.sizes['dataset']} fits that pass their "
            f"diagnostics (of {table.sizes['dataset']}):", "",
            *_table(["parameter", "all fits: smallest adjusted p", "rejected",
                     "passing fits: smallest adjusted p", "rejected"], rows)]


def rhat_limit(table: xr.Dataset) -> float:
    """The largest R-hat the study allowed its fits (its `escalation.max_rhat`, which
    `hj.sbc` and `hj.recover` record in the table's attrs), or the default.

    Example:
        >>> rhat_limit(xr.Dataset(attrs={"rhat_limit": 1.05})), rhat_limit(xr.Dataset())
        (1.05, 1.01)
    """
    return float(table.attrs.get("rhat_limit", RHAT_LIMIT))


def escalation_summary(table: xr.Dataset) -> dict[str, float] | None:
    """Fractions of fits with problems at their first attempt and after escalation, and how
    many were refitted and still fail (None when the table has no attempts); R-hat is judged
    by the study's limit (`rhat_limit`).

    Example:
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100,
        ...                draws=50, escalation={"attempts": 1, "max_rhat": 1.05})
        >>> list(escalation_summary(table))  # doctest: +NORMALIZE_WHITESPACE
        ['refitted', 'still failing', 'stuck before', 'stuck after', 'divergent before',
         'divergent after', 'R-hat limit', 'R-hat above the limit before',
         'R-hat above the limit after']
        >>> escalation_summary(table)["R-hat limit"]
        1.05
    """
    if "attempt_divergences" not in table:
        return None
    first, limit = table.isel(attempt=0), rhat_limit(table)
    return {
        "refitted": int((table["attempts"] > 1).sum()),
        "still failing": int((~table["passed"]).sum()),
        "stuck before": float((first["attempt_stuck_chains"] > 0).mean()),
        "stuck after": float((table["stuck_chains"] > 0).mean()),
        "divergent before": float((first["attempt_divergences"] > 0).mean()),
        "divergent after": float((table["divergences"] > 0).mean()),
        "R-hat limit": limit,
        "R-hat above the limit before": float((~(first["attempt_max_rhat"] <= limit)).mean()),
        "R-hat above the limit after": float((~(table["max_rhat"] <= limit)).mean()),
    }


def _metric_rows(table: xr.Dataset, by: str,
                 points: list[tuple[str, np.ndarray]]) -> tuple[list[str], list[tuple]]:
    """Rows of `recovery_metrics` per grid point (first column), then pooled over the grid."""
    header = ["bias", "rmse", "correlation", "coverage_50", "coverage_80", "coverage_95"]
    parts = [(label, table.isel(dataset=mask)) for label, mask in points]
    if len(points) > 1:
        parts.append(("all", table))
    rows = []
    for label, part in parts:
        metrics = recovery_metrics(part, by=by)
        rows += [((label,) if len(points) > 1 else ()) + (name, *(
            float(metrics[key].values[i]) for key in header))
            for i, name in enumerate(metrics[by].values)]
    return (["grid point"] if len(points) > 1 else []) + [by, *header], rows


def _recovery(table: xr.Dataset, directory: Path) -> list[str]:
    points = grid_points(table)
    intro = ("Posterior mean against simulated value over datasets; coverage is the fraction "
             "of central intervals holding the simulated value")
    if any(str(name).startswith("held_") for name in table.coords):
        intro += "; correlation is – where the simulated value is held (constant)"
    lines = ["## Recovery", "", intro + ".", ""]
    if len(points) > 1:
        lines += ["Rows per grid point (the held values that vary), then all grid points "
                  "pooled (\"all\").", ""]
    lines += _table(*_metric_rows(table, "parameter", points))
    # Per-variable rows only add something for vector parameters, and only while readable.
    n_params = len(set(table["parameter"].values))
    if n_params < table.sizes["variable"] and table.sizes["variable"] * len(points) <= MAX_ROWS:
        lines += _table(*_metric_rows(table, "variable", points))
    plot_recovery(table, path=directory / "recovery.png")
    caption = "Simulated value vs posterior mean, 90 % intervals (red: missing the simulated value)"
    if len(points) > 1:
        caption += ", one row per grid point"
    return lines + [f"![{caption}](recovery.png)", ""]


def _shrinkage(result: xr.Dataset, directory: Path) -> list[str]:
    plot_shrinkage(result, path=directory / "shrinkage.png")
    points = grid_points(result, dim="group")
    first, second = ("Top", "Bottom") if len(points) > 1 else ("Left", "Right")
    text = (f"{first}: observed vs posterior group means (marker area: group size; line: no "
            f"pooling; dashed: the population mean). {second}: the pooling fraction (observed - "
            "posterior) / (observed - population) by group size; small groups are pulled "
            "further toward the population mean. Fractions beyond the axis (observed mean near "
            "the population mean, where the fraction is unstable) are marked x at its edge.")
    if len(points) > 1:
        text += (" One column of panels per grid point "
                 f"({', '.join(label for label, _ in points)}).")
    if "implied_shrinkage" in result:
        names = {which: result[which].attrs.get("parameter", which)
                 for which in ("noise_sd", "group_sd")}
        sources = [f"{names[which]} {result[which].attrs.get('source', 'as given')}"
                   for which in ("noise_sd", "group_sd")]
        text += (f" The curve is the shrinkage the model implies, {names['noise_sd']}^2/n / "
                 f"({names['noise_sd']}^2/n + {names['group_sd']}^2), with "
                 f"{' and '.join(sources)}")
        averaged = any(result[w].attrs.get("source") == "posterior mean" for w in names)
        text += " (averaged over the datasets of each grid point)." if averaged else "."
    return ["## Shrinkage", "", text, "", "![Shrinkage of group means](shrinkage.png)", ""]


def _diagnostics(table: xr.Dataset, diagnostics: xr.Dataset) -> list[str]:
    n = table.sizes["dataset"]
    non_finite = ~np.isfinite(table["mean"].values).all(axis=1)
    rows = [("fits", n), ("fits with non-finite draws", int(non_finite.sum()))]
    if "divergences" in diagnostics:
        divergences = diagnostics["divergences"].values
        rows += [("fits with divergences", int((divergences > 0).sum())),
                 ("draws with a divergence", int(divergences.sum()))]
    for key, label, reduce in DIAGNOSTIC_ROWS:
        if key in diagnostics:
            rows.append((label, reduce(diagnostics[key].values)))
    summary = escalation_summary(table)
    if summary is not None:
        attempts = table.sizes["attempt"] - 1
        rows += [(f"fits refitted with stronger settings (up to {attempts} times)",
                  summary["refitted"]),
                 ("fits still failing their diagnostics", summary["still failing"]),
                 ("share with a stuck chain: first fit / after refits",
                  f"{summary['stuck before']:.3f} / {summary['stuck after']:.3f}"),
                 ("share with divergences: first fit / after refits",
                  f"{summary['divergent before']:.3f} / {summary['divergent after']:.3f}"),
                 (f"share with R-hat > {summary['R-hat limit']:g}: first fit / after refits",
                  f"{summary['R-hat above the limit before']:.3f} / "
                  f"{summary['R-hat above the limit after']:.3f}")]
    lines = ["## Fit diagnostics", "", *_table(["", "value"], rows)]
    lines += [f"Failed or divergent fits are kept: all {n} datasets enter the tables above "
              "(dropping them would bias SBC).", ""]
    return lines


def _grid_summary(table: xr.Dataset) -> str:
    """' over 3 grid points (u_sd = 0.2; ...; 32 datasets each)', or '' without a grid."""
    points = grid_points(table)
    if len(points) == 1:
        return ""
    counts = sorted({int(mask.sum()) for _, mask in points})
    each = f"{counts[0]} datasets each" if len(counts) == 1 else "unequal numbers of datasets"
    return f" over {len(points)} grid points ({'; '.join(label for label, _ in points)}; {each})"


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
        shrinkage: the output of `shrinkage` (one dataset) or `shrinkage_table` (a study, per
            grid point), to add the shrinkage figure.
        title: the report's heading.
        calibration: include the SBC calibration section (off for recovery studies, whose
            held-fixed truths make ranks non-uniform by design).

    Returns:
        The path of report.md.

    Example:
        >>> import tempfile
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     path = hj.write_report(directory, table)
        ...     sorted(p.name for p in path.parent.iterdir())
        ['recovery.png', 'report.md', 'sbc_ecdf_diff.png', 'sbc_ranks.png']
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    test = uniformity_test(table) if test is None and calibration else test
    if diagnostics is None:
        diagnostics = table[[key for key in DIAGNOSTIC_KEYS if key in table.data_vars]]
    lines = [f"# {title}", "",
             f"{table.sizes['dataset']} simulated datasets{_grid_summary(table)}, "
             f"{table.sizes['variable']} scalar quantities "
             f"({', '.join(dict.fromkeys(table['parameter'].values))}).", ""]
    incomplete = summarize_missing(table)
    if incomplete:
        lines += [f"**{incomplete}** Every section below covers the datasets done.", ""]
    if calibration:
        lines += _calibration(table, test, directory)
    lines += _recovery(table, directory)
    if shrinkage is not None:
        lines += _shrinkage(shrinkage, directory)
    lines += _diagnostics(table, diagnostics)
    path = directory / "report.md"
    path.write_text("\n".join(lines))
    return path
