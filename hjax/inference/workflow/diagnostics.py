"""Convergence diagnostics per dataset, a summary table, and warnings that say what to do.

Diagnostics are data: `diagnose` returns them as an xarray Dataset and `check` as messages;
`sample` only warns. R-hat is the rank-normalized split R-hat and ESS the bulk and tail ESS of
Vehtari et al. (2021), as arviz-stats computes them (`hjax.inference.workflow.convergence`,
vectorized over every series); the Monte Carlo standard errors come from arviz-stats.
"""

from __future__ import annotations

import warnings

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from arviz_base import rcParams

from hjax.inference.workflow import convergence
from hjax.settings import RHAT_LIMIT

__all__ = ["DIAGNOSTICS", "RHAT_LIMIT", "check", "diagnose", "stuck_chains", "summary",
           "warn_problems"]

SAMPLE_DIMS = ["chain", "draw"]
# What `diagnose` returns per dataset; `hj.sample` keeps them in `fit_stats`.
DIAGNOSTICS = ("divergences", "treedepth_hits", "max_rhat", "min_ess_bulk", "min_ess_tail",
               "init_failures", "stuck_chains", "nan_log_density")
ESS_PER_CHAIN = 100  # Stan's and ArviZ's rule of thumb: 100 effective draws per chain
# A chain is stuck when warmup left it with a step size two orders of magnitude below its
# dataset's largest, or with a mean log density this many within-chain sds below the chains'
# median. Healthy chains of the shipped and README models stay within a factor 3 and 3 sds
# (`scripts/starts.py`); stuck ones sat at 1e-4 to 1e-6 and hundreds of sds.
STUCK_STEP_RATIO = 0.01
STUCK_LP_SDS = 5.0


def _rank_diagnostics(posterior: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """R-hat, bulk ESS and tail ESS of every series (`convergence.rank_diagnostics`).

    Every variable's series go to one call, so that all of them share its threads: one call
    per variable left each small variable on one core (20-group model, 64 datasets: 4 calls,
    3 of them on 64 series).
    """
    arrays = {name: da.transpose(..., *SAMPLE_DIMS) for name, da in posterior.data_vars.items()}
    series = {name: da.isel(chain=0, draw=0, drop=True) for name, da in arrays.items()}
    rows = np.concatenate([da.values.reshape(-1, *da.shape[-2:]) for da in arrays.values()])
    found = convergence.rank_diagnostics(rows, prob=rcParams["stats.ci_prob"])
    ends = np.cumsum([da.size for da in series.values()])[:-1]
    return tuple(xr.Dataset({name: da.copy(data=part.reshape(da.shape))
                             for (name, da), part in zip(series.items(), np.split(values, ends),
                                                         strict=True)})
                 for values in found)


def _stacked_max(ds: xr.Dataset, keep: list[str]) -> xr.DataArray:
    """Max over every variable and every dim not in `keep` (NaN counts as worst)."""
    parts = [da.fillna(np.inf).max([d for d in da.dims if d not in keep]) for da in
             ds.data_vars.values()]
    return xr.concat(parts, dim="variable").max("variable")


def stuck_chains(tree: xr.DataTree) -> xr.DataArray:
    """Per chain (and dataset): whether warmup left the chain stuck, with a step size below
    `STUCK_STEP_RATIO` times the largest of its dataset's chains, or a mean log density more
    than `STUCK_LP_SDS` within-chain sds below the chains' median. Such a chain barely moves
    (its draws repeat a region the others left, often where the density is numerically
    unsound), so its fit cannot be trusted whatever its R-hat.

    Example:
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> stuck_chains(result).values.tolist()
        [False, False]
    """
    stats = tree.sample_stats.to_dataset()
    if "step_size" not in stats or "lp" not in stats:
        return xr.zeros_like(stats.diverging.isel(draw=0, drop=True), dtype=bool)
    step = stats.step_size.median("draw")
    small = step < STUCK_STEP_RATIO * step.max("chain")
    mean_lp = stats.lp.mean("draw")
    spread = stats.lp.std("draw").median("chain")
    low = mean_lp < mean_lp.median("chain") - STUCK_LP_SDS * spread
    return small | low


def diagnose(tree: xr.DataTree) -> xr.Dataset:
    """Per-dataset convergence and sampler diagnostics of a `hj.sample` result.

    Returns:
        A Dataset (dim `dataset` if the fit was batched) with `divergences`, `treedepth_hits`,
        `max_rhat`, `min_ess_bulk`, `min_ess_tail` (over all parameters), `init_failures`,
        `stuck_chains` (`stuck_chains`) and `nan_log_density` (transitions that met a NaN
        log density). Divergences, tree-depth hits and NaN log densities count kept draws: a
        thinned draw counts when any of its iterations did.

    Example:
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> diag = hj.diagnose(result)
        >>> list(diag.data_vars), int(diag.init_failures)
        (['divergences', 'treedepth_hits', 'max_rhat', 'min_ess_bulk', 'min_ess_tail',
          'init_failures', 'stuck_chains', 'nan_log_density'], 0)
    """
    posterior = tree.posterior.to_dataset()
    stats = tree.sample_stats.to_dataset()
    keep = ["dataset"] if "dataset" in posterior.dims else []
    max_depth = posterior.attrs.get("max_tree_depth", 10)
    rhat, bulk, tail = _rank_diagnostics(posterior)
    out = xr.Dataset({
        "divergences": stats.diverging.sum(SAMPLE_DIMS),
        "treedepth_hits": (stats.tree_depth >= max_depth).sum(SAMPLE_DIMS),
        "max_rhat": _stacked_max(rhat, keep),
        "min_ess_bulk": -_stacked_max(-bulk, keep),
        "min_ess_tail": -_stacked_max(-tail, keep),
    })
    if "init_ok" in tree.get("fit_stats", xr.DataTree()).data_vars:
        out["init_failures"] = (~tree.fit_stats.init_ok).sum("chain")
    out["stuck_chains"] = stuck_chains(tree).sum("chain")
    if "nan_log_density" in stats:
        out["nan_log_density"] = stats.nan_log_density.sum(SAMPLE_DIMS)
    return out


def _flat_labels(da: xr.DataArray, name: str, keep: list[str]) -> tuple[list[str], np.ndarray]:
    """Stan-style labels (theta[school_a]) and values with `keep` dims first."""
    extra = [d for d in da.dims if d not in keep]
    da = da.transpose(*keep, *extra)
    if not extra:
        return [name], da.values[..., None]
    index = pd.MultiIndex.from_product([da[d].values for d in extra])
    labels = [f"{name}[{', '.join(map(str, key))}]" for key in index]
    return labels, da.values.reshape(da.shape[: len(keep)] + (-1,))


def summary(tree: xr.DataTree, var_names: list[str] | None = None,
            prob: float = 0.9) -> pd.DataFrame:
    """Posterior summary: one row per scalar quantity (and dataset, for a batched fit).

    Columns: mean, sd, the central `prob` interval, mcse_mean, mcse_sd, ess_bulk, ess_tail,
    r_hat. Numbers are not rounded, so the table can be computed on.

    Example:
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> table = hj.summary(result)
        >>> table.index[:3].tolist(), table.columns.tolist()
        (['mu', 'theta[0]', 'theta[1]'],
         ['mean', 'sd', 'q5', 'q95', 'mcse_mean', 'mcse_sd', 'ess_bulk', 'ess_tail', 'r_hat'])
    """
    posterior = tree.posterior.to_dataset()
    if var_names is not None:
        posterior = posterior[var_names]
    lo, hi = (1 - prob) / 2, (1 + prob) / 2
    rhat, bulk, tail = _rank_diagnostics(posterior)
    columns = {
        "mean": posterior.mean(SAMPLE_DIMS),
        "sd": posterior.std(SAMPLE_DIMS, ddof=1),
        f"q{lo * 100:g}": posterior.quantile(lo, SAMPLE_DIMS).drop_vars("quantile"),
        f"q{hi * 100:g}": posterior.quantile(hi, SAMPLE_DIMS).drop_vars("quantile"),
        "mcse_mean": azs.mcse(posterior, sample_dims=SAMPLE_DIMS, method="mean"),
        "mcse_sd": azs.mcse(posterior, sample_dims=SAMPLE_DIMS, method="sd"),
        "ess_bulk": bulk,
        "ess_tail": tail,
        "r_hat": rhat,
    }
    keep = ["dataset"] if "dataset" in posterior.dims else []
    frames = []
    for name in posterior.data_vars:
        labels = None
        values = {}
        for column, ds in columns.items():
            labels, values[column] = _flat_labels(ds[name], name, keep)
        if keep:
            n = values["mean"].shape[0]
            index = pd.MultiIndex.from_product([range(n), labels], names=["dataset", "param"])
            frames.append(pd.DataFrame({c: v.reshape(-1) for c, v in values.items()},
                                       index=index))
        else:
            frames.append(pd.DataFrame({c: v.reshape(-1) for c, v in values.items()},
                                       index=pd.Index(labels, name="param")))
    table = pd.concat(frames)
    return table.sort_index(level="dataset", sort_remaining=False) if keep else table


def _where(indices: np.ndarray, batched: bool) -> str:
    if not batched:
        return ""
    shown = ", ".join(map(str, indices[:10])) + (", ..." if len(indices) > 10 else "")
    return f" in dataset{'s' if len(indices) > 1 else ''} {shown}"


def _stuck_message(tree: xr.DataTree, stuck: xr.DataArray, shown: int = 3) -> str:
    """Name the stuck chains (the first `shown`): step size, log density, start."""
    stats = tree.sample_stats.to_dataset()
    step, mean_lp = stats.step_size.median("draw"), stats.lp.mean("draw")
    start = tree["start"].to_dataset() if "start" in tree.children else None
    batched = "dataset" in stuck.dims
    cells = np.argwhere(np.atleast_2d(stuck.transpose(..., "chain").values))
    parts = []
    for d, c in cells[:shown]:
        at = {"dataset": d} if batched else {}
        chain = at | {"chain": c}
        others = np.delete(np.atleast_1d(step.isel(at).values), c)
        lps = np.delete(np.atleast_1d(mean_lp.isel(at).values), c)
        where = f"chain {c} of dataset {d}" if batched else f"chain {c}"
        text = (f"{where} (step size {float(step.isel(chain)):.2g}, the others' up to "
                f"{others.max():.2g}; mean log density {float(mean_lp.isel(chain)):.5g}, "
                f"the others' median {np.median(lps):.5g}")
        if start is not None:
            scalars = [name for name, da in start.data_vars.items()
                       if set(da.dims) <= {"dataset", "chain"}][:4]
            values = ", ".join(f"{name}={float(start[name].isel(chain)):.3g}"
                               for name in scalars)
            text += f"; it started at {values}" if values else ""
        parts.append(text + ")")
    more = f", and {len(cells) - shown} more" if len(cells) > shown else ""
    return (f"{len(cells)} chain{'s' if len(cells) > 1 else ''} stuck after warmup: "
            f"{', '.join(parts)}{more}. A stuck chain barely moves, so its fit cannot be "
            "trusted: refit from new starts (escalation={'attempts': 2}, as studies do), and "
            "check the density where it went in float64 (jax.enable_x64), e.g. a cancelling "
            "difference of large terms.")


def _nan_message(tree: xr.DataTree, count: int, found: np.ndarray, batched: bool) -> str:
    """Where the density first was NaN: the chain, and the draw its transition left from."""
    met = tree.sample_stats["nan_log_density"].transpose(..., "chain", "draw").values
    first = tuple(np.argwhere(met)[0])
    where = dict(zip((("dataset",) if batched else ()) + ("chain", "draw"), first, strict=True))
    posterior = tree.posterior.to_dataset()
    before = where | {"draw": max(where["draw"] - 1, 0)}
    scalars = [name for name, da in posterior.data_vars.items()
               if set(da.dims) <= {"dataset", "chain", "draw"}][:4]
    values = ", ".join(f"{name}={float(posterior[name].isel(before)):.3g}" for name in scalars)
    chain = f"chain {where['chain']}" + (f" of dataset {where['dataset']}" if batched else "")
    return (f"The log density was NaN (or +inf) in {count} transitions{_where(found, batched)}, "
            f"first in {chain} at draw {where['draw']}, from near {values}. NUTS reads a NaN as a "
            "divergence and never goes there, so the posterior is cut off: return -inf where "
            "the parameters leave the likelihood's support (jnp.where(valid, log_density, "
            "-jnp.inf)) and check the density there in float64 (jax.enable_x64).")


def _reparameterize(attrs) -> str:
    """What to try besides target_accept against divergences, for the levels fitted."""
    centered = attrs.get("levels_centered", "")
    non_centered = attrs.get("levels_non_centered", "")
    if centered:
        return f", or make the centered levels non-centered (centered=False: {centered})"
    if non_centered:
        return (f"; the levels are non-centered already ({non_centered}): where each group's "
                "data pin its value (many rows per group), centered=True may fit better")
    return (", or look for a parameter driven to the edge of its support (a scale near 0): "
            "a tighter prior there")


def check(tree: xr.DataTree, diagnosed: xr.Dataset | None = None, *,
          rhat_limit: float = RHAT_LIMIT) -> list[str]:
    """Messages for every diagnostic past its threshold, each with what to try.

    One message per kind of problem (listing the datasets), so a sweep of many fits gives a
    few lines, not thousands. `diagnosed`: `diagnose(tree)` when already at hand (`hj.sample`
    keeps it in `fit_stats`); computed when None. `rhat_limit`: the largest R-hat allowed
    (`hj.sample` passes its `escalation.max_rhat`).

    Example:
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> for message in hj.check(result):  # 2 chains of 50 draws are too few
        ...     print(message)
        R-hat up to ... > 1.01: the chains have not mixed; run longer (more warmup and draws) or
        check the model.
        Effective sample size down to ... < 200: means and quantiles are unreliable; draw more.
    """
    diag = diagnose(tree) if diagnosed is None else diagnosed
    attrs = tree.posterior.attrs
    batched = "dataset" in diag.dims
    chains = tree.posterior.sizes["chain"]
    target = attrs.get("target_accept", 0.8)
    depth = attrs.get("max_tree_depth", 10)

    def bad(values: xr.DataArray) -> np.ndarray:
        return np.flatnonzero(np.atleast_1d(values.values))

    messages = []
    if "init_failures" in diag and (found := bad(diag.init_failures > 0)).size:
        messages.append(
            f"{int(diag.init_failures.sum())} chains{_where(found, batched)} never found a finite "
            "starting point; their draws are not usable (see the warning at initialization).")
    stuck = stuck_chains(tree)
    if bool(stuck.any()):
        messages.append(_stuck_message(tree, stuck))
    if "nan_log_density" in diag and (found := bad(diag.nan_log_density > 0)).size:
        messages.append(_nan_message(tree, int(diag.nan_log_density.sum()), found, batched))
    if (found := bad(diag.divergences > 0)).size:
        stats = tree.sample_stats
        at_nan = (int((stats.diverging & stats.nan_log_density).sum())
                  if "nan_log_density" in stats else 0)
        messages.append(
            f"{int(diag.divergences.sum())} divergences{_where(found, batched)} after warmup"
            + (f" ({at_nan} at a NaN log density: see above)" if at_nan else "")
            + f": raise target_accept (now {target}){_reparameterize(attrs)}.")
    if (found := bad(diag.treedepth_hits > 0)).size:
        messages.append(
            f"{int(diag.treedepth_hits.sum())} transitions{_where(found, batched)} hit the "
            f"maximum tree depth ({depth}): raise max_tree_depth or reparameterize.")
    if (found := bad(diag.max_rhat > rhat_limit)).size:
        worst = float(diag.max_rhat.max())
        messages.append(
            f"R-hat up to {worst:.3f} > {rhat_limit}{_where(found, batched)}: the chains have not "
            "mixed; run longer (more warmup and draws) or check the model.")
    low = ESS_PER_CHAIN * chains
    ess = np.minimum(diag.min_ess_bulk, diag.min_ess_tail)
    if (found := bad(ess < low)).size:
        messages.append(
            f"Effective sample size down to {float(ess.min()):.0f} < {low}"
            f"{_where(found, batched)}: means and quantiles are unreliable; draw more.")
    return messages


def warn_problems(tree: xr.DataTree, diagnosed: xr.Dataset | None = None, *,
                  rhat_limit: float = RHAT_LIMIT) -> list[str]:
    """Issue each of `check`'s messages as a `UserWarning`; return them.

    Example:
        >>> import warnings
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> with warnings.catch_warnings(record=True) as issued:
        ...     warnings.simplefilter("always")
        ...     messages = warn_problems(result)
        >>> [str(warning.message) for warning in issued] == messages == hj.check(result)
        True
    """
    messages = check(tree, diagnosed, rhat_limit=rhat_limit)
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    return messages
