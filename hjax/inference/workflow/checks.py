"""Posterior predictive checks: the plot that suits the outcome, from a fit's predictive draws.

Continuous outcomes get arviz-plots' predictive density overlay (`plot_ppc_dist`), counts its
rootogram (`plot_ppc_rootogram`: bars), and response-time models (Wiener, LBA) a
quantile-probability plot, which arviz-plots has no equivalent of: for each response, its
probability against the 0.1, 0.3, 0.5, 0.7 and 0.9 quantiles of its RTs, observed (points)
and predicted (the draws' median and 90 % interval). `by` draws one panel per level of a
group. `plot_loo_pit` is arviz-plots' LOO-PIT calibration plot.

Example:
    >>> fit = hj.posterior_predictive(model, hj.sample(model, data, key=0, chains=2,
    ...                               warmup=100, draws=50, warn=False), key=1)
    >>> _ = hj.plot_ppc(model, fit)
"""

from __future__ import annotations

import math
from pathlib import Path

import arviz_plots as azp
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from hjax.errors import DataError, UserInputError
from hjax.model.likelihoods import BernoulliLogit, Binomial, Poisson

__all__ = ["QUANTILES", "plot_loo_pit", "plot_ppc", "quantile_probabilities"]

QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)
COUNTS = (BernoulliLogit, Binomial, Poisson)


def _is_rt_model(model) -> bool:
    keys = model.likelihood.observed_keys()
    return set(keys) == {"rt", "choice"}


def quantile_probabilities(rt: np.ndarray, choice: np.ndarray, responses) -> np.ndarray:
    """(response, 1 + quantiles): each response's probability, then its RT quantiles (NaN for
    a response never given).

    Example:
        >>> quantile_probabilities(np.array([0.3, 0.5, 0.4, 0.9]), np.array([1, 1, 0, 1]), [0, 1])
        array([[0.25, 0.4 , 0.4 , 0.4 , 0.4 , 0.4 ],
               [0.75, 0.34, 0.42, 0.5 , 0.66, 0.82]])
    """
    rows = []
    for response in responses:
        times = rt[choice == response]
        quantiles = np.quantile(times, QUANTILES) if times.size else np.full(len(QUANTILES),
                                                                             np.nan)
        rows.append([times.size / rt.size, *quantiles])
    return np.array(rows)


def _group_index(fit: xr.DataTree, by: str) -> np.ndarray:
    data = fit.constant_data
    name = f"{by}_index" if f"{by}_index" in data else by
    if name not in data:
        raise DataError(f"by='{by}': the fit's data have no column '{by}'; they have "
                        f"{sorted(data.data_vars)}.")
    return np.asarray(data[name].values)


def _quantile_probability(model, fit: xr.DataTree, by: str | None, path) -> Figure:
    rt, choice = (np.asarray(fit.observed_data[k].values) for k in ("rt", "choice"))
    predicted_rt = fit.posterior_predictive["rt"].values.reshape(-1, rt.size)
    predicted_choice = fit.posterior_predictive["choice"].values.reshape(-1, rt.size)
    responses = sorted(np.unique(np.concatenate([choice, predicted_choice.ravel()])).tolist())
    groups = _group_index(fit, by) if by else np.zeros(rt.size, int)
    labels = list(model.coords[by]) if by else ["all trials"]
    cols = min(4, len(labels))
    fig = Figure(figsize=(3.4 * cols, 2.9 * math.ceil(len(labels) / cols)), layout="constrained")
    axes = fig.subplots(math.ceil(len(labels) / cols), cols, squeeze=False).ravel()
    for ax in axes[len(labels):]:
        ax.set_axis_off()
    for g, (ax, label) in enumerate(zip(axes, labels, strict=False)):
        rows = groups == g
        seen = quantile_probabilities(rt[rows], choice[rows], responses)
        draws = np.stack([quantile_probabilities(r[rows], c[rows], responses)
                          for r, c in zip(predicted_rt, predicted_choice, strict=True)])
        low, mid, high = np.nanquantile(draws, [0.05, 0.5, 0.95], axis=0)
        for j in range(len(QUANTILES)):
            ax.errorbar(mid[:, 0], mid[:, 1 + j], yerr=[mid[:, 1 + j] - low[:, 1 + j],
                                                        high[:, 1 + j] - mid[:, 1 + j]],
                        fmt="-", color="C0", alpha=0.6, lw=1,
                        label="predicted (median, 90 %)" if j == 0 else None)
            ax.plot(seen[:, 0], seen[:, 1 + j], "o", color="k", ms=4,
                    label="observed" if j == 0 else None)
        ax.set(title=str(label), xlabel="response probability", ylabel="RT quantile (s)",
               xlim=(-0.02, 1.02))
    axes[0].legend(fontsize="x-small")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def plot_ppc(model, fit: xr.DataTree, *, by: str | None = None,
             path: str | Path | None = None):
    """The posterior predictive check that suits the model's outcome (see the module).

    Args:
        model: the fitted `hj.Model`.
        fit: a fit with a `posterior_predictive` group (`hj.posterior_predictive`).
        by: a group (e.g. "participant") to draw a panel per level of (RT models).
        path: where to save the figure.

    Returns:
        A matplotlib Figure (RT models) or an arviz-plots PlotCollection.
    """
    if "posterior_predictive" not in fit.children:
        raise UserInputError("The fit has no posterior_predictive group: call "
                             "hj.posterior_predictive(model, fit, key=...) first.")
    if _is_rt_model(model):
        return _quantile_probability(model, fit, by, path)
    plot = azp.plot_ppc_rootogram if isinstance(model.likelihood, COUNTS) else azp.plot_ppc_dist
    collection = plot(fit)
    if path is not None:
        collection.savefig(path)
    return collection


def plot_loo_pit(fit: xr.DataTree, *, path: str | Path | None = None):
    """arviz-plots' LOO-PIT calibration plot of a fit with `posterior_predictive` and
    `log_likelihood` groups.

    Example:
        >>> fit = hj.posterior_predictive(model, hj.sample(model, data, key=0, chains=2,
        ...                               warmup=100, draws=50, warn=False), key=1)
        >>> _ = hj.plot_loo_pit(fit)
    """
    collection = azp.plot_loo_pit(fit)
    if path is not None:
        collection.savefig(path)
    return collection
