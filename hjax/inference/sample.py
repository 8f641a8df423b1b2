"""`hj.sample`: NUTS over many chains and many datasets in one compiled program."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray

from hjax.inference import diagnostics
from hjax.inference.batching import as_batch, map_chunks, plan_layout, shared_columns
from hjax.inference.init import explain_nonfinite
from hjax.inference.keys import sampling_key
from hjax.inference.progress import progress_bar
from hjax.inference.results import STAT_NAMES, to_datatree
from hjax.inference.run import FitConfig, run_chunk
from hjax.inference.warmstart import METHODS

__all__ = ["sample"]

WARMUP = 1000
WARM_START_WARMUP = 300


SAMPLERS = ("nuts", "blackjax")


def _check_settings(config: FitConfig, batch_size, lanes, vectorize, devices) -> None:
    problems = []
    if config.sampler not in SAMPLERS:
        problems.append(f"sampler must be 'nuts' or 'blackjax'; got {config.sampler!r}")
    elif config.sampler == "nuts" and vectorize is not None:
        problems.append("vectorize applies to sampler='blackjax'; sampler='nuts' takes lanes")
    elif config.sampler == "blackjax" and lanes is not None:
        problems.append("lanes applies to sampler='nuts'; sampler='blackjax' takes vectorize")
    if config.chains < 1:
        problems.append(f"chains must be >= 1; got {config.chains}")
    if config.draws < 1 or config.warmup < 0:
        problems.append(f"need draws >= 1 and warmup >= 0; got {config.draws}, {config.warmup}")
    if not 0 < config.target_accept < 1:
        problems.append(f"target_accept must be in (0, 1); got {config.target_accept}")
    if config.init not in (None, "prior", *METHODS):
        problems.append(f"init must be None, 'prior', 'advi' or 'pathfinder'; got "
                        f"{config.init!r}")
    for name, value in (("batch_size", batch_size), ("lanes", lanes),
                        ("vectorize", vectorize), ("devices", devices)):
        if value is not None and value < 1:
            problems.append(f"{name} must be >= 1; got {value}")
    if problems:
        raise ValueError("hj.sample: " + "; ".join(problems) + ".")


def _report_init_failures(model, out, data, batched: bool) -> None:
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
        f"{len(failed)} chain(s):\n" + "\n".join(lines) + more + "\nCheck the priors' supports "
        "and the data; a smaller init_radius keeps starts nearer 0 in unconstrained space, and "
        "init='prior' starts from prior draws (e.g. a non-decision time below the RTs)."
    )
    if not batched:
        raise RuntimeError(message)
    warnings.warn(message + "\nThose chains are kept (as failed) in the results.", UserWarning,
                  stacklevel=3)


def sample(
    model,
    data: Mapping | Sequence[Mapping],
    *,
    key: PRNGKeyArray,
    sampler: str = "nuts",
    chains: int = 4,
    warmup: int | None = None,
    draws: int = 1000,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    init: str | None = None,
    init_radius: float = 2.0,
    batch_size: int | None = None,
    lanes: int | None = None,
    vectorize: int | None = None,
    devices: int | None = None,
    save_warmup: bool = False,
    progress: bool | None = None,
    warn: bool = True,
    first_dataset: int = 0,
) -> xr.DataTree:
    """Fit `model` to one dataset or many with NUTS and Stan's window adaptation.

    Each chain adapts its own step size and (diagonal, or dense) mass matrix. Datasets are
    spread over the local devices in chunks of `batch_size` that run one after another, all
    through one compiled program. The default sampler, "nuts", runs each device's chains as
    jobs on `lanes` lanes that advance one leapfrog step per iteration each on its own
    trajectory, so no chain waits for another's; "blackjax" vmaps BlackJAX's NUTS kernel
    (chains, then `vectorize` datasets: every lane waits for the longest trajectory), the
    reference the default is checked against. Both make the same transitions from the same
    keys. Dataset d's randomness is `fold_in(key, d)`, so its chains are the same whatever
    `batch_size`, `devices`, `lanes`, `vectorize` or sampler; bit for bit within a layout,
    and up to rounding across layouts (their programs compile to differently rounded
    arithmetic, which a long chain amplifies into other draws).

    Args:
        model: an `hj.Model`.
        data: one dataset (a dict of raw or prepared columns), a batch (a dict whose arrays
            lead with a dataset axis) or a list of same-shaped datasets. Each is validated
            with `model.prepare`.
        key: a PRNG key.
        sampler: "nuts" (lanes that never wait) or "blackjax" (vmapped BlackJAX NUTS kernel).
        chains: chains per dataset.
        warmup: adaptation iterations per chain; 1000, or 300 after a warm start (`init`).
        draws: iterations kept per chain after warmup.
        target_accept: target mean acceptance probability of step-size adaptation.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        max_tree_depth: NUTS's maximum number of trajectory doublings.
        init: None (Stan's uniform(-init_radius, init_radius), retried until finite),
            "prior" (draws from the prior, retried until finite: for models whose support
            depends on the data, like a DDM's non-decision time below every RT), "advi"
            (mean-field ADVI) or "pathfinder": a variational fit per dataset places the
            chains and seeds the mass matrix with its variances.
        init_radius: half-width of the uniform initialization in unconstrained space.
        batch_size: datasets per chunk (the last one padded; rounded up to fill the layout);
            by default all datasets, up to 1024 per device.
        lanes: "nuts": chains advanced together on a device; by default 4 on CPU and all of
            the device's chains on an accelerator. See `hjax.inference.batching.plan_layout`.
        vectorize: "blackjax": datasets vmapped together on a device; by default 1 on CPU
            (vmapped NUTS waits for the longest trajectory of all its lanes) and the device's
            whole share on an accelerator.
        devices: local devices to spread datasets over; by default all of them (on CPU one
            per core, see `hj.use_cpu_cores`).
        save_warmup: also return the warmup iterations (`warmup_posterior`,
            `warmup_sample_stats`).
        progress: show a progress bar; by default when stderr is a terminal.
        warn: issue a warning for each diagnostic problem (divergences, R-hat, ESS, ...).
        first_dataset: global index of this call's first dataset, for a sweep split over
            calls (batches of a study, jobs of a cluster): dataset d uses
            `fold_in(key, first_dataset + d)`.

    Returns:
        An ArviZ DataTree with `posterior` (constrained values named as by
        `model.constrain`, dims from `model.param_dims`), `sample_stats` (lp, diverging,
        tree_depth, n_steps, energy, acceptance_rate, step_size), `observed_data`,
        `constant_data` and `fit_stats` (per chain: init_ok, init_tries, the adapted
        step_size and inverse_mass_matrix over the flattened unconstrained position).
        A batched fit has a leading `dataset` dim everywhere.

    Example:
        >>> result = hj.sample(model, data, key=jax.random.key(0), chains=4, draws=1000)
        >>> result.posterior["mu"].mean().item()
    """
    if warmup is None:
        warmup = WARMUP if init in (None, "prior") else WARM_START_WARMUP
    if progress is None:
        progress = sys.stderr.isatty()
    config = FitConfig(sampler=sampler, chains=chains, warmup=warmup, draws=draws,
                       target_accept=target_accept, dense_mass=dense_mass,
                       max_tree_depth=max_tree_depth, init=init, init_radius=init_radius,
                       save_warmup=save_warmup, progress=bool(progress))
    _check_settings(config, batch_size, lanes, vectorize, devices)
    batch, batched = as_batch(model, data)
    n_datasets = next(iter(batch.values())).shape[0]
    # An explicit batch_size is kept even above the number of datasets (padding), so that the
    # calls of a sweep split into batches, short last one included, share one compile.
    layout = plan_layout(n_datasets, chains=chains, sampler=sampler, batch_size=batch_size,
                         vectorize=vectorize, lanes=lanes, devices=devices)
    width = layout.size
    n_chunks = -(-n_datasets // width)

    start = time.perf_counter()
    # "nuts" reports every chain's iterations; "blackjax" those of each row it runs in turn.
    total = (n_datasets * chains if sampler == "nuts"
             else n_chunks * layout.devices * layout.sequential) * (warmup + draws)
    with progress_bar(total, "hjax NUTS", config.progress) as bar:
        done = [0]

        def on_chunk(n):
            done[0] += n
            if bar is not None:
                bar.set_postfix_str(f"{done[0]}/{n_datasets} datasets")

        chain_key = sampling_key(key)
        shared = shared_columns(batch)

        def fit(index, valid, chunk):
            varying = {k: v for k, v in chunk.items() if k not in shared}
            return run_chunk(model, config, layout, chain_key, index + first_dataset, valid,
                             varying, shared)

        out = map_chunks(fit, batch, width, on_chunk)
        jax.effects_barrier()
    elapsed = time.perf_counter() - start

    host_data = {k: np.asarray(v) for k, v in batch.items()}
    _report_init_failures(model, out, host_data, batched)
    useful = int(out.warmup_stats.n_steps.sum() + out.stats.n_steps.sum())
    executed = int(round(float(out.grad_evals_executed.sum())))
    layout_attrs = ({"lanes": layout.lanes} if sampler == "nuts"
                    else {"sequential": layout.sequential, "vectorize": layout.vectorized})
    attrs = {
        "inference_library": "hjax" if sampler == "nuts" else "blackjax", "sampler": sampler,
        "chains": chains, "warmup": warmup, "draws": draws, "target_accept": target_accept,
        "dense_mass": int(dense_mass), "max_tree_depth": max_tree_depth,
        "init": init or "uniform", "batch_size": width, "backend": jax.default_backend(),
        "devices": layout.devices, **layout_attrs,
        "sampling_time": elapsed,
        "grad_evals": useful + int(out.warm_start_grad_evals.sum()),
        "grad_evals_executed": executed,
        "lockstep_efficiency": useful / executed if executed else 1.0,
    }
    stats = {name: getattr(out.stats, name) for name in STAT_NAMES}
    warmup_stats = (None if out.warmup_draws is None
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
    tree["fit_stats"] = xr.DataTree(fit_stats)
    if warn:
        diagnostics.warn_problems(tree)
    return tree
