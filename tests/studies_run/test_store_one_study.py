"""A study directory holds one study: batches of another study (copied in, or left behind when
`study.json` was deleted) are set aside and refitted, a refused run changes nothing, a copied or
moved study reports into itself, and a broken manifest, config or full disk is one line."""

import errno
import json
import shutil
from pathlib import Path

import pytest
import xarray as xr
from click.testing import CliRunner

import hjax as hj
from hjax import cluster, jobs  # noqa: F401 - cluster: see _cli
from hjax.cli import main
from hjax.errors import StudyDirectoryError
from hjax.studies import store
from hjax.studies.runner import merge_directory
from hjax.studies.status import describe, study_status
from hjax.studies.store import Batch, Store

# One shape and one set of settings everywhere (the command's config too): one compile.
RUN = dict(n_datasets=4, batch_size=2, chains=2, warmup=60, draws=40, max_rank=19, devices=1,
           escalation={"attempts": 0})
CONFIG = """model: varying_intercept
args: {{groups: 4, per_group: 5}}
datasets: 4
batch_size: 2
chains: 2
warmup: 60
draws: 40
max_rank: 19
devices: 1
escalation: {{attempts: 0}}
compile_cache: false
seed: {seed}
alpha: {alpha}
output: {output}
"""
SECOND = "batch-000002-000004.nc"


@pytest.fixture(scope="module")
def small():
    return hj.catalog.varying_intercept(groups=4, per_group=5)


@pytest.fixture(scope="module")
def studies(small, tmp_path_factory):
    """Clean studies of seeds 1 and 2: {seed: (directory, table)}; copy before changing."""
    model, design = small
    found = {}
    for seed in (1, 2):
        directory = tmp_path_factory.mktemp(f"seed{seed}")
        found[seed] = directory, hj.sbc(model, design, key=seed, directory=directory, **RUN)
    return found


def _copy(studies, seed, to: Path) -> Path:
    return Path(shutil.copytree(studies[seed][0], to))


def _same(table, expected):
    xr.testing.assert_identical(table.drop_attrs(), expected.drop_attrs())


def test_a_batch_copied_from_another_study_is_set_aside_and_refitted(small, studies,
                                                                     tmp_path):
    model, design = small
    directory = _copy(studies, 1, tmp_path / "study")
    shutil.copy(studies[2][0] / SECOND, directory / SECOND)
    with pytest.warns(UserWarning, match=rf"{SECOND} belongs to another study"):
        merged = merge_directory(directory)
    assert merged.attrs["missing_batches"] == "000002-000004"
    assert len(list(directory.glob(f".{SECOND}.other-study-*"))) == 1
    assert "set aside, not merged: 1 batch file(s)" in describe(study_status(directory))[2]
    shutil.copy(studies[2][0] / SECOND, directory / SECOND)  # once more, for the run
    with pytest.warns(UserWarning, match=rf"{SECOND} belongs to another study"):
        again = hj.sbc(model, design, key=1, directory=directory, **RUN)
    _same(again, studies[1][1])
    _same(merge_directory(directory), studies[1][1])
    assert len(list(directory.glob(f".{SECOND}.other-study-*"))) == 2


def test_a_batch_without_a_fingerprint_is_not_merged(studies, tmp_path):
    directory = _copy(studies, 1, tmp_path / "study")
    table = xr.load_dataset(directory / SECOND)
    del table.attrs[store.FINGERPRINT]
    (directory / SECOND).unlink()
    table.to_netcdf(directory / SECOND)
    with pytest.warns(UserWarning, match=rf"{SECOND} carries no study fingerprint"):
        assert merge_directory(directory).attrs["missing_batches"] == "000002-000004"


def test_deleting_study_json_lets_no_other_study_adopt_the_batches(small, studies, tmp_path):
    model, design = small
    directory = _copy(studies, 1, tmp_path / "study")
    (directory / store.MANIFEST).unlink()
    with pytest.warns(UserWarning, match=r"belongs to another study"):
        table = hj.sbc(model, design, key=2, directory=directory, **RUN)
    _same(table, studies[2][1])
    _same(merge_directory(directory), studies[2][1])
    assert Store(directory).manifest["key"] == [0, 2]


def test_deleting_study_json_and_rerunning_the_same_study_keeps_its_batches(small, studies,
                                                                            tmp_path):
    model, design = small
    directory = _copy(studies, 1, tmp_path / "study")
    (directory / store.MANIFEST).unlink()
    stored = {p.name: p.stat().st_mtime_ns for p in directory.glob("batch-*.nc")}
    _same(hj.sbc(model, design, key=1, directory=directory, **RUN), studies[1][1])
    assert {p.name: p.stat().st_mtime_ns for p in directory.glob("batch-*.nc")} == stored


def _bad_batch(directory: Path) -> tuple[Store, Path]:
    store = Store(directory, {"n_datasets": 2, "settings": {"batch_size": 2}})
    path = store.path(Batch(0, 0, 2))
    path.write_bytes(b"not netCDF")
    return store, path


def test_two_workers_setting_one_file_aside_both_go_on(tmp_path):
    store, path = _bad_batch(tmp_path)
    judged = path.stat()
    with pytest.warns(UserWarning, match=r"moved to \.batch-000000-000002.nc.corrupt-"):
        store._set_aside(path, judged, "corrupt", "is unreadable")
    store._set_aside(path, judged, "corrupt", "is unreadable")  # the other worker: no error
    assert len(list(tmp_path.glob(".batch-*"))) == 1


def test_a_batch_published_while_judged_stays(tmp_path):
    store, path = _bad_batch(tmp_path)
    judged = path.stat()
    good = xr.Dataset(coords={"dataset": [0, 1]})
    store.publish(Batch(0, 0, 2), good)  # another worker, between reading and moving aside
    assert store._set_aside(path, judged, "corrupt", "is unreadable") is None
    assert not list(tmp_path.glob(".batch-*"))
    xr.testing.assert_identical(store.load(Batch(0, 0, 2)).drop_attrs(), good)


def _cli(*args):
    """`hjax ARGS` in this process. hjax.cluster (submitit) is imported at the top: imported
    under CliRunner (by `hjax status`), it breaks pytest's output capture."""
    return CliRunner().invoke(main, [str(a) for a in args])


def _config(tmp_path, output, seed=1, alpha=0.01) -> Path:
    path = tmp_path / f"seed{seed}-alpha{alpha}.yaml"
    path.write_text(CONFIG.format(seed=seed, alpha=alpha, output=output))
    return path


@pytest.fixture(scope="module")
def command_study(tmp_path_factory):
    """A complete study run by `hjax sbc` (report written)."""
    root = tmp_path_factory.mktemp("command")
    result = _cli("sbc", _config(root, root / "out"))
    assert result.exit_code == 0, result.output
    return root / "out"


def _snapshot(directory: Path) -> dict:
    """Every file's bytes and every file's and folder's modification time."""
    return {str(p.relative_to(directory)): (p.is_file() and p.read_bytes(), p.stat().st_mtime_ns)
            for p in [directory, *directory.rglob("*")]}


def _one_line_error(result, expected: str):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert result.output.rstrip().endswith(errors[0])


def test_a_refused_run_leaves_the_directory_as_it_was(command_study, tmp_path):
    out = Path(shutil.copytree(command_study, tmp_path / "out"))
    before = _snapshot(out)
    refused = _cli("sbc", _config(tmp_path, out, seed=7, alpha=0.2))
    _one_line_error(refused, "holds a different study; it differs in key: stored [0, 1], "
                             "now [0, 7]")
    assert _snapshot(out) == before
    assert jobs.load_config(out).alpha == 0.01  # what `hjax report` tests with


def test_an_accepted_run_records_its_report_settings(command_study, tmp_path):
    out = Path(shutil.copytree(command_study, tmp_path / "out"))
    assert _cli("sbc", _config(tmp_path, out, alpha=0.2)).exit_code == 0
    assert jobs.load_config(out).alpha == 0.2


def test_a_copied_study_reports_into_itself(command_study, tmp_path):
    original = {name: (command_study / name).stat().st_mtime_ns
                for name in ("sbc.nc", "report.md")}
    complete = xr.load_dataset(command_study / "sbc.nc")
    copy = Path(shutil.copytree(command_study, tmp_path / "copy"))
    (copy / "batches" / SECOND).unlink()
    result = _cli("report", copy)
    assert result.exit_code == 0, result.output
    assert f"results: {copy / 'sbc.nc'}" in result.output
    assert {name: (command_study / name).stat().st_mtime_ns for name in original} == original
    _same(xr.load_dataset(command_study / "sbc.nc"), complete)
    assert xr.load_dataset(copy / "sbc.nc").sizes["dataset"] == 2


def test_a_moved_study_reports_and_shows_its_status(command_study, tmp_path):
    before = Path(shutil.copytree(command_study, tmp_path / "before"))
    (before / "sbc.nc").unlink()
    moved = before.rename(tmp_path / "moved")
    status = _cli("status", moved)
    assert status.exit_code == 0 and "4 of 4 datasets done" in status.output, status.output
    result = _cli("report", moved)
    assert result.exit_code == 0, result.output
    assert (moved / "sbc.nc").is_file() and not before.exists()


BROKEN = [("", "an empty file"),
          ('{"n_datasets": ', "not JSON: Expecting value at line 1 column 16"),
          ("[1, 2]", "a JSON list, not an object")]


@pytest.mark.parametrize(("text", "cause"), BROKEN)
@pytest.mark.parametrize("name", ["batches/study.json", "config.json"])
def test_a_broken_manifest_or_config_is_one_line(command_study, tmp_path, name, text, cause):
    out = Path(shutil.copytree(command_study, tmp_path / "out"))
    (out / name).write_text(text)
    kind = "study manifest" if name.endswith("study.json") else "study config"
    _one_line_error(_cli("report", out), f"{out / name} is not a valid {kind} ({cause}): ")
    _one_line_error(_cli("status", out), f"{out / name} is not a valid {kind} ({cause}): ")


def test_a_config_of_bad_values_is_one_line(command_study, tmp_path):
    out = Path(shutil.copytree(command_study, tmp_path / "out"))
    config = json.loads((out / "config.json").read_text()) | {"chains": 0}
    (out / "config.json").write_text(json.dumps(config))
    _one_line_error(_cli("report", out), f"{out / 'config.json'} is not a valid study config "
                                         "(StudyConfig: chains: Input should be greater than or "
                                         "equal to 1 (got 0)): re-run")


@pytest.mark.parametrize(("text", "cause"), BROKEN)
def test_a_run_on_a_broken_manifest_names_it(small, tmp_path, text, cause):
    model, design = small
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(StudyDirectoryError, match=r"study.json is not a valid study manifest "
                                                  rf"\({cause}\): delete the directory"):
        hj.sbc(model, design, key=1, directory=tmp_path, **RUN)


def test_a_manifest_without_the_batches_is_one_line(studies, tmp_path):
    directory = _copy(studies, 1, tmp_path / "study")
    (directory / "study.json").write_text('{"n_datasets": 4}')
    with pytest.raises(StudyDirectoryError, match=r"no n_datasets and settings.batch_size"):
        merge_directory(directory)


def _full_disk(monkeypatch):
    def write(self, path, *args, **kwargs):
        Path(path).write_bytes(b"CDF\x01 half of a table")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", write)


def test_a_full_disk_while_publishing_is_one_line_and_leaves_no_temp_file(small, tmp_path,
                                                                          monkeypatch):
    model, design = small
    _full_disk(monkeypatch)
    with pytest.raises(StudyDirectoryError, match=rf"Cannot write {tmp_path}/batch-000000-"
                                                  r"000002.nc: no space left on device\."):
        hj.sbc(model, design, key=1, directory=tmp_path, **RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.json"]


def test_a_full_disk_while_writing_the_report_is_one_line(command_study, tmp_path,
                                                          monkeypatch):
    out = Path(shutil.copytree(command_study, tmp_path / "out"))
    before = _snapshot(out)
    _full_disk(monkeypatch)
    _one_line_error(_cli("report", out), f"Cannot write {out / 'sbc.nc'}: no space left on "
                                         "device.")
    after = _snapshot(out)
    assert after.keys() == before.keys()  # no staging folder or half a table left behind
    assert {k: after[k] for k in after if k != "."} == {k: before[k] for k in before if k != "."}


def test_netcdfs_error_on_a_full_disk_names_the_disk(tmp_path, monkeypatch):
    """netCDF reports a full disk as "NetCDF: HDF error", with no errno."""
    def fail():
        raise RuntimeError("NetCDF: HDF error")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=4096))
    with pytest.raises(StudyDirectoryError, match=r"no space left on device"):
        with store.writing(tmp_path / "x.nc"):
            fail()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 30))
    with pytest.raises(RuntimeError, match=r"NetCDF: HDF error"):
        with store.writing(tmp_path / "x.nc"):
            fail()


def test_a_study_of_an_older_hjax_is_refused_not_moved_aside(studies, tmp_path):
    # Its batches carry no fingerprint: read, every one would be moved aside as another's.
    directory = _copy(studies, 1, tmp_path / "study")
    manifest = json.loads((directory / "study.json").read_text()) | {"format": 2}
    (directory / "study.json").write_text(json.dumps(manifest))
    with pytest.raises(StudyDirectoryError, match=r"written by an older hjax \(manifest format "
                                                  r"2; this one reads 4\)"):
        merge_directory(directory)
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) == []
