"""Studies as job arrays on a real Slurm (scripts/slurm-local up): the merged result is the
single-process one; a preempted task requeues and resumes; a failed task leaves the others'
batches, `hjax status` names what is missing, and a re-submission fits only that."""

import json
import os
import re
import shutil
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


def _held_by(batches: Path, task: str, timeout: float = 300) -> dict:
    """The live claim of array task `task` (its batch in hand), once it holds one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in batches.glob("claim-*.json"):
            try:
                claim = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if claim["slurm_job"] == task and claim["expires"] > time.time():
                return claim
        time.sleep(0.2)
    raise TimeoutError(f"task {task} claimed no batch in {timeout} s")


def _first_holders(batches: Path, n: int, timeout: float = 300) -> list[dict]:
    """The live claims of the first `n` distinct array tasks seen holding one: which tasks run
    first is Slurm's choice (and on 2 CPUs a pending task may find its batches taken)."""
    found: dict[str, dict] = {}
    deadline = time.time() + timeout
    while time.time() < deadline and len(found) < n:
        for path in batches.glob("claim-*.json"):
            try:
                claim = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if claim["expires"] > time.time():
                found.setdefault(claim["slurm_job"], claim)
        time.sleep(0.2)
    if len(found) < n:
        raise TimeoutError(f"{len(found)} tasks held a batch in {timeout} s; expected {n}")
    return list(found.values())[:n]


def _log(out: Path, task: str) -> str:
    return "".join(p.read_text() for p in (out / "slurm").glob(f"{task}/*_log.*"))


def test_cancelled_and_killed_tasks_leave_their_batches_to_the_others(tmp_path):
    # A dead task's batch in hand is taken over once its claim expires unrenewed.
    path = _config(tmp_path, datasets=24, batch_size=4, tasks=3, warmup=150)
    path.write_text(path.read_text().replace("time: 10}", "time: 10, claim_expiry: 8}"))
    record = _submit(path)
    out = tmp_path / "out"
    held = _first_holders(out / "batches", 2)
    cancelled, killed = (claim["slurm_job"] for claim in held)
    # Slurm turns any scancel into SIGTERM, then SIGKILL after KillWait: the task stores
    # the batch in hand and stops, not requeued. A node that dies sends nothing: SIGKILL.
    subprocess.run(["scancel", cancelled], check=True)
    os.kill(held[1]["pid"], 9)
    reference = _single_process(path)
    _wait(record)
    assert "DUE TO JOB REQUEUE" not in _log(out, cancelled) + _log(out, killed)
    assert "JobState=" not in _log(out, cancelled)
    assert "SIGTERM with the task COMPLETING in Slurm: stopped" in _log(out, cancelled)
    for claim in held:
        assert (out / "batches" / f"batch-{claim['batch']}.nc").exists()
    assert len(json.loads((out / "slurm" / "jobs.json").read_text())) == 1  # no re-submit
    merged = xr.load_dataset(out / "sbc.nc")
    assert merged["dataset"].values.tolist() == list(range(24))
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())


def test_sigterm_preemption_stores_the_batch_in_hand_and_requeues(tmp_path):
    path = _config(tmp_path, datasets=24, batch_size=4, tasks=2, warmup=150)
    record = _submit(path)
    out = tmp_path / "out"
    task = f"{record['array']}_0"
    held = _held_by(out / "batches", task)
    # What a site with PreemptMode=REQUEUE sends (submitit itself ignores SIGTERM).
    subprocess.run(["scancel", "--signal=TERM", task], check=True)
    deadline = time.time() + 300
    while "Requeued job" not in _log(out, task) and time.time() < deadline:
        time.sleep(0.2)
    # Stored by task 0 before it requeued: a live task's claim keeps the others off it.
    assert (out / "batches" / f"batch-{held['batch']}.nc").exists()
    reference = _single_process(path)
    _wait(record)
    log = _log(out, task)
    assert "Caught signal SIGTERM" in log and "DUE TO JOB REQUEUE" in log
    merged = xr.load_dataset(out / "sbc.nc")
    assert merged["dataset"].values.tolist() == list(range(24))
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())


def test_usr2_where_requeue_is_refused_stops_the_task_and_loses_nothing(tmp_path):
    path = _config(tmp_path, datasets=24, batch_size=4, tasks=2, warmup=150)
    path.write_text(path.read_text().replace("time: 10}", "time: 10, sbatch: {no-requeue: true}}"))
    record = _submit(path)
    out = tmp_path / "out"
    script = next((out / "slurm").glob(f"{record['array']}_*/*_submission.sh"), None) or next(
        (out / "slurm").rglob("*_submission.sh"))
    assert "--no-requeue" in script.read_text() and "--requeue" not in script.read_text()
    task = f"{record['array']}_0"
    held = _held_by(out / "batches", task)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)
    reference = _single_process(path)
    _wait(record)
    log = _log(out, task)
    assert "Slurm refused to requeue this task" in log, log[-3000:]
    assert "CalledProcessError" not in log and "Traceback" not in log
    assert (out / "batches" / f"batch-{held['batch']}.nc").exists()
    merged = xr.load_dataset(out / "sbc.nc")
    assert merged["dataset"].values.tolist() == list(range(24))
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())


@pytest.fixture
def leave_no_jobs():
    """Call it with a test's Slurm jobs: they are cancelled when the test ends, so that a
    failing test leaves none to the next."""
    held = []
    yield lambda *ids: held.extend(ids)
    if held:
        subprocess.run(["scancel", *held], capture_output=True)


def _until(done, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not done():
        if time.time() > deadline:
            raise TimeoutError(f"not reached in {timeout} s")
        time.sleep(0.3)


def _queued(job: str) -> dict[str, str]:
    """Task id -> state, of the tasks squeue lists."""
    listed = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i|%T"],
                            capture_output=True, text=True).stdout.split()
    return dict(line.split("|") for line in listed)


def _forgotten(out: Path, record: dict) -> Path:
    """A copy of the study whose jobs carry ids Slurm never gave: what `hjax status` sees once
    Slurm has forgotten them (MinJobAge) where no accounting remembers them."""
    copy = Path(shutil.copytree(out, out.with_name("forgotten"), symlinks=True))
    ids = {record[k]: str(int(record[k]) + 10**6) for k in ("array", "merge")}
    for path in sorted((copy / "slurm").rglob("*"), key=lambda p: -len(p.parts)):
        for old, new in ids.items():
            if path.name == old or path.name.startswith(f"{old}_"):
                path.rename(path.with_name(new + path.name[len(old):]))
    renamed = record | {k: ids[record[k]] for k in ("array", "merge")}
    (copy / "slurm" / "jobs.json").write_text(json.dumps([renamed]))
    return copy


def _slurm_lines(out: Path) -> list[str]:
    lines = CliRunner().invoke(main, ["status", str(out)]).output.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("slurm array")):]


def test_status_says_each_task_state_requeues_failure_and_log_and_cancel_stops_all(
        tmp_path, leave_no_jobs):
    # Five one-CPU tasks on two CPUs: task 0's setup fails, 1 and 2 run, 3 and 4 wait; task 1
    # is then requeued, and task 3 takes its CPU.
    path = _config(tmp_path, datasets=60, batch_size=2, tasks=5, warmup=300)
    path.write_text(path.read_text().replace(
        "time: 10}", "time: 10, setup: ['test \"$SLURM_ARRAY_TASK_ID\" != 0']}"))
    record = _submit(path)
    leave_no_jobs(record["array"], record["merge"])
    array, merge, out = record["array"], record["merge"], tmp_path / "out"
    _until(lambda: _queued(array).get(f"{array}_2") == "RUNNING")
    subprocess.run(["scontrol", "requeue", f"{array}_1"], check=True)
    _until(lambda: _queued(array).get(f"{array}_3") == "RUNNING")
    logs = out / "slurm"

    def log(k):
        return re.escape(f"; log {logs}/{array}_{k}/{array}_{k}_0_log.err")

    expected = [
        re.escape(f"slurm array {array}: 1 FAILED, 2 PENDING, 2 RUNNING (logs: {logs}/"
                  f"{array}_<task>/)"),
        re.escape('  task 0: FAILED, exit code 1; hjax: setup failed (exit 1): test '
                  '"$SLURM_ARRAY_TASK_ID" != 0') + log(0),
        r"  task 1: PENDING \((BeginTime|Resources|Priority)\), requeued 1 time" + log(1),
        "  task 2: RUNNING" + log(2),
        "  task 3: RUNNING" + log(3),
        r"  task 4: PENDING \(Resources\)",
        re.escape(f"slurm merge job {merge}: PENDING (Dependency)")]
    lines = _slurm_lines(out)
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    said = CliRunner().invoke(main, ["cancel", str(out)]).output
    assert said == (f"cancelled merge job {merge}: 1 PENDING\n"
                    f"cancelled array {array}: 2 PENDING, 2 RUNNING\n")
    _wait(record, timeout=120)
    lines = _slurm_lines(out)
    assert lines[0].startswith(f"slurm array {array}: 4 CANCELLED, 1 FAILED")
    assert [line.split(",")[0] for line in lines[1:]] == [
        "  task 0: FAILED", "  task 1: CANCELLED", "  task 2: CANCELLED", "  task 3: CANCELLED",
        "  task 4: CANCELLED", f"slurm merge job {merge}: CANCELLED"]
    # A cancelled task is not requeued (it asks to be, taking SIGTERM for a preemption).
    assert [line for line in lines if "requeued" in line] == [
        line for line in lines if line.startswith("  task 1:")]
    status = CliRunner().invoke(main, ["status", str(out)]).output
    assert "left at this rate" not in status  # no estimate once no task runs
    copy = _forgotten(out, record)
    array, logs = str(int(array) + 10**6), copy / "slurm"
    assert _slurm_lines(copy) == [
        f"slurm array {array}: 2 CANCELLED, 2 ENDED, 1 FAILED (logs: {logs}/{array}_<task>/)",
        '  task 0: FAILED, hjax: setup failed (exit 1): test "$SLURM_ARRAY_TASK_ID" != 0; log '
        f"{logs}/{array}_0/{array}_0_0_log.err",
        # Requeued, then cancelled while it waited: its logs end with the requeue.
        f"  task 1: ENDED, requeued 1 time, never ran again; log {logs}/{array}_1/{array}_1_0_"
        "log.err",
        *[f"  task {k}: CANCELLED; log {logs}/{array}_{k}/{array}_{k}_0_log.err"
          for k in (2, 3)],
        "  task 4: ENDED, never started",
        f"slurm merge job {int(merge) + 10**6}: ENDED, never started"]
    again = CliRunner().invoke(main, ["cancel", str(out)]).output
    assert again == f"nothing to cancel: no job of the study in {out} is queued or running\n"


@pytest.mark.slow
def test_incomplete_study_fails_the_merge_job_and_resubmit_starts_a_task_per_missing_batch(
        tmp_path, leave_no_jobs):
    path = _config(tmp_path, datasets=48, batch_size=8, tasks=2, warmup=150)
    broken = tmp_path / "broken-1"  # task 1's node, say
    broken.write_text("")
    setup = f"test ! -e {tmp_path}/broken-$SLURM_ARRAY_TASK_ID"
    path.write_text(path.read_text().replace("time: 10}", f"time: 10, setup: ['{setup}']}}"))
    record = _submit(path)
    leave_no_jobs(record["array"], record["merge"])
    out, task = tmp_path / "out", f"{record['array']}_0"
    _until(lambda: list((out / "batches").glob("batch-*.nc")))
    # Task 0 cancelled for good (as `hjax cancel` does it): the study cannot complete.
    subprocess.run(["scontrol", "update", f"JobId={task}", "Requeue=0"], check=True)
    subprocess.run(["scancel", task], check=True)
    _wait(record)
    status = CliRunner().invoke(main, ["status", str(out)]).output.splitlines()
    missing = [b for line in status if line.startswith("missing: ")
               for b in line.removeprefix("missing: ").split(", ")]
    done = 48 - 8 * len(missing)
    assert 0 < len(missing) < 6, status
    merge = next(line for line in status if line.startswith("slurm merge job"))
    assert merge.startswith(f"slurm merge job {record['merge']}: FAILED, exit code 1; "
                            f"hjax.errors.BatchesFailedError: incomplete: {done} of 48")
    verdict = status[status.index(merge) + 1]
    assert verdict == (f"  verdict: incomplete: {done} of 48 datasets; missing batches "
                       f"{', '.join(missing)}; report {out}/report.md; `hjax submit` again "
                       "fits only these")
    assert f"slurm array {record['array']}: 1 CANCELLED, 1 FAILED" in status[-5]
    broken.unlink()
    result = CliRunner().invoke(main, ["submit", str(path), "--tasks", "8"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "slurm" / "jobs.json").read_text())[-1]
    leave_no_jobs(again["array"], again["merge"])
    assert again["tasks"] == len(missing)  # not 8
    _wait(again)
    status = CliRunner().invoke(main, ["status", str(out)]).output.splitlines()
    assert status[-2:] == [
        f"slurm merge job {again['merge']}: COMPLETED; log {out}/slurm/{again['merge']}/"
        f"{again['merge']}_0_log.err",
        f"  verdict: complete: 48 of 48 datasets; report {out}/report.md; no variable rejected"]
    result = CliRunner().invoke(main, ["submit", str(path)])
    assert result.output == (f"nothing to submit: every batch of the study in {out} is stored;"
                             f" `hjax report {out}` merges them\n")
    assert json.loads((out / "slurm" / "jobs.json").read_text())[-1] == again


def test_submitted_scripts_are_the_dry_run_ones_and_a_refused_submit_leaves_nothing(
        tmp_path, leave_no_jobs):
    path = _config(tmp_path, datasets=8, batch_size=4, tasks=2)
    # A job the user's study waits for, held until the dependencies have been seen.
    first = subprocess.run(
        ["sbatch", "--parsable", "--hold", "--output=/dev/null", "--wrap", "true"],
        capture_output=True, text=True, check=True).stdout.strip()
    path.write_text(path.read_text().replace(
        "time: 10}", f"time: 10, sbatch: {{dependency: 'afterok:{first}'}}}}"))
    dry = CliRunner().invoke(main, ["submit", str(path), "--dry-run"]).output
    _, array_script, merge_script = (part.partition(" ---\n")[2].strip()
                                     for part in dry.split("# --- "))
    record = _submit(path)
    leave_no_jobs(record["array"], record["merge"], first)
    array, merge, slurm = record["array"], record["merge"], tmp_path / "out" / "slurm"
    assert (slurm / array / f"{array}_submission.sh").read_text().strip() == array_script
    assert (slurm / merge / f"{merge}_submission.sh").read_text().strip() == merge_script.replace(
        f"'afterany:<array>,afterok:{first}'", f"afterany:{array},afterok:{first}")
    shown = subprocess.run(["scontrol", "show", "job", merge], capture_output=True,
                           text=True).stdout
    assert re.search(rf"Dependency=afterany:{array}\S*,afterok:{first}\S*", shown), shown
    subprocess.run(["scontrol", "release", first], check=True)
    _wait(record)
    # Slurm refuses the array (no such partition): one line, exit 1, nothing left behind.
    refused = tmp_path / "refused.yaml"
    refused.write_text(path.read_text().replace("tasks: 2", "tasks: 2, partition: nosuch")
                       .replace(str(tmp_path / "out"), str(tmp_path / "refused")))
    result = CliRunner().invoke(main, ["submit", str(refused)])
    assert result.exit_code == 1 and result.output.count("invalid partition") == 1
    assert result.output.startswith("Error: Slurm refused the study's job array: sbatch: "
                                    "error: invalid partition specified: nosuch")
    assert not (tmp_path / "refused").exists()
