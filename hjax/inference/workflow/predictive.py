"""The workflow after a fit: predictive draws, pointwise log likelihood, PSIS-LOO, priors.

`posterior_predictive` adds to a fit (one dataset or many) the groups ArviZ's workflow reads:
`posterior_predictive` (observations simulated from each draw), `log_likelihood` (per draw and
observation: PSIS-LOO, `loo_pit`) and `log_prior` (per draw, each parameter with a prior of
its own: power-scaling sensitivity). `prior_predictive` draws parameters and data from the
prior. `loo` is arviz-stats' PSIS-LOO with its Pareto-k diagnostic turned into a warning that
names the observations; `compare` and `psense_summary` are arviz-stats' own, on these groups.

Example:
    >>> fit = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
    >>> fit = hj.posterior_predictive(model, fit, key=1)
    >>> fit.posterior_predictive["y"].dims, fit.log_likelihood["y"].shape
    (('chain', 'draw', 'obs'), (2, 50, 8))
"""

from __future__ import annotations

import warnings
from functools import partial

import arviz_stats as azs
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from hjax.inference.nuts.keys import as_key
from hjax.inference.workflow.results import OBS
from hjax.model.data import n_observations

__all__ = ["PARETO_K", "loo", "loo_per_dataset", "posterior_predictive", "prior_predictive",
           "prior_sensitivity"]

PARETO_K = 0.7  # above it, PSIS-LOO's estimate for an observation is unreliable


def fit_data(model, fit: xr.DataTree, dataset: int | None = None) -> dict[str, jax.Array]:
    """The prepared data a fit was made with, from its `observed_data` and `constant_data`
    (index columns stored as `<group>_index` get their names back)."""
    columns = {}
    for group in ("observed_data", "constant_data"):
        if group not in fit.children:
            continue
        for name, values in fit[group].to_dataset().data_vars.items():
            base = name.removesuffix("_index")
            key = base if name.endswith("_index") and base in model.sizes else name
            columns[key] = values.values if dataset is None else values.isel(
                dataset=dataset).values
    return model.prepare(columns)


def _draw_values(posterior: xr.Dataset, names, dataset: int | None) -> dict[str, np.ndarray]:
    """Each reported value's draws, chains and draws flattened: (S, *dims)."""
    out = {}
    for name in names:
        values = posterior[name] if dataset is None else posterior[name].isel(dataset=dataset)
        values = values.transpose("chain", "draw", ...).values
        out[name] = values.reshape(-1, *values.shape[2:])
    return out


def _per_draw(model, data, values, key):
    """Simulated observations, pointwise log likelihood and hyperprior densities of a draw."""
    p = model.free_parameters(values, data)
    n_obs = n_observations(model, data)
    slots = {slot: jnp.broadcast_to(v, (n_obs,)) for slot, v in model._slot_values(p, data).items()}
    columns = {arg: data[k] for arg, k in model.likelihood.data_keys().items()}
    simulated = model.likelihood.sample(key, **slots, **columns)
    predicted = {name: simulated[arg] for arg, name in model.likelihood.observed_keys().items()}
    return predicted, model.pointwise_log_likelihood(p, data), model.hyperpriors(p)


def _one_dataset(model, fit, key, dataset):
    data = fit_data(model, fit, dataset)
    values = _draw_values(fit.posterior.to_dataset(), list(model.param_dims), dataset)
    n_draws = next(iter(values.values())).shape[0]
    keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(n_draws))
    run = jax.jit(jax.vmap(partial(_per_draw, model), in_axes=(None, 0, 0)))
    return jax.tree.map(np.asarray, run(data, values, keys))


def posterior_predictive(model, fit: xr.DataTree, *, key) -> xr.DataTree:
    """`fit` with `posterior_predictive`, `log_likelihood` and `log_prior` groups.

    Args:
        model: the fitted `hj.Model`.
        fit: an `hj.sample` result (one dataset or a batch).
        key: a PRNG key (or an int seed) for the simulated observations.

    Returns:
        A new DataTree: the fit's groups, plus `posterior_predictive` (each observed column
        per draw), `log_likelihood` (named after the first observed column; per draw and
        observation) and `log_prior` (per draw, each parameter with a prior of its own).
    """
    key = as_key(key)
    chains, draws = fit.posterior.sizes["chain"], fit.posterior.sizes["draw"]
    batched = "dataset" in fit.posterior.dims
    parts = [_one_dataset(model, fit, jax.random.fold_in(key, d), d if batched else None)
             for d in range(fit.posterior.sizes["dataset"] if batched else 1)]

    lead = ("dataset", "chain", "draw") if batched else ("chain", "draw")

    def gathered(pick):
        """One output over datasets and draws: (dataset,) chain, draw, ..."""
        arrays = [pick(part) for part in parts]  # each (chains * draws, ...)
        arrays = [a.reshape(chains, draws, *a.shape[1:]) for a in arrays]
        return np.stack(arrays) if batched else arrays[0]

    observed = list(model.likelihood.observed_keys().values())
    predictive = xr.Dataset({name: (lead + (OBS,), gathered(lambda p, n=name: p[0][n]))
                             for name in observed})
    log_lik = xr.Dataset({observed[0]: (lead + (OBS,), gathered(lambda p: p[1]))})
    priors = xr.Dataset({name: (lead, gathered(lambda p, n=name: p[2][n]))
                         for name in parts[0][2]})
    tree = fit.copy()
    tree["posterior_predictive"] = xr.DataTree(predictive)
    tree["log_likelihood"] = xr.DataTree(log_lik)
    tree["log_prior"] = xr.DataTree(priors)
    return tree


def prior_predictive(model, design, *, key, draws: int = 500) -> xr.DataTree:
    """Parameters and observations drawn from the prior, as ArviZ's `prior` and
    `prior_predictive` groups (dims chain = 1, draw).

    Example:
        >>> prior = hj.prior_predictive(model, design, key=0, draws=200)
        >>> prior.prior_predictive["y"].shape
        (1, 200, 8)
    """
    prepared = model.prepare(design, observed=False)
    keys = jax.random.split(as_key(key), draws)
    truths, simulated = jax.jit(jax.vmap(model.simulate, in_axes=(0, None)))(keys, prepared)
    observed = list(model.likelihood.observed_keys().values())
    dims, coords = model.param_dims, model.coords

    def one_chain(array):
        return np.asarray(array)[None]

    prior = xr.Dataset({name: (("chain", "draw", *dims[name]), one_chain(values))
                        for name, values in truths.items()},
                       coords={d: list(coords[d]) for name in truths for d in dims[name]})
    predictive = xr.Dataset({name: (("chain", "draw", OBS), one_chain(simulated[name]))
                             for name in observed})
    return xr.DataTree.from_dict({"prior": prior, "prior_predictive": predictive})


def loo(fit: xr.DataTree, **options) -> azs.ELPDData:
    """PSIS-LOO (arviz-stats) of a fit with a `log_likelihood` group, warning about the
    observations whose Pareto k is above 0.7 (their estimate is unreliable).

    Example:
        >>> fit = hj.posterior_predictive(model, hj.sample(model, data, key=0, chains=2,
        ...                               warmup=100, draws=50, warn=False), key=1)
        >>> round(float(hj.loo(fit).elpd), 0)  # doctest: +SKIP
    """
    result = azs.loo(fit, pointwise=True, **options)
    k = np.asarray(result.pareto_k).ravel()
    bad = np.flatnonzero(k > PARETO_K)
    if bad.size:
        shown = ", ".join(f"{i} (k = {k[i]:.2f})" for i in bad[:8])
        warnings.warn(
            f"PSIS-LOO is unreliable for {bad.size} observation(s) with Pareto k > {PARETO_K}: "
            f"{shown}{', ...' if bad.size > 8 else ''}. Refit without them for their exact "
            "leave-one-out density, or try arviz_stats.loo_moment_match.", UserWarning,
            stacklevel=2)
    return result


def _dataset(fit: xr.DataTree, d: int) -> xr.DataTree:
    """Dataset `d` of a batched fit, as a fit of its own."""
    return xr.DataTree.from_dict({
        name: node.to_dataset().isel(dataset=d) if "dataset" in node.dims else node.to_dataset()
        for name, node in fit.children.items()})


def _per_dataset(fit: xr.DataTree) -> list[xr.DataTree]:
    if "dataset" not in fit.posterior.dims:
        return [fit]
    return [_dataset(fit, d) for d in range(fit.posterior.sizes["dataset"])]


def _scalars(values: xr.Dataset) -> dict[str, float]:
    """Stan-style labels (theta[A]) -> value, over every element of every variable."""
    out = {}
    for name, da in values.data_vars.items():
        if not da.dims:
            out[name] = float(da)
            continue
        for index in np.ndindex(*da.shape):
            labels = [str(da[d].values[i]) if d in da.coords else str(i)
                      for d, i in zip(da.dims, index, strict=True)]
            out[f"{name}[{', '.join(labels)}]"] = float(da.values[index])
    return out


def prior_sensitivity(fit: xr.DataTree, *, threshold: float = 0.05) -> xr.Dataset:
    """Power-scaling sensitivity (priorsense, by arviz-stats' `psense`) of every scalar to the
    prior and to the likelihood, per dataset of a batched fit: prior sensitivity above
    `threshold` means an informative prior, likelihood sensitivity below it a weak likelihood.

    Args:
        fit: a fit with `log_likelihood` and `log_prior` groups (`hj.posterior_predictive`).
        threshold: where a sensitivity counts.

    Returns:
        dims (dataset, variable) or (variable,): `prior`, `likelihood`, and `prior_sensitive`,
        `likelihood_weak` (bool).

    Example:
        >>> fit = hj.posterior_predictive(model, hj.sample(model, data, key=0, chains=2,
        ...                               warmup=100, draws=50, warn=False), key=1)
        >>> sorted(prior_sensitivity(fit).data_vars)
        ['likelihood', 'likelihood_weak', 'prior', 'prior_sensitive']
    """
    rows = []
    for one in _per_dataset(fit):
        prior = _scalars(azs.psense(one, group="prior"))
        likelihood = _scalars(azs.psense(one, group="likelihood"))
        rows.append((list(prior), [prior[k] for k in prior], [likelihood[k] for k in prior]))
    labels = rows[0][0]
    lead = ("dataset", "variable") if "dataset" in fit.posterior.dims else ("variable",)
    pick = (lambda i: np.array([r[i] for r in rows])) if len(lead) == 2 else (
        lambda i: np.array(rows[0][i]))
    out = xr.Dataset({"prior": (lead, pick(1)), "likelihood": (lead, pick(2))},
                     coords={"variable": labels})
    return out.assign(prior_sensitive=out.prior > threshold,
                      likelihood_weak=out.likelihood < threshold)


def loo_per_dataset(fit: xr.DataTree) -> xr.Dataset:
    """PSIS-LOO of each dataset of a batched fit (one with a `log_likelihood` group):
    `elpd_loo`, its `se`, `p_loo` and the observations with Pareto k above 0.7.

    Example:
        >>> loo_per_dataset(fit).elpd_loo.dims  # doctest: +SKIP
        ('dataset',)
    """
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the count of high k is the per-dataset record
        for one in _per_dataset(fit):
            result = azs.loo(one, pointwise=True)
            results.append((float(result.elpd), float(result.se), float(result.p),
                            int(np.sum(np.asarray(result.pareto_k) > PARETO_K))))
    columns = np.array(results).T
    return xr.Dataset({name: ("dataset", values) for name, values in zip(
        ("elpd_loo", "elpd_loo_se", "p_loo", "high_pareto_k"), columns, strict=True)})
