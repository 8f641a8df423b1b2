"""Refits of the fits that fail their diagnostics, batched: the `Escalation` policy at work.

`hj.sample` fits every dataset (attempt 0), then, while the policy allows, refits the datasets
whose fits failed, all together, in chunks as wide as the first fit's: the same compiled
program, since warmup, target acceptance and thinning are runtime settings. Each attempt's
chains are new chains from the attempt's own key, so a refit depends on its dataset and
attempt alone, never on which other fits failed with it. Every attempt's diagnostics are
kept (`attempts`); the last attempt's draws are the fit's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import xarray as xr

from hjax.inference.run.chunks import ChunkOutput
from hjax.settings import FitSettings

__all__ = ["ATTEMPT_SALT", "Run", "attempt_key", "escalate"]

ATTEMPT_SALT = 2**31  # attempt k's key is fold_in(key, ATTEMPT_SALT + k): apart from datasets'
RECORDED = ("divergences", "max_rhat", "min_ess_bulk", "init_failures", "stuck_chains")
SUMMED = ("sampling_time", "compile_time", "grad_evals", "grad_evals_warm_start",
          "grad_evals_executed")


class Run(NamedTuple):
    """The outputs of fitting some datasets (leading axis: dataset) and the run's attrs."""

    out: ChunkOutput
    attrs: dict


def attempt_key(key, attempt: int):
    """The key of attempt `attempt` (attempt 0: `key` itself).

    Example:
        >>> key = jax.random.key(0)
        >>> attempt_key(key, 0) is key, attempt_key(key, 1) is key
        (True, False)
    """
    return key if attempt == 0 else jax.random.fold_in(key, ATTEMPT_SALT + attempt)


def _replace_rows(run: Run, rows: np.ndarray, refit: Run) -> Run:
    def put(old, new):
        old = np.array(old)
        old[rows] = new
        return old

    # Costs add up over attempts; the efficiency is that of all of them.
    attrs = run.attrs | {name: run.attrs[name] + refit.attrs[name] for name in SUMMED}
    useful = attrs["grad_evals"] - attrs["grad_evals_warm_start"]
    attrs["lockstep_efficiency"] = (useful / attrs["grad_evals_executed"]
                                    if attrs["grad_evals_executed"] else 1.0)
    return Run(jax.tree.map(put, run.out, refit.out), attrs)


def escalate(
    settings: FitSettings,
    n_datasets: int,
    fit: Callable[[FitSettings, np.ndarray, int], Run],
    diagnose: Callable[[Run, np.ndarray], xr.Dataset],
) -> tuple[Run, xr.Dataset]:
    """Fit every dataset, then refit the failing ones as `settings.escalation` allows.

    Args:
        settings: the first attempt's settings (and the policy).
        n_datasets: datasets in the call.
        fit: fit(settings, rows, attempt) fits datasets `rows` (positions in the call).
        diagnose: diagnose(run, rows) gives `hj.diagnose`'s per-dataset diagnostics of a run
            of datasets `rows`.

    Returns:
        The run whose rows are each dataset's last attempt, and the attempts: per dataset
        `attempts` (fits made), `passed` (the last one meets the policy) and every diagnostic
        of `diagnose` for the last attempt, the draws returned; per dataset and attempt
        `attempt_<diagnostic>` (NaN where not attempted), with the attempts' `warmup`,
        `target_accept` and `thin` as coords of dim `attempt`.

    Example (as `hj.sample` runs it, which records the attempts in `fit_stats`):
        >>> fit = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False,
        ...                 escalation={"attempts": 1, "max_rhat": 1.5})
        >>> fit.fit_stats["attempt_target_accept"].values.tolist()
        [0.8, 0.9]
        >>> int(fit.fit_stats["attempts"]) in (1, 2)
        True
    """
    policy = settings.escalation
    rows = np.arange(n_datasets)
    run = fit(settings, rows, 0)
    record = np.full((len(RECORDED), n_datasets, policy.attempts + 1), np.nan)
    made = np.ones(n_datasets, int)
    found = diagnose(run, rows)
    failing = policy.failing(found)
    record[:, :, 0] = [np.asarray(found[name].values, float) for name in RECORDED]
    # The last attempt's diagnostics, kept so that nothing after the fit computes them again.
    last = {name: np.array(found[name].values) for name in found.data_vars}
    # Refits run as chunks of the first fit's width: its compiled program, padded.
    width = {"batch_size": run.attrs["batch_size"]}
    for attempt in range(1, policy.attempts + 1):
        rows = np.flatnonzero(failing)
        if not rows.size:
            break
        stronger = policy.settings(settings, attempt).model_copy(update=width)
        refit = fit(stronger, rows, attempt)
        found = diagnose(refit, rows)
        record[:, rows, attempt] = [np.asarray(found[name].values, float) for name in RECORDED]
        for name, values in last.items():
            values[rows] = found[name].values
        made[rows] = attempt + 1
        failing[rows] = policy.failing(found)
        run = _replace_rows(run, rows, refit)
    tried = [policy.settings(settings, k) for k in range(policy.attempts + 1)]
    attempts = xr.Dataset(
        {"attempts": ("dataset", made), "passed": ("dataset", ~failing),
         **{name: ("dataset", values) for name, values in last.items()},
         **{f"attempt_{name}": (("dataset", "attempt"), values)
            for name, values in zip(RECORDED, record, strict=True)}},
        coords={"attempt_warmup": ("attempt", [s.warmup_iterations for s in tried]),
                "attempt_target_accept": ("attempt", [s.target_accept for s in tried]),
                "attempt_thin": ("attempt", [s.thin for s in tried])})
    return run, attempts
