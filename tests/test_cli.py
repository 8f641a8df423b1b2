"""The `hjax` command's boundary: a user's mistake is one line and exit code 1; a bug in hjax
keeps its traceback, says it is a bug, and exits with 2."""

import pytest
from click.testing import CliRunner

from hjax import errors, jobs
from hjax.cli import main

CONFIG = "model: varying_intercept\ndatasets: 2\nchains: 2\nwarmup: 20\ndraws: 20\n"


def _sbc_failing_with(error, tmp_path, monkeypatch):
    """`hjax sbc` of a config whose run raises `error`."""
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(jobs, "run", fail)
    path = tmp_path / "study.yaml"
    path.write_text(CONFIG + f"output: {tmp_path / 'out'}\n")
    return CliRunner().invoke(main, ["sbc", str(path)])


@pytest.mark.parametrize("error", [errors.DataError("data['y'] has NaN at rows [3]."),
                                   errors.StudyDirectoryError("out holds a different study."),
                                   errors.BatchesFailedError("1 batch(es) failed."),
                                   OSError(28, "No space left on device", "out/batch.nc")])
def test_what_a_user_can_fix_is_one_line(tmp_path, monkeypatch, error):
    result = _sbc_failing_with(error, tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "bug" not in result.output
    assert result.output.splitlines()[-1] == ("Error: out/batch.nc: No space left on device."
                                              if isinstance(error, OSError)
                                              else f"Error: {error}")


@pytest.mark.parametrize("error", [KeyError("dataset"), ValueError("operands could not be "
                                                                    "broadcast together"),
                                   RuntimeError("XLA")])
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, error):
    # A plain ValueError is a bug too: what a user can fix is raised as a UserInputError.
    result = _sbc_failing_with(error, tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.output
    assert f"{type(error).__name__}: " in result.output
    assert "This is a bug in hjax" in result.output and "not a problem with your input" in (
        result.output)
