"""Studies as Slurm job arrays through submitit: one array task per shard, then a merge job.

`submit` sends a config's study to Slurm as an array of `cluster.tasks` tasks, task k fitting
batches k, k + n, ... into the study's shared directory, and a job that waits for the whole
array (`afterany`) and then merges the stored batches, tests them and writes the report. Tasks
claim each batch from the store before fitting it and, their own done, take any batch no
live task holds: the batches of a task that died (node failure, cancel, out of time) go to
the tasks that remain, once its claim expires unrenewed (`cluster: {claim_expiry: 180}`,
seconds).

Preemption and time limits: Slurm signals a task (`--signal=USR2@signal_delay`, or SIGTERM
where the site preempts with PreemptMode=REQUEUE) before it stops it. The task finishes and
stores the batch in hand, then submitit checkpoints it and requeues it (tasks are submitted
with `--requeue`); the requeued task skips the stored batches. Where Slurm refuses the
requeue (`sbatch: {no-requeue: true}`, JobRequeue=0) or is ending the task itself (`scancel`),
the task says so in its log and stops: the others take its batches. Signal handling waits for
the batch because a running XLA computation cannot be interrupted from Python anyway, so a
batch should take well under `signal_delay` seconds (and under KillWait, for SIGTERM).

Why array tasks rather than one multi-host JAX program: a study's datasets are independent,
so nothing needs to cross machines while fitting. Array tasks start, fail, get preempted and
requeue one by one, each resuming from the store, where one multi-host program needs all of
its hosts up at once and loses all of them to one failure. A node's GPUs are local devices of
its task (`hj.sample` spreads datasets over them).

Usage (what `hjax submit CONFIG` does)::

    config = hjax.config.load("configs/varying_intercept.yaml")
    record = submit(config)   # {"array": "12", "tasks": 4, "merge": "13", ...}
    sbatch_scripts(config)    # {"array": "#!/bin/bash ...", "merge": ...}: `--dry-run`
    slurm_states(config.output)  # `hjax status`: each task's state, the merge's verdict
    cancel(config.output)     # ["cancelled merge job 13: 1 PENDING", ...]: `hjax cancel`
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import submitit

from hjax import _slurm_jobs, jobs
from hjax.config import ClusterSettings, StudyConfig, build
from hjax.errors import BatchesFailedError, ConfigError
from hjax.studies.runner import Shard, parse_shard
from hjax.studies.store import MANIFEST, Store

__all__ = ["JOBS_FILE", "ShardTask", "cancel", "merge_task", "sbatch_scripts", "slurm_available",
           "slurm_states", "submit"]

JOBS_FILE = Path("slurm") / "jobs.json"  # under the study's output: what was submitted
MERGE_MINUTES = 30
VERDICT = "hjax merge:"  # starts the merge job's verdict line in its log


def slurm_available() -> bool:
    """Whether a Slurm controller answers here.

    Example:
        >>> import os; from unittest import mock
        >>> with mock.patch.dict(os.environ, {"PATH": ""}):  # no `sinfo` to ask: no Slurm
        ...     slurm_available()
        False
    """
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class _Stopped(Exception):
    """A signalled task stopped between batches without requeuing: Slurm refused the
    requeue (`sbatch: {no-requeue: true}`, a site with JobRequeue=0) or is ending the task
    itself (a cancel, or a preemption that Slurm requeues)."""


def _job_state() -> str:
    """This task's state as Slurm has it (RUNNING while only signalled), or "" if unknown."""
    try:
        record = subprocess.run(["scontrol", "-o", "show", "job", os.environ["SLURM_JOB_ID"]],
                                capture_output=True, text=True, timeout=20).stdout
    except (KeyError, OSError, subprocess.TimeoutExpired):
        return ""
    fields = dict(item.partition("=")[::2] for item in record.split())
    return fields.get("JobState", "")


@contextmanager
def _checkpoint_between_batches():
    """Defer preemption until the batch in hand is stored: yields the `on_batch` callback
    that then runs submitit's handler (which checkpoints, requeues and exits).

    Slurm warns of a time limit or a preemption by submitit's signal (USR2) or, on sites
    that preempt with PreemptMode=REQUEUE, by SIGTERM, which submitit only logs: both are
    deferred alike. After a SIGTERM the task requeues itself only while Slurm still has it
    RUNNING (a bare signal): a cancel (`scancel`) or a preemption that Slurm requeues
    itself is not undone. Where the task does not requeue, or Slurm refuses the requeue, the
    task says so in one line of its log and stops cleanly (`_Stopped`): it holds no claim
    between batches, so the other tasks take its remaining batches."""
    which = getattr(signal, f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}")
    handler = signal.getsignal(which)
    received: list[int] = []
    caught = (which, signal.SIGTERM) if callable(handler) else ()  # () outside submitit
    previous = {signum: signal.getsignal(signum) for signum in caught}
    for signum in caught:
        signal.signal(signum, lambda signum, frame: received.append(signum))

    def on_batch(done: int, total: int) -> None:
        if not received:
            return
        name = signal.Signals(received[0]).name
        state = _job_state() if received[0] == signal.SIGTERM else "RUNNING"
        if state not in ("RUNNING", ""):
            print(f"hjax: {name} with the task {state} in Slurm: stopped after storing the "
                  "batch in hand; the other tasks take its remaining batches.", flush=True)
            raise _Stopped
        try:
            handler(received[0], None)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"hjax: preempted ({name}) after the batch in hand was stored, and Slurm "
                  f"refused to requeue this task ({error}); stopping: the other tasks take "
                  "its remaining batches.", flush=True)
            raise _Stopped from None

    try:
        yield on_batch
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


class ShardTask(submitit.helpers.Checkpointable):
    """An array task: fit the batches of shard `shard` ("k/n") of the study `config` (a
    dict), then any other batch no live task has claimed (`hjax.studies.runner.Shard`),
    resuming from its store; requeued by submitit when preempted or out of time."""

    def __call__(self, config: dict, shard: str) -> str:
        config = StudyConfig(**config)
        k, n, _ = parse_shard(shard)
        try:
            with _checkpoint_between_batches() as on_batch:
                table = jobs.run(config, shard=Shard(k, n, config.cluster.claim_expiry),
                                 on_batch=on_batch)
        except _Stopped:
            return f"shard {shard}: signalled and not requeued; stopped between batches"
        return f"shard {shard}: {table.sizes['dataset']} of {config.n_datasets()} datasets stored"


def merge_task(config: dict) -> str:
    """The job after the array: merge the stored batches, test them, write the report, and
    print the verdict to the job's log; an incomplete study fails the job (non-zero exit)."""
    config = StudyConfig(**config)
    if not (Path(config.output) / "batches" / MANIFEST).is_file():
        verdict = (f"incomplete: 0 of {config.n_datasets()} datasets; no task stored a batch "
                   f"(`hjax status {config.output}` says why)")
        print(f"{VERDICT} {verdict}", flush=True)
        raise BatchesFailedError(verdict)
    config, table = jobs.merge(config.output)
    path, rejected = jobs.write_outputs(config, table)
    missing = [name for name in table.attrs.get("missing_batches", "").split(", ") if name]
    stored = f"{table.sizes['dataset']} of {config.n_datasets()} datasets"
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)"
                                          if len(missing) > 8 else "")
        verdict = (f"incomplete: {stored}; missing batches {shown}; report {path}; "
                   f"`hjax submit` again fits only these")
    else:
        tested = "" if rejected is None else (
            f"; rejected: {', '.join(rejected)}" if rejected else "; no variable rejected")
        verdict = f"complete: {stored}; report {path}{tested}"
    print(f"{VERDICT} {verdict}", flush=True)
    if missing:
        raise BatchesFailedError(verdict)
    return verdict


def _absolute(config: StudyConfig) -> StudyConfig:
    """Paths resolved here, so that tasks read and write the same places wherever they run."""
    update = {"output": str(Path(config.output).resolve())}
    if isinstance(config.compile_cache, str):
        update["compile_cache"] = str(Path(config.compile_cache).expanduser().resolve())
    return config.model_copy(update=update)


def _accelerator(flag: str) -> bool:
    """Whether an sbatch flag asks for GPUs (`gres`, `gpus`, `gpus-per-node`, ...)."""
    flag = flag.replace("_", "-").lower()
    return "gpu" in flag or flag in ("gres", "tres-per-task")


def _setup(lines: list[str]) -> list[str]:
    """The `setup:` lines under `set -e`: the first that fails ends the task, named in its log
    (a task that runs on after a failed `module load cuda` fails later, and obscurely)."""
    if not lines:
        return []
    named = f"echo \"{_slurm_jobs.SETUP_FAILED} (exit $?): $BASH_COMMAND\" >&2"
    return ["set -e", f"trap '{named}' ERR", *lines, "trap - ERR", "set +e"]


def _parameters(cluster: ClusterSettings) -> dict:
    """submitit's Slurm parameters for one array task.

    Example:
        >>> _parameters(ClusterSettings(time=1, signal_delay=90))
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: cluster.signal_delay (90 s) is not well under cluster.time ...
    """
    if 2 * cluster.signal_delay > 60 * cluster.time:
        raise ConfigError(
            f"cluster.signal_delay ({cluster.signal_delay} s) is not well under cluster.time "
            f"({cluster.time} min): each task, and each requeued task again, would be told to "
            f"stop within the first half of its time. Set signal_delay to at most "
            f"{30 * cluster.time} s, or raise time.")
    if "?" in str(cluster.sbatch.get("dependency", "")):
        raise ConfigError(
            f"cluster.sbatch.dependency {cluster.sbatch['dependency']!r} joins its conditions "
            "with '?' (any of); the merge job also waits for the array, and Slurm joins "
            "conditions with ',' (all of) or '?', not both. Join them with ','.")
    named = {"partition": cluster.partition, "account": cluster.account,
             "gpus_per_task": cluster.gpus_per_task, "mem": cluster.mem}
    return {"time": cluster.time, "cpus_per_task": cluster.cpus_per_task,
            "signal_delay_s": cluster.signal_delay, "setup": _setup(list(cluster.setup)),
            "array_parallelism": cluster.parallel or cluster.tasks,
            # Slurm may requeue a task it preempts; a site's own choice (`no-requeue`) wins.
            "additional_parameters": ({} if {"requeue", "no-requeue", "no_requeue"}
                                      & set(cluster.sbatch) else {"requeue": True})
                                     | dict(cluster.sbatch),
            **{k: v for k, v in named.items() if v is not None}}


def _merge_parameters(parameters: dict, array: str) -> dict:
    """The merge job's parameters: the array's, less accelerators and time (it needs little
    of either), after every task of the array has ended and whatever the user's own
    `dependency` names (both)."""
    merge = {k: v for k, v in parameters.items()
             if k not in ("gpus_per_task", "array_parallelism")}
    extra = {k: v for k, v in parameters["additional_parameters"].items()
             if not _accelerator(k)}
    user = extra.pop("dependency", None)
    dependency = f"afterany:{array}" + (f",{user}" if user else "")
    return merge | {"time": MERGE_MINUTES, "additional_parameters": extra,
                    "dependency": dependency}


def _executor(out: Path, cluster: ClusterSettings, name: str,
              parameters: dict) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=out / "slurm" / "%j",
                                      max_num_timeout=cluster.requeues)
    executor.update_parameters(job_name=name, **parameters)
    return executor


def _missing_batches(out: Path) -> int | None:
    """How many of a started study's batches are not stored (None before any task ran)."""
    if not (out / "batches" / MANIFEST).is_file():
        return None
    store = Store(out / "batches")
    return sum(1 for batch in store.batches if not store.done(batch))


def _plan(config: StudyConfig) -> tuple[StudyConfig, dict, int]:
    """The config with absolute paths, the array's parameters and its number of tasks: one
    per missing batch at most, so that a re-submit starts no task that finds nothing to do."""
    config = _absolute(config)
    build(config)
    parameters = _parameters(config.cluster)
    missing = _missing_batches(Path(config.output))
    return config, parameters, config.cluster.tasks if missing is None else min(
        config.cluster.tasks, missing)


def sbatch_scripts(config: StudyConfig) -> dict[str, str]:
    """The sbatch scripts `submit` would send ("array", "merge"), submitting nothing; the
    merge job's dependency names the array as `<array>`."""
    from submitit.slurm.slurm import _make_sbatch_string  # what SlurmExecutor writes

    config, parameters, n_tasks = _plan(config)
    if n_tasks == 0:
        return {}
    folder = Path(config.output) / "slurm" / "%j"
    command = shlex.join([sys.executable, "-u", "-m", "submitit.core._submit", str(folder)])
    name = f"hjax-{config.kind}"
    return {"array": _make_sbatch_string(command=command, folder=folder, job_name=name,
                                         map_count=n_tasks, **parameters),
            "merge": _make_sbatch_string(command=command, folder=folder,
                                         job_name=f"{name}-merge",
                                         **_merge_parameters(parameters, "<array>"))}


def _undoer(out: Path):
    """A function that removes what a submission adds to `out` (submitit's scripts and
    pickles; `out` and `out/slurm` themselves if they were not there)."""
    slurm = out / "slurm"
    existed = {path for path in (out, slurm) if path.exists()}
    before = set(slurm.iterdir()) if slurm in existed else set()

    def undo() -> None:
        for path in (set(slurm.iterdir()) - before) if slurm.exists() else ():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        for path in (slurm, out):
            if path not in existed and path.exists() and not any(path.iterdir()):
                path.rmdir()

    return undo


def submit(config: StudyConfig) -> dict | None:
    """Submit the study as an array of shards plus a merge job; None when every batch is
    stored already (nothing to fit: `hjax report` merges them).

    The model is built here first, so a config that cannot run fails before anything is
    queued; a submission Slurm refuses leaves nothing behind (no job, no record). Returns (and
    appends to `<output>/slurm/jobs.json`) what was submitted.
    """
    config, parameters, n_tasks = _plan(config)
    if n_tasks == 0:
        return None
    out = Path(config.output)
    undo = _undoer(out)
    cluster = config.cluster
    shards = [f"{k}/{n_tasks}" for k in range(n_tasks)]
    data = config.model_dump()
    submitted: list[str] = []
    try:
        # submitit prints sbatch's error before raising it: it is said once, below.
        with redirect_stderr(io.StringIO()):
            tasks = _executor(out, cluster, f"hjax-{config.kind}", parameters).map_array(
                ShardTask(), [data] * len(shards), shards)
            submitted.append(tasks[0].job_id.split("_")[0])
            merge = _executor(out, cluster, f"hjax-{config.kind}-merge",
                              _merge_parameters(parameters, submitted[0])).submit(
                merge_task, data)
    except submitit.core.utils.FailedJobError as error:
        if submitted:
            subprocess.run(["scancel", *submitted], capture_output=True)
        undo()
        which = "merge job" if submitted else "job array"
        said = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise ConfigError(f"Slurm refused the study's {which}: {said}. Check the config's "
                          "`cluster:` section (partition, account, time, sbatch); nothing was "
                          "submitted.") from None
    if not (out / jobs.CONFIG_FILE).exists():  # for `hjax status` before a task starts
        # An existing study's config stays: the tasks write theirs once its store accepts
        # them, and a refused study leaves it as it was.
        jobs.save_config(config)
    record = {"array": submitted[0], "tasks": n_tasks, "merge": merge.job_id,
              "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = out / JOBS_FILE
    history = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*history, record], indent=1))
    return record


def _records(output: str | os.PathLike) -> list[dict]:
    path = Path(output) / JOBS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def cancel(output: str | os.PathLike) -> list[str]:
    """Cancel the study's jobs that Slurm still holds (arrays and merge jobs of every
    submission); returns a line per job cancelled."""
    said = []
    for record in _records(output):
        # The merge job first: cancelling the array would let it start.
        for label, job, n in (("merge job", record["merge"], None),
                              ("array", record["array"], record["tasks"])):
            live = [t for t in _slurm_jobs.job_tasks(job, Path(output) / "slurm", n)
                    if t.state in _slurm_jobs.LIVE]
            if not live:
                continue
            # A cancelled task gets SIGTERM, which a task takes for a preemption and asks to
            # be requeued: refused once the job may not requeue.
            subprocess.run(["scontrol", "update", f"JobId={job}", "Requeue=0"],
                           capture_output=True)
            if subprocess.run(["scancel", job], capture_output=True).returncode == 0:
                said.append(f"cancelled {label} {job}: {_slurm_jobs.summary(live)}")
    return said


def _verdict(folder: Path, merge: str) -> str | None:
    """The merge job's verdict line from its log (None before it has written one)."""
    try:
        lines = (folder / merge / f"{merge}_0_log.out").read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = [line for line in lines if line.startswith(VERDICT)]
    return found[-1].removeprefix(VERDICT).strip() if found else None


def slurm_states(output: str | os.PathLike) -> tuple[list[str], bool | None]:
    """Lines naming the study's latest Slurm jobs, the state of each task that has not simply
    completed (requeues, why it failed, its log) and the merge job's verdict; and whether any
    task runs (None if the study was not submitted or Slurm does not answer)."""
    records = _records(output)
    if not records:
        return [], None
    record = records[-1]
    folder = Path(output) / "slurm"
    if not slurm_available():
        return [f"slurm: array {record['array']}, merge job {record['merge']} (Slurm does not "
                "answer here)"], None
    tasks = _slurm_jobs.job_tasks(record["array"], folder, record["tasks"])
    lines = [f"slurm array {record['array']}: {_slurm_jobs.summary(tasks)} (logs: "
             f"{folder}/{record['array']}_<task>/)"]
    lines += [f"  task {task.id}: {task.line()}" for task in tasks
              if task.state != "COMPLETED" or task.requeues]
    merge = _slurm_jobs.job_tasks(record["merge"], folder)[0]
    lines.append(f"slurm merge job {record['merge']}: {merge.line()}")
    verdict = _verdict(folder, record["merge"])
    if verdict:
        lines.append(f"  verdict: {verdict}")
    return lines, any(task.state == "RUNNING" for task in tasks)
