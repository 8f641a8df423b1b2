"""Figures of a study: SBC ECDF differences and rank histograms, recovery, shrinkage.

Every function takes the tables of `sbc_ranks` / `shrinkage`, returns a matplotlib `Figure` and
saves it as a PNG when given a path. Figures are built without pyplot, so nothing depends on a
display or on global backend state. The recovery and shrinkage figures of a grid recovery
(`held_*` coords that vary, see `grid_points`) get one titled block of panels per grid point.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
from scipy import stats

from hjax.errors import DataError
from hjax.studies.calibration import ecdf_band, rank_ecdf
from hjax.studies.metrics import grid_points, implied_shrinkage

__all__ = ["plot_ecdf_diff", "plot_rank_hist", "plot_recovery", "plot_shrinkage"]

BAND_COLOR = "0.85"
MAX_LINES_LABELLED = 8
MAX_BLOCK_COLS = 4  # grid points side by side before wrapping to a new row


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
        raise DataError(f"Unknown {coord}s {unknown}; the table has {available}.")
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
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> fig = hj.plot_ecdf_diff(table)  # path="sbc_ecdf.png" saves it
        >>> [ax.get_title() for ax in fig.axes]
        ['theta_sd', 'mu', 'theta']
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
        ax.fill_between(z, lower, upper, color=BAND_COLOR)
        for variable in part["variable"].values:
            row = part.sel(variable=variable)
            ecdf = rank_ecdf(row["rank"].values, int(row["max_rank"].values[0]), band.z)
            ax.plot(z, np.concatenate([[0.0], ecdf - band.z, [0.0]]), lw=1, label=variable)
        ax.axhline(0.0, color="0.4", lw=0.5)
        ax.set(title=name, xlabel="normalized rank", ylabel="ECDF difference", xlim=(0, 1))
        # Below the panel, so it never covers a line; one line needs none (the title names it).
        if 1 < part.sizes["variable"] <= MAX_LINES_LABELLED:
            ax.legend(handles=ax.lines[:-1], fontsize="x-small", loc="upper center",
                      bbox_to_anchor=(0.5, -0.28), ncols=2, frameon=False)
    fig.legend(handles=[axes[0].collections[0]], loc="outside lower center", fontsize="small",
               labels=[f"{prob:.0%} simultaneous band"], frameon=False)
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
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> fig = hj.plot_rank_hist(table, variables=["mu", "theta_sd"])
        >>> [ax.get_title() for ax in fig.axes]
        ['mu', 'theta_sd']
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


def _grid_panels(points: list[tuple[str, np.ndarray]], n: int, n_cols: int,
                 size: tuple[float, float], block_cols: int = 1,
                 ) -> tuple[Figure, list[list[Axes]]]:
    """`n` panels per grid point: one block per point, titled by its held values, the blocks
    `block_cols` to a row. One grid point gives plain panels without a title, so a study
    without a grid looks as it always did.
    """
    if len(points) == 1:
        fig, axes = _panels(n, n_cols, size)
        return fig, [axes]
    cols = max(1, min(n, n_cols))
    rows = math.ceil(n / cols)
    block_cols = min(block_cols, len(points))
    block_rows = math.ceil(len(points) / block_cols)
    # The block title needs about a third of an inch above each block's panels.
    fig = Figure(figsize=(size[0] * cols * block_cols, (size[1] * rows + 0.35) * block_rows),
                 layout="constrained")
    subs = fig.subfigures(block_rows, block_cols, squeeze=False).ravel()
    blocks = []
    for sub, (label, _) in zip(subs, points, strict=False):
        sub.suptitle(label, fontweight="bold")
        axes = sub.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[n:]:
            ax.set_axis_off()
        blocks.append(list(axes[:n]))
    return fig, blocks


def _recovery_panel(ax: Axes, part: xr.Dataset, name: str) -> None:
    truth, mean = part["simulated_value"].values.ravel(), part["mean"].values.ravel()
    lo, hi = part["q5"].values.ravel(), part["q95"].values.ravel()
    missed = (truth < lo) | (truth > hi)
    for mask, color in ((~missed, "C0"), (missed, "C3")):
        yerr = [mean[mask] - lo[mask], hi[mask] - mean[mask]]
        ax.errorbar(truth[mask], mean[mask], yerr=yerr, fmt="o", ms=2.5, lw=0.5,
                    color=color, alpha=0.6)
    span = np.array([np.nanmin([truth.min(), lo.min()]), np.nanmax([truth.max(), hi.max()])])
    # Equal, padded axes: a held (constant) truth would otherwise get a zero-width x-axis.
    pad = 0.05 * (span[1] - span[0]) or 0.05 * max(abs(span[0]), 1.0)
    limits = (span[0] - pad, span[1] + pad)
    ax.plot(limits, limits, color="0.3", lw=0.8)
    ax.set(xlabel="simulated value", ylabel="posterior mean", xlim=limits, ylim=limits)
    # Two lines: long names (log_t0_p_sd) plus the share would overrun a 3-inch panel.
    ax.set_title(f"{name}\n{missed.mean():.0%} outside 90 % CI", fontsize="medium")


def plot_recovery(table: xr.Dataset, *, parameters: list[str] | None = None, n_cols: int = 4,
                  path: str | Path | None = None) -> Figure:
    """Simulated value against posterior mean with 90 % intervals (q5, q95) and the identity line.

    One panel per parameter, the elements of a vector parameter pooled; in a grid recovery
    (`held_*` coords that vary, see `grid_points`) one row of panels per grid point. Points on
    the line are recovered; a flat cloud means the data say little (the posterior stays near
    the prior); intervals that miss the line are drawn in red, and each title gives their share.

    Args:
        table: the study table of `sbc_ranks` / `recover`.
        parameters: base names to show (default all).
        n_cols: panels per row.
        path: where to save the PNG.

    Example:
        >>> table = hj.recover(model, design, key=0, grid={"theta_sd": [1.0, 5.0]},
        ...                    given={"mu": 0.0}, replicates=4, chains=2, warmup=100, draws=50)
        >>> fig = hj.plot_recovery(table)  # a row of 3 parameters per grid point
        >>> len(fig.axes)
        6
    """
    names = _select(table, "parameter", parameters)
    points = grid_points(table)
    fig, blocks = _grid_panels(points, len(names), n_cols, size=(3.0, 3.0))
    for (_, mask), axes in zip(points, blocks, strict=True):
        for ax, name in zip(axes, names, strict=True):
            part = table.isel(dataset=mask, variable=table["parameter"].values == name)
            _recovery_panel(ax, part, name)
    return _finish(fig, path)


def _size_axis(ax: Axes, sizes: np.ndarray) -> None:
    """Log group-size axis labelled with plain integers at the sizes that occur, thinned so
    that no two labels are closer than an eighth of the axis (log minor labels overlap)."""
    ax.set_xscale("log")
    candidates = np.unique(sizes[sizes > 0])
    if candidates.size > 8:  # many distinct sizes: label a 1-2-5 sequence instead
        decades = 10.0 ** np.arange(np.floor(np.log10(candidates[0])),
                                    np.ceil(np.log10(candidates[-1])) + 1)
        steps = (decades[:, None] * [1, 2, 5]).ravel()
        within = steps[(steps >= candidates[0]) & (steps <= candidates[-1])]
        candidates = within if within.size >= 2 else candidates
    low, high = np.log(ax.get_xlim())
    ticks = []
    for tick in candidates:
        if not ticks or np.log(tick / ticks[-1]) >= (high - low) / 8:
            ticks.append(tick)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _implied_sds(part: xr.Dataset) -> tuple[float, float, str]:
    """Noise and group sd of a grid point for the implied curve, and a title saying whence."""
    values, words = [], []
    for which in ("noise_sd", "group_sd"):
        # Held values are constant over a grid point; posterior means are averaged over it.
        values.append(float(part[which].mean()))
        name = part[which].attrs.get("parameter", which)
        words.append(f"{name} = {values[-1]:.3g} ({part[which].attrs.get('source', 'given')})")
    return values[0], values[1], "curve: " + ", ".join(words)


def _shrinkage_pair(top: Axes, bottom: Axes, part: xr.Dataset, max_size: float) -> None:
    part = part.isel(group=part["group_size"].values > 0)  # an empty group has no mean
    observed, posterior = part["observed_mean"].values, part["posterior_mean"].values
    sizes = part["group_size"].values.astype(float)
    top.scatter(observed, posterior, s=8 + 60 * sizes / max_size, alpha=0.4, edgecolor="k",
                lw=0.3, label="group (area: size)")
    span = [min(observed.min(), posterior.min()), max(observed.max(), posterior.max())]
    top.plot(span, span, color="0.3", lw=0.8, label="no pooling")
    top.axhline(part["population_mean"].values.mean(), color="C3", lw=0.8, ls="--",
                label="population mean")
    top.set(xlabel="observed group mean", ylabel="posterior group mean")
    # Deterministic jitter (a few % of a factor) separates the groups of one size, if any.
    repeated = np.unique(sizes).size < sizes.size
    jitter = np.exp(np.random.default_rng(0).uniform(-0.06, 0.06, sizes.size) * repeated)
    fraction = part["shrinkage"].values
    low, high = -0.1, 1.1
    inside = (fraction >= low) & (fraction <= high)
    bottom.scatter(sizes[inside] * jitter[inside], fraction[inside], s=8, alpha=0.4,
                   label="group" + (" (sizes jittered)" if repeated else ""))
    if (~inside).any():  # unstable fractions (observed mean near the population mean)
        edge = np.where(fraction[~inside] > high, high, low)
        bottom.scatter(sizes[~inside] * jitter[~inside], edge, s=14, marker="x", color="0.4",
                       lw=0.8, label="group off the scale")
    bottom.set(xlabel="group size", ylabel="shrinkage fraction", ylim=(low - 0.02, high + 0.02),
               xlim=(sizes.min() / 1.3, sizes.max() * 1.3))
    title = ""
    if "implied_shrinkage" in part:
        noise_sd, group_sd, title = _implied_sds(part)
        n = np.geomspace(sizes.min() / 1.3, sizes.max() * 1.3, 100)
        bottom.plot(n, implied_shrinkage(n, noise_sd, group_sd), color="C3", lw=1.2,
                    label="implied: $\\sigma^2/n\\,/\\,(\\sigma^2/n + sd^2)$")
    bottom.set_title(title, fontsize="small")
    _size_axis(bottom, sizes)


def plot_shrinkage(result: xr.Dataset, *, path: str | Path | None = None) -> Figure:
    """Shrinkage of group means: observed vs posterior mean, and pooling fraction by group size.

    Per grid point (`held_*` coords of `shrinkage_table` that vary; see `grid_points`) a column
    of two panels, titled by its held values. Top: each group's observed mean against its
    posterior mean, marker area proportional to group size, with the identity line (no pooling)
    and the population mean (complete pooling). Bottom: the pooling fraction against group
    size (small groups are pulled more), with the fraction the model implies,
    sigma^2/n / (sigma^2/n + sd^2), where `result` has `noise_sd` and `group_sd`: the held
    values, or the posterior means averaged over the grid point's datasets (the panel title
    says which). Fractions off the scale (observed mean near the population mean) are marked
    at its edge.

    Args:
        result: the output of `shrinkage` or `shrinkage_table`.
        path: where to save the PNG.

    Example:
        >>> from hjax.studies.recover import shrinkage_table
        >>> table = hj.recover(model, design, key=0, grid={"theta_sd": [1.0, 5.0]},
        ...                    given={"mu": 0.0}, replicates=4, chains=2, warmup=100, draws=50,
        ...                    shrinkage="theta")
        >>> fig = hj.plot_shrinkage(shrinkage_table(table))  # two panels per grid point
        >>> len(fig.axes)
        4
    """
    points = grid_points(result, dim="group")
    max_size = float(result["group_size"].max())
    # One point: the pair side by side; several: a column per point, so they compare across.
    fig, blocks = _grid_panels(points, 2, 2 if len(points) == 1 else 1, size=(4.2, 3.2),
                               block_cols=MAX_BLOCK_COLS)
    handles: dict = {}
    for (_, mask), (top, bottom) in zip(points, blocks, strict=True):
        _shrinkage_pair(top, bottom, result.isel(group=mask), max_size)
        for ax in (top, bottom):
            handles |= {label: handle for handle, label in zip(*ax.get_legend_handles_labels(),
                                                                strict=True)}
    # One legend for all panels, below them, so it never covers a point.
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(len(handles), 3), fontsize="small")
    return _finish(fig, path)
