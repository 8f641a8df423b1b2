"""What became of a submitted job's tasks: state, requeues, why one failed, where its log is.

Slurm answers for the jobs it remembers: `squeue` for queued and running tasks, `scontrol` for
those that ended less than `MinJobAge` ago, `sacct` for everything where accounting is on (it
exits 1 where it is off, as on `scripts/slurm-local`). A task none of them knows has ended long
ago: its state then comes from what submitit left in its folder (`<output>/slurm/<task>/`): a
result pickle for a task that returned or raised, else only its logs.
"""

from __future__ import annotations

import pickle
import re
import subprocess
from pathlib import Path
from typing import NamedTuple

__all__ = ["LIVE", "Task", "expand_tasks", "job_tasks", "last_error", "summary"]

LIVE = {"PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}
SETUP_FAILED = "hjax: setup failed"  # the line the sbatch script writes when `setup:` fails
_CANCELLED = re.compile(r"\*\*\* JOB \S+ ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+))? \*\*\*")


class Task(NamedTuple):
    """One task of a job: `state` is Slurm's word (PENDING, RUNNING, FAILED, ...) or ENDED
    (gone from Slurm, no result left); `reason` says why it waits or failed."""

    id: str
    state: str
    requeues: int = 0
    reason: str = ""
    log: Path | None = None

    def line(self) -> str:
        parts = [self.state + (f" ({self.reason})" if self.reason and self.state == "PENDING"
                               else "")]
        if self.requeues:
            parts.append(f"requeued {self.requeues} time{'s' if self.requeues > 1 else ''}")
        if self.reason and self.state != "PENDING":
            parts.append(self.reason)
        return ", ".join(parts) + (f"; log {self.log}" if self.log else "")


def expand_tasks(job: str, tasks: str) -> list[str]:
    """Task ids of an array record's task field (ranges, lists and a `%` throttle).

    Example:
        >>> expand_tasks("22", "2-4,7%2")
        ['22_2', '22_3', '22_4', '22_7']
    """
    found = []
    for part in tasks.strip("[]").split("%")[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit():
            found += [f"{job}_{k}" for k in range(int(first), int(last or first) + 1)]
    return found


def _query(command: list[str]) -> str | None:
    """The command's output, None if it fails (Slurm or accounting absent)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _exit(code: str) -> str:
    """Slurm's `exit:signal` as words ('' for 0:0)."""
    status, _, sig = code.partition(":")
    if sig not in ("", "0"):
        return f"signal {sig}"
    return "" if status in ("", "0") else f"exit code {status}"


def _from_scontrol(job: str) -> dict[str, dict]:
    found = {}
    for record in (_query(["scontrol", "-o", "show", "job", job]) or "").splitlines():
        fields = dict(item.partition("=")[::2] for item in record.split())
        ids = ([fields.get("JobId", "")] if not fields.get("ArrayTaskId") else
               expand_tasks(fields.get("ArrayJobId", job), fields["ArrayTaskId"]))
        for task in ids:
            found[task] = {"state": fields.get("JobState", "UNKNOWN"),
                           "requeues": int(fields.get("Restarts", "0") or 0),
                           "exit": _exit(fields.get("ExitCode", "")),
                           "why": fields.get("Reason", "None")}
    return found


def _from_sacct(job: str) -> dict[str, dict]:
    """Every task accounting remembers; REQUEUED records (one per requeue, `-D`) counted."""
    text = _query(["sacct", "-n", "-P", "-D", "-X", "-j", job, "-o", "JobID,State,ExitCode"])
    found: dict[str, dict] = {}
    for line in (text or "").splitlines():
        ident, state, code = (line.split("|") + ["", ""])[:3]
        state = state.split()[0] if state else "UNKNOWN"  # "CANCELLED by 0"
        array, _, tasks = ident.partition("_")
        for task in expand_tasks(array, tasks) if tasks.startswith("[") else [ident]:
            entry = found.setdefault(task, {"requeues": 0})
            if state == "REQUEUED":
                entry["requeues"] += 1
            else:
                entry |= {"state": state, "exit": _exit(code)}
    return {task: entry for task, entry in found.items() if "state" in entry}


def last_error(log: Path) -> str:
    """The line of a task's error log that says why it failed: a failed `setup:` line, the
    last exception, or Slurm's cancel notice ('' if none).

    Example:
        >>> import tempfile
        >>> log = Path(tempfile.mkdtemp()) / "22_0_0_log.err"
        >>> _ = log.write_text("Traceback (most recent call last):\\n  File ...\\n"
        ...                    "OSError: scratch disk unavailable\\nsrun: error: task 0\\n")
        >>> last_error(log)
        'OSError: scratch disk unavailable'
    """
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    setup = [line for line in lines if line.startswith(SETUP_FAILED)]
    if setup:
        return setup[-1]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:
        for line in lines[starts[-1] + 1:]:
            if line and not line[0].isspace():
                return line
    cancels = [m for m in map(_CANCELLED.search, lines) if m and m.group(1) != "JOB REQUEUE"]
    if cancels:
        return "cancelled" + (f" due to {cancels[-1].group(1).lower()}"
                              if cancels[-1].group(1) else "")
    return ""


def _from_folder(folder: Path, task: str) -> dict:
    """What submitit left for a task Slurm has forgotten: its result, else its logs."""
    base = folder / task / f"{task}_0"
    log = base.with_name(base.name + "_log.err")
    requeues = 0
    if log.exists():
        requeues = sum(1 for m in map(_CANCELLED.search, log.read_text(errors="replace")
                                      .splitlines()) if m and m.group(1) == "JOB REQUEUE")
    result = base.with_name(base.name + "_result.pkl")
    try:
        outcome, _ = pickle.loads(result.read_bytes())  # submitit's (outcome, value)
    except (OSError, EOFError, ImportError, pickle.UnpicklingError, TypeError, ValueError):
        outcome = None
    said = last_error(log) if log.exists() else ""
    out = base.with_name(base.name + "_log.out")
    runs = (out.read_text(errors="replace").count("Starting with JobEnvironment")
            if out.exists() else 0)
    if requeues and requeues >= runs:  # what it left predates its last requeue
        state, said = "ENDED", "never ran again"
    elif said.startswith("cancelled"):  # a cancelled task may still have returned
        state = {"cancelled due to time limit": "TIMEOUT",
                 "cancelled due to preemption": "PREEMPTED"}.get(said, "CANCELLED")
        said = ""  # the state says it
    elif outcome == "success":
        state = "COMPLETED"
    elif outcome == "error" or said:
        state = "FAILED"
    else:
        state = "ENDED"
        said = "no result" if log.exists() else "never started"
    return {"state": state, "requeues": requeues, "exit": said}


def job_tasks(job: str, folder: Path, n_tasks: int | None = None) -> list[Task]:
    """The tasks of Slurm job `job` (an array of `n_tasks`, or a single job when None),
    whose submitit folder is `folder`, each from the best source that still knows it."""
    ids = [job] if n_tasks is None else [f"{job}_{k}" for k in range(n_tasks)]
    queued = {}
    for line in (_query(["squeue", "-h", "-r", "-j", job, "-o", "%i|%T|%r"]) or "").splitlines():
        task, state, why = (line.split("|") + ["", ""])[:3]
        queued[task] = {"state": state, "why": why}
    controlled = _from_scontrol(job)
    accounted = _from_sacct(job) if len(controlled) < len(ids) else {}
    tasks = []
    for task in ids:
        known = controlled.get(task) or accounted.get(task) or _from_folder(folder, task)
        known = known | queued.get(task, {})
        state = known["state"]
        log = folder / task / f"{task}_0_log.err"
        reason = known.get("why", "") if state == "PENDING" else ""
        if state not in ("PENDING", "RUNNING", "COMPLETED", "COMPLETING"):
            said = last_error(log) if log.exists() else ""
            if said.startswith("cancelled") and state in ("CANCELLED", "TIMEOUT", "PREEMPTED"):
                said = ""
            reason = "; ".join(dict.fromkeys(part for part in (known.get("exit", ""), said)
                                             if part))
        requeues = max(known.get("requeues", 0), accounted.get(task, {}).get("requeues", 0))
        tasks.append(Task(task.partition("_")[2] or task, state, requeues, reason,
                          log if log.exists() else None))
    return tasks


def summary(tasks: list[Task]) -> str:
    """Counts by state, e.g. '2 PENDING, 1 RUNNING'.

    Example:
        >>> summary([Task("0", "RUNNING"), Task("1", "PENDING"), Task("2", "PENDING")])
        '2 PENDING, 1 RUNNING'
    """
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
