"""One CPU device per core at import, unless chosen otherwise; a clear error for a bad count."""

import os
import subprocess
import sys

import pytest

from hjax.devices import available_cores


def _devices_after_import(before: str = "", **env) -> str:
    script = f"import jax\n{before}\nimport hjax\nprint(jax.local_device_count())"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("HJAX_CPU_DEVICES", "XLA_FLAGS")}
    result = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                            capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_import_gives_one_device_per_core():
    assert _devices_after_import() == str(available_cores())
    assert _devices_after_import(SLURM_CPUS_PER_TASK="1") == "1"


def test_environment_chooses_the_count():
    assert _devices_after_import(HJAX_CPU_DEVICES="3") == "3"
    assert _devices_after_import(XLA_FLAGS="--xla_force_host_platform_device_count=5") == "5"


def test_a_count_chosen_before_the_import_is_kept():
    assert _devices_after_import("jax.config.update('jax_num_cpu_devices', 3)") == "3"


def test_a_bad_count_is_a_clear_error():
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _devices_after_import(HJAX_CPU_DEVICES="two")
    assert "HJAX_CPU_DEVICES must be a number of devices >= 1; got 'two'" in failed.value.stderr
