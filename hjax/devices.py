"""CPU cores as JAX devices, so that many fits run on every core.

JAX shows a CPU as one device, and XLA runs a small model's sampling loop on one thread of it.
`hj.sample` spreads datasets over the local devices, so one device per core fits as many
datasets at once as there are cores (measured in scripts/bench/RESULTS.md, variant
`devices=1`). JAX fixes its devices at its first operation: `import hjax` asks for one CPU device
per core when JAX has not started yet and nobody chose a count (`HJAX_CPU_DEVICES`,
`XLA_FLAGS=--xla_force_host_platform_device_count`, or `jax_num_cpu_devices`).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["available_cores", "use_cpu_cores"]

ENV = "HJAX_CPU_DEVICES"


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup quota if there is one
    and by the CPUs Slurm gave the task (`SLURM_CPUS_PER_TASK`, for clusters that do not bind
    tasks to their cores).

    Example:
        >>> available_cores() >= 1
        True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit():
        cores = min(cores, int(slurm))
    return max(1, cores or 1)


def use_cpu_cores(n: int | None = None) -> int:
    """Make JAX show `n` CPU devices (default: one per available core); returns `n`.

    Must run before JAX's first operation, e.g. right after the imports.

    Example:
        Right after the imports, `hj.use_cpu_cores(4)` gives JAX 4 CPU devices and returns 4.
        Once JAX has started, its devices are fixed:

        >>> n = jax.local_device_count()  # starts JAX
        >>> hj.use_cpu_cores(n + 1)
        Traceback (most recent call last):
        ...
        RuntimeError: hj.use_cpu_cores must run before JAX's first operation, ...
    """
    n = available_cores() if n is None else n
    if n < 1:
        raise ValueError(f"use_cpu_cores needs n >= 1; got {n}.")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError as error:
        raise RuntimeError(
            "hj.use_cpu_cores must run before JAX's first operation, which fixes the devices: "
            f"call it right after the imports, or set {ENV}={n} before starting Python."
        ) from error
    return n


def configure_at_import() -> None:
    """One CPU device per core (or `HJAX_CPU_DEVICES`), unless the count was chosen already or
    JAX has started (then its devices stay as they are)."""
    chosen = os.environ.get(ENV)
    if not chosen and ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
                       or jax.config.jax_num_cpu_devices != -1):
        return
    try:
        use_cpu_cores(int(chosen) if chosen else None)
    except RuntimeError:
        pass
