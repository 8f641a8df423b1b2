"""What the numbers were measured on: hardware, library versions, date."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jax

REPO = Path(__file__).resolve().parents[2]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The checked-out commit, with "+changes" when the tree differs from it (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def describe() -> dict:
    """Hardware, JAX's devices, library versions and the date, for the report."""
    devices = jax.devices()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu cores (os.cpu_count)": os.cpu_count(),
        "cores usable (affinity)": cores,
        "memory GiB": round(_memory_gib() or 0.0, 1),
        "load average at start": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax backend": jax.default_backend(),
        "jax devices": f"{len(devices)} x {devices[0].device_kind}",
        "hjax commit": _commit(),
        "blackjax": _version("blackjax"),
        "numpyro": _version("numpyro"),
        "pystan": _version("pystan"),
        "httpstan": _version("httpstan"),
        "arviz-stats": _version("arviz-stats"),
    }
