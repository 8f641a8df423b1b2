"""One CPU device per core at import, unless chosen otherwise; a clear error when too late."""

import os
import subprocess
import sys

import pytest

from hjax.devices import available_cores


def _devices_after_import(code: str = "", **env) -> str:
    script = f"import hjax as hj, jax\n{code}\nprint(jax.local_device_count())"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("HJAX_CPU_DEVICES", "XLA_FLAGS")}
    result = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_import_gives_one_device_per_core():
    assert _devices_after_import() == str(available_cores())


def test_environment_chooses_the_count():
    assert _devices_after_import(HJAX_CPU_DEVICES="3") == "3"
    assert _devices_after_import(XLA_FLAGS="--xla_force_host_platform_device_count=5") == "5"


def test_too_late_is_a_clear_error():
    import jax

    import hjax as hj

    jax.numpy.ones(1).block_until_ready()  # JAX has started: its devices are fixed
    with pytest.raises(RuntimeError, match="before JAX's first operation"):
        hj.use_cpu_cores(7)
    with pytest.raises(ValueError, match="n >= 1"):
        hj.use_cpu_cores(0)
