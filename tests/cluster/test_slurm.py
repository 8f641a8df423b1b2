"""Studies as job arrays on a real Slurm (scripts/slurm-local up): the merged result is the
single-process one; a preempted task requeues and resumes; a failed task leaves the others'
batches, `hjax status` names what is missing, and a re-submission fits only that."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

import hjax as hj
from hjax import jobs
from hjax.cli import main
from hjax.cluster import slurm_available
from hjax.config import build, load

# CI starts a Slurm and sets HJAX_REQUIRE_SLURM, so that these fail there instead of skipping.
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.xdist_group("slurm"),
    pytest.mark.skipif(not (slurm_available() or os.environ.get("HJAX_REQUIRE_SLURM")),
                       reason="no Slurm answers here (start one: sudo scripts/slurm-local up)"),
]

HERE = Path(__file__).resolve().parent
# One device per task and here alike: the compiled arithmetic, hence the bits, depend on it.
# No refits: these tests are about the cluster (tests/studies_run/test_escalation.py: refits).
SETTINGS = ("chains: 2\nwarmup: {warmup}\ndraws: 40\nmax_rank: 19\ndevices: 1\nseed: 3\n"
            "escalation: {{attempts: 0}}\n"
            "cluster: {{tasks: {tasks}, cpus_per_task: 1, time: 10}}\n")


def _config(tmp_path, *, datasets, batch_size, tasks, warmup=60, model=None):
    text = (f"model: {model or 'varying_intercept'}\nargs: {{groups: 4, per_group: 5}}\n"
            f"datasets: {datasets}\nbatch_size: {batch_size}\noutput: {tmp_path / 'out'}\n"
            + SETTINGS.format(tasks=tasks, warmup=warmup))
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def _submit(path) -> dict:
    result = CliRunner().invoke(main, ["submit", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads((Path(load(path).output) / "slurm" / "jobs.json").read_text())[-1]


def _wait(record: dict, timeout: float = 600) -> None:
    """Until neither the array nor the merge job is known to squeue."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        listed = subprocess.run(["squeue", "-h", "-j", f"{record['array']},{record['merge']}"],
                                capture_output=True, text=True).stdout.strip()
        if not listed:
            return
        time.sleep(1)
    raise TimeoutError(f"Slurm jobs {record} still queued after {timeout} s")


def _single_process(path) -> xr.Dataset:
    """The same study in this process (its own output directory)."""
    config = load(path, output=str(Path(path).parent / "single"), compile_cache=False)
    model, design = build(config)
    return hj.sbc(model, design, n_datasets=config.datasets, key=config.seed,
                  settings=config.settings())


def test_array_of_four_tasks_gives_the_single_process_result(tmp_path):
    path = _config(tmp_path, datasets=200, batch_size=25, tasks=4)
    record = _submit(path)
    reference = _single_process(path)
    _wait(record)
    merged = xr.load_dataset(tmp_path / "out" / "sbc.nc")
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())
    assert (tmp_path / "out" / "report.md").read_text().count("Incomplete") == 0
    status = CliRunner().invoke(main, ["status", str(tmp_path / "out")]).output
    assert "200 of 200 datasets done (8 of 8 batches)" in status
    assert f"slurm array {record['array']}: 4 COMPLETED" in status


def test_preempted_task_requeues_and_resumes(tmp_path):
    path = _config(tmp_path, datasets=48, batch_size=4, tasks=2, warmup=150)
    record = _submit(path)
    batches = tmp_path / "out" / "batches"
    deadline = time.time() + 300
    while not list(batches.glob("batch-*.nc")) and time.time() < deadline:
        time.sleep(0.2)
    # What Slurm sends before a time limit or a preemption (submitit asks for USR2).
    subprocess.run(["scancel", "--signal=USR2", f"{record['array']}_0"], check=True)
    reference = _single_process(path)
    _wait(record)
    log = "".join(p.read_text() for p in (tmp_path / "out" / "slurm").glob(
        f"{record['array']}_0/*_log.err"))
    assert "Caught signal SIGUSR2" in log and "DUE TO JOB REQUEUE" in log
    merged = xr.load_dataset(tmp_path / "out" / "sbc.nc")
    assert merged["dataset"].values.tolist() == list(range(48))
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())


def test_failed_task_leaves_the_others_and_resubmission_fits_only_the_missing(
        tmp_path, monkeypatch):
    marker = tmp_path / "broken-node"
    marker.write_text("")
    monkeypatch.setenv("PYTHONPATH", f"{HERE}:{os.environ.get('PYTHONPATH', '')}")
    path = _config(tmp_path, datasets=16, batch_size=4, tasks=2, model="flaky:build")
    text = path.read_text().replace("per_group: 5}", f"per_group: 5, marker: '{marker}'}}")
    path.write_text(text)
    _wait(_submit(path))
    out = tmp_path / "out"
    stored = {p.name: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.nc")}
    assert sorted(stored) == ["batch-000000-000004.nc", "batch-000008-000012.nc"]
    status = CliRunner().invoke(main, ["status", str(out)]).output
    assert "missing: 000004-000008, 000012-000016" in status
    assert "failed: batch 000004-000008: OSError: scratch disk unavailable on task 1" in status
    assert "Incomplete: 8 of 16 datasets" in (out / "report.md").read_text()
    marker.unlink()
    _wait(_submit(path))
    for name, mtime in stored.items():  # not fitted again
        assert (out / "batches" / name).stat().st_mtime_ns == mtime
    config, table = jobs.merge(out)
    assert table.attrs["missing_batches"] == "" and not list((out / "batches").glob("failed-*"))
    assert table["dataset"].values.tolist() == list(range(16))
