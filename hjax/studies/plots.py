"""Figures of a study: SBC ECDF differences and rank histograms, recovery, shrinkage.

Every function takes the tables of `sbc_ranks` / `shrinkage`, returns a matplotlib `Figure` and
saves it as a PNG when given a path. Figures are built without pyplot, so nothing depends on a
display or on global backend state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from hjax.studies.calibration import ecdf_band, rank_ecdf

__all__ = ["plot_ecdf_diff", "plot_rank_hist", "plot_recovery", "plot_shrinkage"]

BAND_COLOR = "0.85"
MAX_LINES_LABELLED = 8


def _panels(n: int, n_cols: int,
            size: tuple[float, float] = (3.2, 2.6)) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(n, n_cols))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, list(axes[:n])


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    return fig


def _select(table: xr.Dataset, coord: str, names: list[str] | None) -> list[str]:
    available = list(dict.fromkeys(table[coord].values))
    if names is None:
        return available
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"Unknown {coord}s {unknown}; the table has {available}.")
    return list(names)


def plot_ecdf_diff(table: xr.Dataset, *, prob: float = 0.95, parameters: list[str] | None = None,
                   n_cols: int = 4, path: str | Path | None = None) -> Figure:
    """ECDF of the normalized ranks minus the uniform CDF, with the simultaneous `prob` band.

    One panel per parameter, one line per variable (the groups of `theta` share a panel). The
    band (Säilynoja et al. 2022, see `ecdf_band`) holds one calibrated variable's whole line with
    probability `prob`; a line leaving it is what `uniformity_test` rejects at 1 - `prob`
    before the multiplicity correction. An arc above zero means ranks too small (the posterior
    overestimates; below zero, underestimates); a wave that dips then rises means a posterior
    too wide, one that rises then dips a posterior too narrow.

    Args:
        table: the study table of `sbc_ranks`.
        prob: simultaneous coverage of the band.
        parameters: base names to show (default all).
        n_cols: panels per row.
        path: where to save the PNG.

    Example:
        >>> fig = plot_ecdf_diff(table, path="sbc_ecdf.png")
    """
    names = _select(table, "parameter", parameters)
    fig, axes = _panels(len(names), n_cols)
    n = table.sizes["dataset"]
    for ax, name in zip(axes, names, strict=True):
        part = table.isel(variable=table["parameter"].values == name)
        band = ecdf_band(n, int(part["max_rank"].max()), prob=prob)
        z = np.concatenate([[0.0], band.z, [1.0]])
        lower = np.concatenate([[0.0], band.lower - band.z, [0.0]])
        upper = np.concatenate([[0.0], band.upper - band.z, [0.0]])
        ax.fill_between(z, lower, upper, color=BAND_COLOR, label=f"{prob:.0%} band")
        for variable in part["variable"].values:
            row = part.sel(variable=variable)
            ecdf = rank_ecdf(row["rank"].values, int(row["max_rank"].values[0]), band.z)
            ax.plot(z, np.concatenate([[0.0], ecdf - band.z, [0.0]]), lw=1, label=variable)
        ax.axhline(0.0, color="0.4", lw=0.5)
        ax.set(title=name, xlabel="normalized rank", ylabel="ECDF difference", xlim=(0, 1))
        if part.sizes["variable"] <= MAX_LINES_LABELLED:
            ax.legend(fontsize="x-small")
    return _finish(fig, path)


def plot_rank_hist(table: xr.Dataset, *, bins: int = 20, prob: float = 0.99,
                   variables: list[str] | None = None, n_cols: int = 4,
                   path: str | Path | None = None) -> Figure:
    """Histograms of the ranks, one panel per variable, with the binomial `prob` band per bin.

    The band is the central `prob` interval of Binomial(n_datasets, bin probability): the
    count of each bin stays inside it with probability `prob` when ranks are uniform (Talts et
    al. 2018); with 20 bins, about one bin in five studies leaves a 99 % band by chance.

    Args:
        table: the study table of `sbc_ranks`.
        bins: number of bins (at most max_rank + 1); edges fall on whole ranks.
        prob: pointwise coverage of the band.
        variables: labels to show (default all).
        n_cols: panels per row.
        path: where to save the PNG.

    Example:
        >>> fig = plot_rank_hist(table, variables=["mu", "tau"], path="ranks.png")
    """
    names = _select(table, "variable", variables)
    fig, axes = _panels(len(names), n_cols)
    n = table.sizes["dataset"]
    for ax, name in zip(axes, names, strict=True):
        row = table.sel(variable=name)
        size = int(row["max_rank"].values[0]) + 1
        count = min(bins, size)
        edges = np.unique(np.rint(np.arange(count + 1) * size / count).astype(int))
        observed = np.histogram(row["rank"].values, bins=edges)[0]
        share = np.diff(edges) / size
        low = stats.binom.ppf((1 - prob) / 2, n, share)
        high = stats.binom.ppf((1 + prob) / 2, n, share)
        ax.bar(edges[:-1], high - low, bottom=low, width=np.diff(edges), align="edge",
               color=BAND_COLOR, label=f"{prob:.0%} band")
        ax.stairs(observed, edges, fill=False, color="C0", lw=1.2)
        ax.set(title=name, xlabel="rank", ylabel="datasets", xlim=(0, size))
    return _finish(fig, path)


def plot_recovery(table: xr.Dataset, *, parameters: list[str] | None = None, n_cols: int = 4,
                  path: str | Path | None = None) -> Figure:
    """Simulated value against posterior mean with 90 % intervals (q5, q95) and the identity line.

    One panel per parameter, the elements of a vector parameter pooled. Points on the line are
    recovered; a flat cloud means the data say little (the posterior stays near the prior);
    intervals that miss the line are drawn in red.

    Args:
        table: the study table of `sbc_ranks`.
        parameters: base names to show (default all).
        n_cols: panels per row.
        path: where to save the PNG.

    Example:
        >>> fig = plot_recovery(table, path="recovery.png")
    """
    names = _select(table, "parameter", parameters)
    fig, axes = _panels(len(names), n_cols, size=(3.0, 3.0))
    for ax, name in zip(axes, names, strict=True):
        part = table.isel(variable=table["parameter"].values == name)
        truth, mean = part["simulated_value"].values.ravel(), part["mean"].values.ravel()
        lo, hi = part["q5"].values.ravel(), part["q95"].values.ravel()
        missed = (truth < lo) | (truth > hi)
        for mask, color in ((~missed, "C0"), (missed, "C3")):
            yerr = [mean[mask] - lo[mask], hi[mask] - mean[mask]]
            ax.errorbar(truth[mask], mean[mask], yerr=yerr, fmt="o", ms=2.5, lw=0.5,
                        color=color, alpha=0.6)
        span = [np.nanmin([truth.min(), lo.min()]), np.nanmax([truth.max(), hi.max()])]
        ax.plot(span, span, color="0.3", lw=0.8)
        ax.set(title=f"{name} (90 % missed: {missed.mean():.0%})", xlabel="simulated value",
               ylabel="posterior mean")
    return _finish(fig, path)


def plot_shrinkage(result: xr.Dataset, *, path: str | Path | None = None) -> Figure:
    """Shrinkage of group means: observed vs posterior mean (size = group size), and by size.

    Left: each group's observed mean against its posterior mean, marker area proportional to
    the group size, with the identity line (no pooling) and the population mean (complete
    pooling). Right: the shrinkage fraction against group size: small groups are pulled more.

    Args:
        result: the output of `shrinkage`.
        path: where to save the PNG.

    Example:
        >>> fig = plot_shrinkage(shrinkage(ybar, n, theta_mean, mu_mean), path="shrinkage.png")
    """
    fig, (left, right) = _panels(2, 2, size=(4.0, 3.5))
    observed, posterior = result["observed_mean"].values, result["posterior_mean"].values
    sizes = result["group_size"].values.astype(float)
    area = 15 + 200 * sizes / sizes.max()
    left.scatter(observed, posterior, s=area, alpha=0.6, edgecolor="k", lw=0.3)
    span = [min(observed.min(), posterior.min()), max(observed.max(), posterior.max())]
    left.plot(span, span, color="0.3", lw=0.8, label="no pooling")
    left.plot(span, [result["population_mean"].values.mean()] * 2, color="C3", lw=0.8, ls="--",
              label="population mean")
    left.set(xlabel="observed group mean", ylabel="posterior group mean")
    left.legend(fontsize="x-small")
    right.scatter(sizes, result["shrinkage"].values, s=20, alpha=0.7)
    right.set(xscale="log", xlabel="group size", ylabel="shrinkage fraction", ylim=(-0.1, 1.1))
    return _finish(fig, path)
