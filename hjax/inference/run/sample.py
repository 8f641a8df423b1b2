"""`hj.sample`: NUTS over many chains and many datasets in one compiled program."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray

from hjax.errors import ModelError
from hjax.inference.nuts.keys import as_key, sampling_key
from hjax.inference.nuts.progress import progress_bar
from hjax.inference.run.batching import Layout, as_batch, map_chunks, shared_columns
from hjax.inference.run.chunks import Chunk, ChunkOutput, Program, Runtime, run_chunk
from hjax.inference.run.escalation import Run, attempt_key, escalate
from hjax.inference.run.init import explain_nonfinite
from hjax.inference.run.samplers import sampler_for
from hjax.inference.workflow import diagnostics
from hjax.inference.workflow.results import STAT_NAMES, starts_dataset, to_datatree
from hjax.model.reduction import plan_reduction
from hjax.model.regular_index import with_regular_indices
from hjax.settings import FitSettings, validated

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["fitted", "sample"]


def _report_init_failures(model: Model, out, data, batched: bool) -> None:
    failed = np.argwhere(~out.init_ok)
    if not len(failed):
        return
    lines = []
    for d, c in failed[:5]:
        position = {k: jnp.asarray(v[d, c]) for k, v in out.init_positions.items()}
        dataset = {k: v[d] for k, v in data.items()}
        reason = explain_nonfinite(position, partial(model.logdensity, data=dataset))
        where = f"dataset {d}, " if batched else ""
        lines.append(f"  {where}chain {c}: {reason}")
    more = f"\n  ... and {len(failed) - 5} more" if len(failed) > 5 else ""
    message = (
        f"No finite starting point after {out.init_tries.max()} draws for "
        f"{len(failed)} chain(s) (uniform draws, then prior draws, then prior draws moved "
        "inside the bounds the likelihood declares):\n" + "\n".join(lines) + more
        + "\nCheck the priors' supports and the data; a custom likelihood whose parameters the "
        "data bound (a shift below every RT) declares it: hj.Custom(..., bounds={'shift': "
        "hj.Below('rt')})."
    )
    if not batched:
        raise ModelError(message)
    warnings.warn(message + "\nThose chains are kept (as failed) in the results.", UserWarning,
                  stacklevel=3)


def sample(
    model: Model,
    data: Mapping | Sequence[Mapping],
    *,
    key: PRNGKeyArray | int,
    settings: FitSettings | Mapping | None = None,
    progress: bool | None = None,
    warn: bool = True,
    first_dataset: int = 0,
    **options,
) -> xr.DataTree:
    """Fit `model` to one dataset or many with NUTS and Stan's window adaptation.

    Each chain adapts its own step size and mass matrix. Datasets are spread over the local
    devices in chunks of `batch_size`, all through one compiled program. The default sampler,
    `hj.LanesNUTS()` ("nuts"), runs each device's chains on `lanes` lanes, so no chain waits
    for another's; `hj.BlackJAXNUTS()` ("blackjax") vmaps BlackJAX's NUTS kernel
    (`hjax.inference.run.samplers`), with the same transitions. Dataset d's randomness is
    `fold_in(key, d)`: its chains are the same whatever the layout or sampler (bit for bit
    within a layout, up to rounding across). Changing `warmup`, `target_accept`, the
    initialisation's radius or `thin` reuses the compiled program (`hj.clear_caches()` drops
    the programs kept).

    On CPU the local devices are the cores: `import hjax` asks JAX for one CPU device per
    core (`HJAX_CPU_DEVICES` overrides it; a count set before the import, by `XLA_FLAGS` or
    `jax_num_cpu_devices`, is kept; see `hjax.devices`), and datasets are spread over them.

    Args:
        model: an `hj.Model`.
        data: one dataset (a dict of raw or prepared columns), a batch (a dict whose arrays
            lead with a dataset axis) or a list of same-shaped datasets. Each is validated
            with `model.prepare`.
        key: a PRNG key (`jax.random.key(0)`) or an int seed.
        settings: an `hj.FitSettings` (or a dict of its fields); `options` override them.
        progress: show a progress bar; by default when stderr is a terminal.
        warn: issue a warning for each diagnostic problem (divergences, R-hat, ESS, ...).
        first_dataset: global index of this call's first dataset, for a sweep split over
            calls (batches of a study, jobs of a cluster): dataset d uses
            `fold_in(key, first_dataset + d)`.
        **options: any field of `hj.FitSettings`: sampler (`hj.LanesNUTS()`, or "nuts" /
            "blackjax"), chains (4), warmup (1000, or 300 after a warm start), draws (1000),
            thin (1), target_accept (0.8), dense_mass, max_tree_depth (10), init
            (`hj.InitUniform(radius=2)`; `hj.InitPrior()`, `hj.ADVI()`, `hj.Pathfinder()`, or
            their names), batch_size, devices, save_warmup, escalation, reduce; and the
            sampler's and initialisation's options as settings: lanes, vectorize,
            init_radius.

    Returns:
        An ArviZ DataTree with `posterior` (constrained values named as by
        `model.constrain`, dims from `model.param_dims`), `sample_stats` (lp, diverging,
        tree_depth, n_steps, energy, acceptance_rate, step_size, nan_log_density),
        `observed_data`, `constant_data`, `start` (each chain's starting point, named as the
        posterior) and `fit_stats` (per chain: init_ok, init_tries, the adapted
        step_size and inverse_mass_matrix over the flattened unconstrained position; per
        dataset: `hj.diagnose`'s diagnostics of the draws returned, and the attempts).
        A batched fit has a leading `dataset` dim everywhere. The attrs hold the settings,
        `compile_time` and `sampling_time` (seconds, apart), gradient counts and the
        lockstep efficiency.

    Example:
        >>> model, design = hj.catalog.eight_schools()
        >>> data = design | {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12])}
        >>> result = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> result.posterior["theta"].dims, result.posterior["theta"].shape
        (('chain', 'draw', 'school'), (2, 50, 8))
    """
    settings = validated(FitSettings, "hj.sample", settings, **options)
    key = as_key(key)
    progress = sys.stderr.isatty() if progress is None else bool(progress)
    batch, batched = as_batch(model, data)
    host_data = {k: np.asarray(v) for k, v in batch.items()}
    index = first_dataset + np.arange(next(iter(batch.values())).shape[0])
    fitted_model, fitted_batch, reduction = fitted(model, host_data, settings.reduce)

    def fit(attempt_settings: FitSettings, rows: np.ndarray, attempt: int) -> Run:
        run = _run(fitted_model, attempt_settings, {k: v[rows] for k, v in fitted_batch.items()},
                   attempt_key(key, attempt), progress, index[rows])
        return run._replace(attrs=run.attrs | {"reduction": reduction})

    def diagnose(run: Run, rows: np.ndarray) -> xr.Dataset:
        rows_data = {k: v[rows] for k, v in host_data.items()}
        return diagnostics.diagnose(_to_tree(model, settings, run, rows_data, batched=True))

    run, attempts = escalate(settings, len(index), fit, diagnose)
    _report_init_failures(model, run.out, host_data, batched)
    tree = _to_tree(model, settings, run, host_data, batched, attempts)
    starts = _constrained_starts(model, run.out.init_positions, host_data)
    tree["start"] = xr.DataTree(starts_dataset(model, starts, batched))
    if warn:
        diagnostics.warn_problems(tree, tree.fit_stats.to_dataset()[list(diagnostics.DIAGNOSTICS)],
                                  rhat_limit=settings.escalation.max_rhat)
    return tree


@eqx.filter_jit
def _constrained_starts(model: Model, positions, data):
    """Each chain's starting point as the posterior names its values (datasets x chains)."""
    return jax.vmap(lambda p, d: jax.vmap(lambda q: model.constrain(q, d))(p))(positions, data)


def fitted(model: Model, host_data: dict[str, np.ndarray], reduce: bool = True):
    """The model and batch `hj.sample` fits to the batch `host_data`, and the reduction it
    used ("none"): the exact reduction of `model` where one applies and `reduce` (the same
    posterior), and levels whose index column is a regular pattern of their groups marked
    (`with_regular_indices`: the same density, no gather).

    Example:
        >>> model, design = hj.catalog.eight_schools()
        >>> y = np.array([[28.0, 8, -3, 7, -1, 1, 18, 12]])  # a batch of one dataset
        >>> batch = {k: np.asarray(v)[None] for k, v in model.prepare(design | {"y": y[0]}).items()}
        >>> fitted_model, fitted_batch, reduction = fitted(model, batch)
        >>> reduction
        'none'
    """
    plan = plan_reduction(model, host_data) if reduce else None
    reduced, batch = (plan.model, plan.batch) if plan else (model, host_data)
    return (with_regular_indices(reduced, batch), batch,
            plan.describe() if plan else "none")


def _run(model: Model, settings: FitSettings, batch, key, progress: bool,
         dataset_index: np.ndarray) -> Run:
    """Fit every dataset of `batch` chunk by chunk (dataset b as `dataset_index[b]`); the
    outputs and the run's attrs."""
    n_datasets = next(iter(batch.values())).shape[0]
    sampler = sampler_for(settings, model, {k: v[0] for k, v in batch.items()})
    # An explicit batch_size is kept even above the number of datasets (padding), so that the
    # calls of a sweep split into batches, short last one included, share one compile.
    layout = sampler.layout(n_datasets, chains=settings.chains, batch_size=settings.batch_size,
                            devices=settings.devices)
    warmup = settings.warmup_iterations
    program = Program(sampler=sampler, layout=layout, chains=settings.chains,
                      draws=settings.draws, saved_warmup=warmup if settings.save_warmup else 0,
                      dense_mass=settings.dense_mass, max_tree_depth=settings.max_tree_depth,
                      progress=progress)
    runtime = Runtime.of(warmup, settings.target_accept, settings.init, settings.thin)
    chain_key, shared = sampling_key(key), shared_columns(batch)
    global_index = jnp.asarray(dataset_index, jnp.int32)
    compile_seconds = 0.0
    total = sampler.progress_total(n_datasets, settings.chains, layout,
                                   warmup + settings.draws * settings.thin)
    start = time.perf_counter()
    with progress_bar(total, "hjax NUTS", progress) as bar:
        done = [0]

        def on_chunk(n):
            done[0] += n
            if bar is not None:
                bar.set_postfix_str(f"{done[0]}/{n_datasets} datasets")

        def fit(index, valid, chunk):
            nonlocal compile_seconds
            varying = {k: v for k, v in chunk.items() if k not in shared}
            out, seconds = run_chunk(model, program, runtime, chain_key,
                                     Chunk(global_index[index], valid, varying, shared))
            compile_seconds += seconds
            return out

        out = map_chunks(fit, batch, layout.size, on_chunk, shards=layout.devices)
        jax.effects_barrier()
    elapsed = time.perf_counter() - start
    return Run(out, _attrs(settings, sampler.attrs(layout), layout, out, warmup,
                            elapsed - compile_seconds, compile_seconds))


def _attrs(settings: FitSettings, sampler_attrs: dict, layout: Layout, out: ChunkOutput,
           warmup: int, sampling_time: float, compile_time: float) -> dict:
    useful = int(out.warmup_grad_evals.sum() + out.stats.n_steps.sum())
    executed = int(round(float(out.grad_evals_executed.sum())))
    return {
        **sampler_attrs,
        "chains": settings.chains, "warmup": warmup, "draws": settings.draws,
        "thin": settings.thin,
        "target_accept": settings.target_accept, "dense_mass": int(settings.dense_mass),
        "max_tree_depth": settings.max_tree_depth, "init": settings.init.name,
        "batch_size": layout.size, "backend": jax.default_backend(),
        "devices": layout.devices, "sampling_time": sampling_time,
        "compile_time": compile_time,
        "grad_evals": useful + int(out.warm_start_grad_evals.sum()),
        "grad_evals_warm_start": int(out.warm_start_grad_evals.sum()),
        "grad_evals_executed": executed,
        "lockstep_efficiency": useful / executed if executed else 1.0,
    }


def _to_tree(model: Model, settings: FitSettings, run: Run, host_data, batched: bool,
             attempts: xr.Dataset | None = None) -> xr.DataTree:
    out, attrs = run
    stats = {name: getattr(out.stats, name) for name in STAT_NAMES}
    warmup_stats = (None if out.warmup_stats is None
                    else {name: getattr(out.warmup_stats, name) for name in STAT_NAMES})
    tree = to_datatree(model, out.draws, stats, host_data, batched=batched, attrs=attrs,
                       warmup_draws=out.warmup_draws, warmup_stats=warmup_stats)
    lead = ("dataset", "chain") if batched else ("chain",)
    pick = (lambda x: x) if batched else (lambda x: x[0])
    mass_dims = ("unconstrained", "unconstrained_2")[:out.inverse_mass_matrix.ndim - 2]
    fit_stats = xr.Dataset({
        "init_ok": (lead, pick(out.init_ok)),
        "init_tries": (lead, pick(out.init_tries)),
        "step_size": (lead, pick(out.step_size)),
        "inverse_mass_matrix": (lead + mass_dims, pick(out.inverse_mass_matrix)),
        "warm_start_grad_evals": (lead[:-1], pick(out.warm_start_grad_evals)),
    }, attrs=attrs)
    if attempts is not None:
        fit_stats = fit_stats.merge(attempts if batched else attempts.isel(dataset=0))
    tree["fit_stats"] = xr.DataTree(fit_stats)
    return tree


