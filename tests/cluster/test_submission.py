"""The sbatch scripts `hjax submit` sends, read from `hjax submit --dry-run` (which submits
nothing and needs no Slurm): the merge job waits for the array and the user's dependency, asks
for no GPU, `setup:` lines stop the task at the first that fails and name it; settings Slurm
would turn against the study are refused before anything is queued."""

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import hjax.cluster  # noqa: F401 - submitit's logger keeps the stderr it is first imported under
from hjax._slurm_jobs import expand_tasks, last_error
from hjax.cli import main

CONFIG = ("model: varying_intercept\nargs: {{groups: 4, per_group: 5}}\ndatasets: 16\n"
          "batch_size: 4\noutput: {output}\nchains: 2\nwarmup: 60\ndraws: 40\n"
          "cluster: {cluster}\n")
GPU = ("{tasks: 3, time: 20, gpus_per_task: 1, setup: ['module load cuda', 'echo ready'], "
       "sbatch: {dependency: 'afterok:123', gres: 'gpu:a100:1', qos: long}}")


def _config(tmp_path, cluster=GPU) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(CONFIG.format(output=tmp_path / "out", cluster=cluster))
    return path


def _scripts(path) -> dict[str, list[str]]:
    result = CliRunner().invoke(main, ["submit", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    _, array, merge = result.output.split("# --- ")
    assert array.startswith("array job") and merge.startswith("merge job")
    return {"array": array.splitlines(), "merge": merge.splitlines()}


def _flags(lines: list[str]) -> dict[str, str]:
    return dict(line.removeprefix("#SBATCH --").partition("=")[::2] for line in lines
                if line.startswith("#SBATCH"))


def test_dry_run_prints_both_scripts_and_submits_nothing(tmp_path):
    scripts = _scripts(_config(tmp_path))
    array, merge = _flags(scripts["array"]), _flags(scripts["merge"])
    assert array["array"] == "0-2%3" and array["time"] == "20" and array["qos"] == "long"
    assert array["gpus-per-task"] == "1" and array["gres"] == "gpu:a100:1"
    assert array["dependency"] == "afterok:123"
    assert array["signal"] == "USR2@90" and "requeue" in array
    # The merge job: after the whole array and the user's own dependency; no GPU; short.
    assert merge["dependency"] == "'afterany:<array>,afterok:123'"
    assert not [flag for flag in merge if "gpu" in flag or flag == "gres"]
    assert merge["time"] == "30" and merge["qos"] == "long" and "array" not in merge
    assert not (tmp_path / "out").exists()


def test_setup_lines_run_under_set_e_and_a_failing_one_is_named(tmp_path):
    lines = _scripts(_config(tmp_path))["array"]
    setup = lines[lines.index("# setup") + 1:lines.index("# command")]
    assert [line for line in setup if line] == [
        "set -e", "trap 'echo \"hjax: setup failed (exit $?): $BASH_COMMAND\" >&2' ERR",
        "module load cuda", "echo ready", "trap - ERR", "set +e"]
    # The same lines in bash, where no `module` command exists: the task stops there.
    script = "\n".join(setup) + "\necho 'the task ran'\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode == 127 and "the task ran" not in done.stdout
    log = tmp_path / "0_0_log.err"
    log.write_text(done.stderr)
    assert last_error(log) == "hjax: setup failed (exit 127): module load cuda"
    fixed = script.replace("module load cuda", "true")
    assert subprocess.run(["bash", "-c", fixed], capture_output=True,
                          text=True).stdout == "ready\nthe task ran\n"


@pytest.mark.parametrize("cluster, message", [
    ("{time: 2, signal_delay: 90}",
     "cluster.signal_delay (90 s) is not well under cluster.time (2 min): each task, and each "
     "requeued task again, would be told to stop within the first half of its time. Set "
     "signal_delay to at most 60 s, or raise time."),
    ("{sbatch: {dependency: 'afterok:1?afterok:2'}}",
     "cluster.sbatch.dependency 'afterok:1?afterok:2' joins its conditions with '?' (any of)"),
])
def test_settings_slurm_would_turn_against_the_study_are_refused(tmp_path, cluster, message):
    for command in (["--dry-run"], []):
        result = CliRunner().invoke(main, ["submit", str(_config(tmp_path, cluster)), *command])
        assert result.exit_code == 1 and message in result.output
        assert result.output.count("Error:") == 1
    assert not (tmp_path / "out").exists()


def test_array_records_expand_to_their_tasks():
    assert expand_tasks("22", "2-5") == ["22_2", "22_3", "22_4", "22_5"]
    assert expand_tasks("22", "[1,3-4%2]") == ["22_1", "22_3", "22_4"]
    assert expand_tasks("22", "7") == ["22_7"]
