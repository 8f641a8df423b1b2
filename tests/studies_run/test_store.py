"""A study directory shared by many workers: the manifest refuses another study by name,
batches are published atomically, unreadable batches are refitted, shards merge exactly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr

import hjax as hj
from hjax.studies import runner
from hjax.studies.runner import merge_directory
from hjax.studies.status import study_status
from hjax.studies.store import Store

# One device: the workers started as processes below run on one (two share 2 cores).
# No refits: these tests are about the store (tests/studies_run/test_escalation.py: refits).
RUN = dict(n_datasets=6, batch_size=2, chains=2, warmup=60, draws=40, max_rank=19, devices=1,
           escalation={"attempts": 0})
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    return hj.catalog.varying_intercept(groups=4, per_group=5)


@pytest.fixture(scope="module")
def reference(small):
    model, design = small
    return hj.sbc(model, design, key=0, **RUN)


def test_another_seed_is_refused_naming_the_key(small, tmp_path):
    model, design = small
    hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 2})
    with pytest.raises(ValueError, match=r"holds a different study; it differs in key: stored "
                                         r"\[0, 0\], now \[0, 1\]"):
        hj.sbc(model, design, key=1, directory=tmp_path, **{**RUN, "n_datasets": 2})


def test_x64_is_refused_naming_it(small, tmp_path):
    model, design = small
    hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 2})
    with jax.enable_x64(True), pytest.raises(ValueError, match=r"x64: stored false, now true"):
        hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 2})


@pytest.mark.skipif(jax.device_count() < 2, reason="needs two devices")
def test_another_layout_is_refused_naming_it(small, tmp_path):
    """Datasets per device change the compiled arithmetic: another device count is refused."""
    model, design = small
    hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 2})
    with pytest.raises(ValueError, match=r"layout.devices: stored 1, now 2; layout.per_device: "
                                         r"stored 2, now 1"):
        hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 2,
                                                           "devices": 2})


def test_a_setting_newer_than_the_study_is_named_as_absent(tmp_path):
    Store(tmp_path, {"settings": {"chains": 4}, "n_datasets": 2})
    with pytest.raises(ValueError, match=r"settings.loo: stored absent \(a setting the hjax "
                                         r"that wrote it did not have\), now false"):
        Store(tmp_path, {"settings": {"chains": 4, "loo": False}, "n_datasets": 2})


def test_other_held_values_are_refused(small, tmp_path):
    model, design = small
    run = dict(key=0, replicates=2, chains=2, warmup=30, draws=20, directory=tmp_path,
               escalation={"attempts": 0})
    hj.recover(model, design, given={"sigma": 1.0}, **run)
    with pytest.raises(ValueError, match=r"given_digest"):
        hj.recover(model, design, given={"sigma": 2.0}, **run)


def test_truncated_batch_is_reported_and_refitted(small, reference, tmp_path):
    model, design = small
    hj.sbc(model, design, key=0, directory=tmp_path, **RUN)
    batch = tmp_path / "batch-000002-000004.nc"
    batch.write_bytes(batch.read_bytes()[:300])
    with pytest.warns(UserWarning, match=r"batch-000002-000004.nc is unreadable or truncated"):
        again = hj.sbc(model, design, key=0, directory=tmp_path, **RUN)
    xr.testing.assert_equal(again["rank"], reference["rank"])
    xr.testing.assert_equal(again["mean"], reference["mean"])
    assert len(list(tmp_path.glob(".batch-000002-000004.nc.corrupt-*"))) == 1


def test_unwritable_directory_fails_before_anything_compiles(small, tmp_path):
    """An output directory that cannot be written (a read-only one for an unprivileged user;
    sysfs, which refuses even root) is refused before any program is compiled."""
    from hjax.inference import compiled_programs

    model, design = small
    hj.clear_caches()
    if os.geteuid() == 0:
        target, reason = Path("/sys/hjax-study"), "Operation not permitted"
    else:
        target, reason = tmp_path / "readonly", "Permission denied"
        target.mkdir()
        target.chmod(0o555)
    with pytest.raises(ValueError, match=rf"Cannot write study results to {target}: {reason}"):
        hj.sbc(model, design, key=0, directory=target, **{**RUN, "n_datasets": 2})
    assert not compiled_programs()


def test_shards_merge_to_the_single_process_result(small, reference, tmp_path):
    model, design = small
    first = hj.sbc(model, design, key=0, directory=tmp_path, shard="1/3", **RUN)
    assert first.sizes["dataset"] == 2
    assert first.attrs["missing_batches"] == "000000-000002, 000004-000006"
    status = study_status(tmp_path)
    assert status.datasets_done == 2 and [b.name for b in status.missing] == [
        "000000-000002", "000004-000006"]
    for shard in ("0/3", "2/3"):
        hj.sbc(model, design, key=0, directory=tmp_path, shard=shard, **RUN)
    merged = merge_directory(tmp_path)
    assert merged.attrs["missing_batches"] == ""
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())
    # The R-hat limit the study used comes back from its manifest.
    assert merged.attrs["rhat_limit"] == reference.attrs["rhat_limit"] == hj.settings.RHAT_LIMIT
    assert "with R-hat above 1.01" in study_status(tmp_path).problems
    with pytest.raises(ValueError, match=r"shard 3/3: need 0 <= k < n"):
        hj.sbc(model, design, key=0, directory=tmp_path, shard="3/3", **RUN)


def test_two_workers_started_together_end_identical(reference, tmp_path):
    """Two `hjax sbc` processes on one directory at the same moment: both succeed, every
    dataset is stored once, and the result is the single-process one."""
    config = tmp_path / "study.yaml"
    config.write_text(
        "model: varying_intercept\nargs: {groups: 4, per_group: 5}\ndatasets: 6\n"
        "batch_size: 2\nchains: 2\nwarmup: 60\ndraws: 40\nmax_rank: 19\nseed: 0\ndevices: 1\n"
        "escalation: {attempts: 0}\n"
        f"output: {tmp_path / 'out'}\n")
    command = [sys.executable, "-m", "hjax.cli", "sbc", str(config)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "HJAX_CPU_DEVICES": "1"})
               for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    merged = merge_directory(tmp_path / "out" / "batches")
    xr.testing.assert_identical(merged.drop_attrs(), reference.drop_attrs())
    assert sorted(p.name for p in (tmp_path / "out" / "batches").iterdir()) == [
        "batch-000000-000002.nc", "batch-000002-000004.nc", "batch-000004-000006.nc",
        "study.json"]
    manifest = json.loads((tmp_path / "out" / "batches" / "study.json").read_text())
    assert manifest["key"] == [0, 0] and manifest["settings"]["batch_size"] == 2
    assert np.all(merged["dataset"].values == np.arange(6))


def test_other_hjax_source_only_warns_naming_it(tmp_path):
    """Another hjax (same version string, other code) may round differently: a warning."""
    manifest = {"settings": {"chains": 4}, "n_datasets": 2}
    Store(tmp_path, manifest | {"versions": {"hjax": "0.1.0", "hjax source": "aaaa"}})
    with pytest.warns(UserWarning, match=r'other versions \(hjax source: stored "aaaa", now '
                                         r'"bbbb"\)'):
        Store(tmp_path, manifest | {"versions": {"hjax": "0.1.0", "hjax source": "bbbb"}})
    with pytest.warns(UserWarning, match=r"jax: stored absent \(not recorded by the hjax that "
                                         r'wrote it\), now "0.9"'):
        Store(tmp_path, manifest | {"versions": {"hjax": "0.1.0", "hjax source": "aaaa",
                                                 "jax": "0.9"}})


def test_the_source_digest_follows_every_byte_of_the_code(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = runner._source_digest(tmp_path)
    runner._source_digest.cache_clear()
    (tmp_path / "notes.txt").write_text("changed, still not code")
    assert runner._source_digest(tmp_path) == first
    runner._source_digest.cache_clear()
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert runner._source_digest(tmp_path) != first
    runner._source_digest.cache_clear()
    assert runner._versions()["hjax source"] == runner._source_digest(ROOT / "hjax")


def test_failed_batches_are_recorded_then_raised_together(small, tmp_path, monkeypatch):
    def blow_up(self, batch):
        raise FloatingPointError(f"batch {batch.name} blew up")

    model, design = small
    monkeypatch.setattr(runner._BatchStudy, "fit", blow_up)
    with pytest.raises(hj.errors.BatchesFailedError, match=r"^2 batch\(es\) failed: 000000-"
                                                           r"000002 \(FloatingPointError: batch "
                                                           r"000000-000002 blew up\); "):
        hj.sbc(model, design, key=0, directory=tmp_path, **{**RUN, "n_datasets": 4})
    assert sorted(p.name for p in tmp_path.glob("failed-*.json")) == [
        "failed-000000-000002.json", "failed-000002-000004.json"]
