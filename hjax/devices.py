"""CPU cores as JAX devices, so that many fits run on every core.

JAX shows a CPU as one device, and XLA runs a small model's sampling loop on one thread of it.
`hj.sample` spreads datasets over the local devices, so one device per core fits as many
datasets at once as there are cores (measured in scripts/bench/RESULTS.md, variant
`devices=1`).

JAX fixes its devices at its first operation, and importing hjax starts JAX (BlackJAX computes
at import). So `import hjax` asks for the devices first: one per core, or `HJAX_CPU_DEVICES`
(set before Python starts), unless a count was chosen before the import
(`XLA_FLAGS=--xla_force_host_platform_device_count`, or `jax.config.update(
"jax_num_cpu_devices", n)`).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from hjax.errors import ConfigError

__all__ = ["available_cores", "cpu_device_count"]

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


def cpu_device_count() -> int:
    """The CPU devices hjax asks JAX for: `HJAX_CPU_DEVICES` if set, else one per available
    core.

    Example:
        >>> cpu_device_count() == int(os.environ.get("HJAX_CPU_DEVICES") or available_cores())
        True
    """
    chosen = os.environ.get(ENV, "")
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ConfigError(f"{ENV} must be a number of devices >= 1; got {chosen!r}.")
        return int(chosen)
    return available_cores()


def configure_at_import() -> None:
    """Give JAX `cpu_device_count()` CPU devices, unless a count was chosen already
    (`XLA_FLAGS=--xla_force_host_platform_device_count`, `jax_num_cpu_devices`) or JAX has
    started (then its devices stay as they are). `import hjax` runs this first: importing
    BlackJAX starts JAX."""
    chosen = os.environ.get(ENV)
    if not chosen and ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
                       or jax.config.jax_num_cpu_devices != -1):
        return
    try:
        jax.config.update("jax_num_cpu_devices", cpu_device_count())
    except RuntimeError:  # JAX has started: its devices are fixed
        pass
