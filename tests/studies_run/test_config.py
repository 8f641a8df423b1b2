"""Configs are validated before anything compiles; the CLI runs a study end to end."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner

from hjax import config as cfg
from hjax.cli import main
from hjax.studies.recover import group_means

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, text):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_build_simulate_and_name_real_parameters(name):
    """Each shipped config builds its model, whose simulated data pass the model's own checks;
    held, gridded and shrinkage names are the model's; a fit's data file is there."""
    config = cfg.load(ROOT / "configs" / name)
    model, design = cfg.build(config)
    truths, data = jax.jit(model.simulate)(jax.random.key(0),
                                           model.prepare(design, observed=False))
    model.prepare({k: np.asarray(v) for k, v in data.items()})
    assert set(truths) == set(model.param_dims)
    assert set(config.given) | set(config.grid) <= set(model.param_dims)
    if config.shrinkage is not None:
        group_means(model, config.shrinkage)
    if config.data is not None:
        assert (ROOT / config.data).is_file()  # shipped in the repository
    else:
        assert config.n_datasets("recover" if config.given or config.grid else "sbc") > 1


STUDIES = sorted(p.name for p in (ROOT / "configs").glob("*.yaml")
                 if "data:" not in (ROOT / "configs" / p.name).read_text())
SMALL = {"datasets": 2, "replicates": 1, "chains": 2, "warmup": 60, "draws": 40,
         "batch_size": 2, "max_rank": 39, "escalation": {"attempts": 0}}


# The three that compile longest run with the slow checks (`make test-all`); every config is
# built and simulated in `make test` (above).
LONGEST = ("formula_varying_slope.yaml", "sdt_brightness.yaml", "varying_slope.yaml")


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in LONGEST
                                  else name for name in STUDIES])
def test_shipped_study_configs_run_from_the_repository(name, tmp_path, monkeypatch):
    """Each study config runs as the README shows it (`hjax sbc|recover configs/...`, from the
    repository root, reading only shipped files), here on fewer datasets and draws."""
    monkeypatch.chdir(ROOT)
    raw = yaml.safe_load((ROOT / "configs" / name).read_text())
    small = raw | SMALL | {"output": str(tmp_path / "out")}
    if "grid" in raw:
        small["grid"] = {key: values[:1] for key, values in raw["grid"].items()}
    path = _write(tmp_path, yaml.safe_dump(small))
    kind = cfg.load(path).kind
    result = CliRunner().invoke(main, [kind, str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").is_file()


def test_the_fit_config_runs_as_shipped(tmp_path, monkeypatch):
    """`hjax fit configs/eight_schools_fit.yaml`, as the README shows it, on the shipped data."""
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["fit", "configs/eight_schools_fit.yaml",
                                       "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert xr.open_datatree(tmp_path / "fit.nc").posterior["theta"].shape == (4, 1000, 8)


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, "model: varying_intercept\ndatasetz: 10\n")
    with pytest.raises(ValueError, match=r"datasetz: Extra inputs are not permitted"):
        cfg.load(path)


def test_wrong_type_is_named(tmp_path):
    path = _write(tmp_path, "model: varying_intercept\nchains: four\n")
    with pytest.raises(ValueError, match=r"chains: Input should be a valid integer"):
        cfg.load(path)


def test_unknown_model_lists_shipped_ones(tmp_path):
    path = _write(tmp_path, "model: nope\n")
    with pytest.raises(ValueError, match=r"Unknown model 'nope'; shipped models are"):
        cfg.load(path)


def test_unknown_builder_argument_is_named(tmp_path):
    config = cfg.load(_write(tmp_path, "model: varying_intercept\nargs: {groupz: 3}\n"))
    with pytest.raises(ValueError, match=r"takes no \['groupz'\]; it takes \['groups', "
                                         r"'per_group'\]"):
        cfg.build(config)


def test_user_builder_by_module_path(tmp_path):
    config = cfg.load(_write(tmp_path, "model: hjax.catalog:varying_intercept\n"))
    model, _ = cfg.build(config)
    assert "u_sd" in model.param_specs


TINY = """model: varying_intercept
args: {{groups: 3, per_group: 4}}
datasets: {datasets}
chains: 2
warmup: 60
draws: 60
batch_size: 2
max_rank: 19
output: {output}
"""


def test_cli_sbc_writes_results_and_report(tmp_path):
    path = _write(tmp_path, TINY.format(datasets=4, output=tmp_path / "out"))
    result = CliRunner().invoke(main, ["sbc", str(path)])
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    table = xr.load_dataset(tmp_path / "out" / "sbc.nc")
    assert table.sizes["dataset"] == 4
    assert (tmp_path / "out" / "report.md").stat().st_size > 0


def test_cli_reports_config_errors_without_traceback(tmp_path):
    path = _write(tmp_path, "model: varying_intercept\nchains: 0\n")
    result = CliRunner().invoke(main, ["sbc", str(path)])
    assert result.exit_code != 0
    assert "chains: Input should be greater than or equal to 1" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_results(tmp_path):
    def command(output):
        path = _write(tmp_path, TINY.format(datasets=8, output=output))
        return [sys.executable, "-m", "hjax.cli", "sbc", str(path)]

    subprocess.run(command(tmp_path / "full"), check=True, capture_output=True)
    killed = subprocess.Popen(command(tmp_path / "killed"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    batches = tmp_path / "killed" / "batches"
    deadline = time.time() + 300
    while len(list(batches.glob("batch-*.nc"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert 2 <= len(list(batches.glob("batch-*.nc"))) < 4
    subprocess.run(command(tmp_path / "killed"), check=True, capture_output=True)
    full = xr.load_dataset(tmp_path / "full" / "sbc.nc")
    resumed = xr.load_dataset(tmp_path / "killed" / "sbc.nc")
    xr.testing.assert_equal(full["rank"], resumed["rank"])
    assert resumed["dataset"].values.tolist() == list(range(8))


def test_cli_recover_with_shrinkage_writes_report(tmp_path):
    text = (TINY.format(datasets=1, output=tmp_path / "out").replace("groups: 3, per_group: 4",
            "groups: 3, per_group: [1, 3, 12]")
            + "given: {u_sd: 0.5}\nreplicates: 4\nshrinkage: u\n")
    result = CliRunner().invoke(main, ["recover", str(_write(tmp_path, text))])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text()
    assert "shrinkage.png" in report and "Calibration" not in report
    assert (tmp_path / "out" / "shrinkage.png").stat().st_size > 1000


def test_cli_fit_writes_posterior_and_summary(tmp_path):
    data = tmp_path / "schools.json"
    data.write_text('{"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 12], '
                    '"sigma": [15, 10, 16, 11, 9, 11, 10, 18]}')
    text = (f"model: eight_schools\ndata: {data}\nchains: 2\nwarmup: 200\ndraws: 200\n"
            f"output: {tmp_path / 'out'}\n")
    result = CliRunner().invoke(main, ["fit", str(_write(tmp_path, text))])
    assert result.exit_code == 0, result.output
    assert "theta_sd" in result.output and "r_hat" in result.output
    tree = xr.open_datatree(tmp_path / "out" / "fit.nc")
    assert tree.posterior["theta"].shape == (2, 200, 8)
