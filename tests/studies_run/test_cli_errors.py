"""What a user can get wrong on the command line ends in one message and a non-zero exit."""

import re

import pytest
from click.testing import CliRunner

from hjax.cli import main

FIT = "model: eight_schools\nchains: 2\nwarmup: 50\ndraws: 50\n"


def _invoke(tmp_path, text, *args, command="sbc"):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return CliRunner().invoke(main, [command, str(path), *args])


@pytest.mark.parametrize(("text", "expected"), [
    ("model: varying_intercept\nargs: {groups: 3\nchains: 2\n",
     r"study.yaml: not valid YAML at line 3, column 7: expected ',' or '}'"),
    ("model: varying_intercept\nargs: {groups: twenty}\n",
     r"Model 'varying_intercept': args.groups: Input should be a valid integer"),
    ("model: varying_intercept\nchains: 2.5\n",
     r"chains: Input should be a valid integer, got a number with a fractional part"),
    ("model: varying_intercept\nsampler: blackjax\nlanes: 3\n",
     r"lanes applies to sampler='nuts'"),
])
def test_bad_config_is_one_message_naming_it(tmp_path, text, expected):
    result = _invoke(tmp_path, text)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert re.search(expected, result.output), result.output


def test_fit_with_a_missing_data_file(tmp_path):
    result = _invoke(tmp_path, FIT + f"data: {tmp_path / 'nope.json'}\n", command="fit")
    assert result.exit_code == 1
    assert f"Data file {tmp_path / 'nope.json'} not found" in result.output


def test_output_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    data = tmp_path / "schools.json"
    data.write_text('{"y": [28, 8, -3, 7, -1, 1, 18, 12]}')
    fit = _invoke(tmp_path, FIT + f"data: {data}\noutput: {tmp_path / 'taken'}\n",
                  command="fit")
    assert fit.exit_code == 1 and "is a file; give a directory" in fit.output
    study = _invoke(tmp_path, "model: varying_intercept\ndatasets: 2\n",
                    "--output", str(tmp_path / "taken"))
    assert study.exit_code == 1
    assert "Cannot write study results to" in study.output and "Not a directory" in study.output


def test_fit_honours_the_configs_sampler(tmp_path):
    import xarray as xr

    data = tmp_path / "schools.json"
    data.write_text('{"y": [28, 8, -3, 7, -1, 1, 18, 12]}')
    result = _invoke(tmp_path, FIT + f"data: {data}\nsampler: blackjax\noutput: {tmp_path}/o\n",
                     command="fit")
    assert result.exit_code == 0, result.output
    attrs = xr.open_datatree(tmp_path / "o" / "fit.nc").posterior.attrs
    assert attrs["sampler"] == "blackjax" and attrs["inference_library"] == "blackjax"
    result = _invoke(tmp_path, FIT + f"data: {data}\nlanes: 3\noutput: {tmp_path}/p\n",
                     command="fit")
    assert xr.open_datatree(tmp_path / "p" / "fit.nc").posterior.attrs["lanes"] == 3
