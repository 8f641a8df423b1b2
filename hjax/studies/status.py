"""What a study directory holds while workers fill it: batches done, missing and failed, batch
files set aside (another study's, or unreadable), fits with problems, throughput and an
estimate of the time left (`hjax status DIR`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

from hjax.studies.runner import rhat_limit
from hjax.studies.store import MANIFEST, Batch, Store

__all__ = ["StudyStatus", "describe", "study_status"]


class StudyStatus(NamedTuple):
    """A study directory's state. `set_aside` names the batch files moved out of the study
    (another study's, or unreadable), never merged; `problems` counts fits by kind of problem;
    `compute_seconds` is the fitting time per dataset (one worker); `rate` the datasets stored
    per second of wall time since the study started, None before the first batch."""

    directory: Path
    n_datasets: int
    done: list[Batch]
    missing: list[Batch]
    failed: dict[str, str]
    set_aside: list[str]
    problems: dict[str, int]
    compute_seconds: float | None
    rate: float | None

    @property
    def datasets_done(self) -> int:
        return sum(b.stop - b.start for b in self.done)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (None when unknown)."""
        left = self.n_datasets - self.datasets_done
        return None if not self.rate else left / self.rate


def _problems(tables: list[xr.Dataset], limit: float) -> dict[str, int]:
    def count(name, bad):
        return int(sum(int(bad(t[name]).sum()) for t in tables if name in t))

    return {
        "with divergences": count("divergences", lambda v: v > 0),
        f"with R-hat above {limit:g}": count("max_rhat", lambda v: ~(v <= limit)),
        "with chains that never started": count("init_failures", lambda v: v > 0),
    }


def study_status(directory: str | os.PathLike) -> StudyStatus:
    """Read the state of the study whose batches are in `directory`.

    Example:
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> _ = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50,
        ...            directory=directory, batch_size=4, shard="0/2")
        >>> status = study_status(directory)
        >>> status.datasets_done, [batch.name for batch in status.missing]
        (4, ['000004-000008'])
    """
    store = Store(directory)
    done, missing, tables = [], [], []
    for batch in store.batches:
        table = store.load(batch) if store.done(batch) else None
        (missing if table is None else done).append(batch)
        if table is not None:
            tables.append(table)
    compute = sum(t.attrs.get("sampling_time", 0.0) + t.attrs.get("compile_time", 0.0)
                  for t in tables)
    n_done = sum(b.stop - b.start for b in done)
    rate = None
    if done:
        started = (store.directory / MANIFEST).stat().st_mtime
        latest = max(store.path(b).stat().st_mtime for b in done)
        rate = n_done / max(latest - started, 1e-3)
    set_aside = sorted(p.name for pattern in ("other-study", "corrupt")
                       for p in store.directory.glob(f".batch-*.nc.{pattern}-*"))
    return StudyStatus(store.directory, store.manifest["n_datasets"], done, missing,
                       store.failures(), set_aside,
                       _problems(tables, rhat_limit(store.manifest)),
                       compute / n_done if n_done else None, rate)


def _names(batches: list[Batch], limit: int = 6) -> str:
    shown = ", ".join(b.name for b in batches[:limit])
    return shown + (f", ... ({len(batches)} in all)" if len(batches) > limit else "")


def describe(status: StudyStatus, running: bool | None = None) -> list[str]:
    """The status as lines of text; an estimate of the time left only while workers may be
    fitting (`running`: whether any Slurm task runs; None: not known, e.g. workers started
    by hand).

    Example:
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> _ = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50,
        ...            directory=directory, batch_size=4, shard="0/2")
        >>> print("\\n".join(describe(study_status(directory))))
        4 of 8 datasets done (1 of 2 batches)
        missing: 000004-000008
        fits with problems: ...
        throughput: ... datasets/s since the study started (... s of fitting per dataset); ...
    """
    lines = [f"{status.datasets_done} of {status.n_datasets} datasets done "
             f"({len(status.done)} of {len(status.done) + len(status.missing)} batches)"]
    if status.missing:
        lines.append(f"missing: {_names(status.missing)}")
    for name, error in status.failed.items():
        lines.append(f"failed: batch {name}: {error}")
    if status.set_aside:
        shown = ", ".join(status.set_aside[:3]) + (", ..." if len(status.set_aside) > 3 else "")
        lines.append(f"set aside, not merged: {len(status.set_aside)} batch file(s) of another "
                     f"study or unreadable ({shown})")
    if status.done:
        found = [f"{n} {kind}" for kind, n in status.problems.items() if n]
        lines.append("fits with problems: " + (", ".join(found) if found else "none"))
    if status.compute_seconds is not None:
        eta = status.eta_seconds
        left = "" if not status.missing or running is False or eta is None else (
            f"; about {eta:.0f} s left at this rate")
        lines.append(f"throughput: {status.rate:.3g} datasets/s since the study started "
                     f"({status.compute_seconds:.3g} s of fitting per dataset){left}")
    return lines


def summarize_missing(table: xr.Dataset) -> str | None:
    """A sentence for a report of an incomplete study, or None when it is complete."""
    missing = [name for name in table.attrs.get("missing_batches", "").split(", ") if name]
    if not missing:
        return None
    n = table.attrs.get("n_datasets", np.nan)
    return (f"Incomplete: {table.sizes['dataset']} of {n} datasets; batches not done yet: "
            f"{', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}.")
