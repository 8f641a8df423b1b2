"""Studies as Slurm job arrays through submitit: one array task per shard, then a merge job.

`submit` sends a config's study to Slurm as an array of `cluster.tasks` tasks, task k fitting
batches k, k + n, ... into the study's shared directory, and a job that waits for the whole
array (`afterany`) and then merges the stored batches, tests them and writes the report.

Preemption and time limits: Slurm signals a task (`--signal=USR2@signal_delay`) before it
stops it. The task finishes and stores the batch in hand, then submitit checkpoints it and
requeues it; the requeued task skips the stored batches. Signal handling waits for the batch
because a running XLA computation cannot be interrupted from Python anyway, so a batch should
take well under `signal_delay` seconds.

Why array tasks rather than one multi-host JAX program: a study's datasets are independent,
so nothing needs to cross machines while fitting. Array tasks start, fail, get preempted and
requeue one by one, each resuming from the store, where one multi-host program needs all of
its hosts up at once and loses all of them to one failure. A node's GPUs are local devices of
its task (`hj.sample` spreads datasets over them).

Usage (what `hjax submit CONFIG` does)::

    config = hjax.config.load("configs/varying_intercept.yaml")
    record = submit(config)   # {"array": "12", "tasks": 4, "merge": "13", ...}
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import submitit

from hjax import jobs
from hjax.config import ClusterSettings, StudyConfig, build

__all__ = ["JOBS_FILE", "ShardTask", "merge_task", "slurm_available", "slurm_states", "submit"]

JOBS_FILE = Path("slurm") / "jobs.json"  # under the study's output: what was submitted
MERGE_MINUTES = 30


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


@contextmanager
def _checkpoint_between_batches():
    """Defer submitit's preemption handler until the batch in hand is stored: yields the
    `on_batch` callback that runs the deferred handler (which requeues and exits)."""
    which = getattr(signal, f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}")
    handler = signal.getsignal(which)
    received: list[int] = []
    if callable(handler):
        signal.signal(which, lambda signum, frame: received.append(signum))

    def on_batch(done: int, total: int) -> None:
        if received and callable(handler):
            handler(received[0], None)

    try:
        yield on_batch
    finally:
        if callable(handler):
            signal.signal(which, handler)


class ShardTask(submitit.helpers.Checkpointable):
    """An array task: fit shard `shard` ("k/n") of the study `config` (a dict), resuming
    from its store; requeued by submitit when preempted or out of time."""

    def __call__(self, config: dict, shard: str) -> str:
        config = StudyConfig(**config)
        with _checkpoint_between_batches() as on_batch:
            table = jobs.run(config, shard=shard, on_batch=on_batch)
        return f"shard {shard}: {table.sizes['dataset']} of {config.n_datasets()} datasets stored"


def merge_task(config: dict) -> str:
    """The job after the array: merge the stored batches, test them, write the report."""
    config, table = jobs.merge(StudyConfig(**config).output)
    path, rejected = jobs.write_outputs(config, table)
    missing = table.attrs.get("missing_batches") or "none"
    return f"report {path}; rejected: {rejected}; missing batches: {missing}"


def _absolute(config: StudyConfig) -> StudyConfig:
    """Paths resolved here, so that tasks read and write the same places wherever they run."""
    update = {"output": str(Path(config.output).resolve())}
    if isinstance(config.compile_cache, str):
        update["compile_cache"] = str(Path(config.compile_cache).expanduser().resolve())
    return config.model_copy(update=update)


def _parameters(cluster: ClusterSettings) -> dict:
    """submitit's Slurm parameters for one array task."""
    named = {"partition": cluster.partition, "account": cluster.account,
             "gpus_per_task": cluster.gpus_per_task, "mem": cluster.mem}
    return {"time": cluster.time, "cpus_per_task": cluster.cpus_per_task,
            "signal_delay_s": cluster.signal_delay, "setup": list(cluster.setup),
            "array_parallelism": cluster.parallel or cluster.tasks,
            "additional_parameters": dict(cluster.sbatch),
            **{k: v for k, v in named.items() if v is not None}}


def _executor(out: Path, cluster: ClusterSettings, name: str,
              parameters: dict) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=out / "slurm" / "%j",
                                      max_num_timeout=cluster.requeues)
    executor.update_parameters(job_name=name, **parameters)
    return executor


def submit(config: StudyConfig) -> dict:
    """Submit the study as an array of `config.cluster.tasks` shards plus a merge job.

    The model is built here first, so a config that cannot run fails before anything is
    queued. Returns (and appends to `<output>/slurm/jobs.json`) what was submitted.
    """
    config = _absolute(config)
    build(config)
    out = Path(config.output)
    (out / "slurm").mkdir(parents=True, exist_ok=True)
    if not (out / jobs.CONFIG_FILE).exists():  # for `hjax status` before a task starts
        # An existing study's config stays: the tasks write theirs once its store accepts
        # them, and a refused study leaves it as it was.
        jobs.save_config(config)
    cluster = config.cluster
    parameters = _parameters(cluster)
    shards = [f"{k}/{cluster.tasks}" for k in range(cluster.tasks)]
    data = config.model_dump()
    tasks = _executor(out, cluster, f"hjax-{config.kind}", parameters).map_array(
        ShardTask(), [data] * len(shards), shards)
    array = tasks[0].job_id.split("_")[0]
    # The merge needs no accelerator and little time; it runs once every task has ended.
    merge_parameters = {k: v for k, v in parameters.items()
                        if k not in ("gpus_per_task", "array_parallelism")}
    merge_parameters |= {"time": MERGE_MINUTES, "dependency": f"afterany:{array}",
                         "additional_parameters": {k: v for k, v in cluster.sbatch.items()
                                                   if "gpu" not in k}}
    merge = _executor(out, cluster, f"hjax-{config.kind}-merge", merge_parameters).submit(
        merge_task, data)
    record = {"array": array, "tasks": cluster.tasks, "merge": merge.job_id,
              "submitted": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = out / JOBS_FILE
    history = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*history, record], indent=1))
    return record


def _query(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _job_states(job: str) -> dict[str, str]:
    """Task id -> state of a job (array tasks one by one): squeue for queued and running
    tasks, then scontrol for those Slurm still remembers; the rest are gone (ended)."""
    states = {}
    for line in _query(["squeue", "-h", "-r", "-j", job, "-o", "%i|%T"]).splitlines():
        task, _, state = line.partition("|")
        states[task] = state
    for record in _query(["scontrol", "-o", "show", "job", job]).splitlines():
        fields = dict(item.partition("=")[::2] for item in record.split())
        task = fields.get("JobId", "")
        if fields.get("ArrayTaskId"):
            task = f"{fields.get('ArrayJobId')}_{fields['ArrayTaskId']}"
        states.setdefault(task, fields.get("JobState", "UNKNOWN"))
    return states


def slurm_states(output: str | os.PathLike) -> list[str]:
    """Lines naming the study's latest Slurm jobs and their tasks' states (none if the study
    was not submitted)."""
    path = Path(output) / JOBS_FILE
    if not path.exists():
        return []
    record = json.loads(path.read_text())[-1]
    if not slurm_available():
        return [f"slurm: array {record['array']}, merge job {record['merge']} (Slurm does not "
                "answer here)"]
    lines = []
    for label, job in (("array", record["array"]), ("merge job", record["merge"])):
        states = _job_states(job)
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        lines.append(f"slurm {label} {job}: {summary or 'ended (no longer known to Slurm)'}")
    return lines
