"""A study's directory, safe for any number of workers on a shared (network) filesystem.

`study.json` is the manifest: everything that determines the study's bits (model, design,
settings, key, x64, sampler layout). A worker whose manifest differs is refused, naming the
settings that differ (library versions only warn). Each batch is one netCDF file, written
under a name no other worker uses and then renamed into place (an atomic publish), so two
workers that fit the same batch
waste time but never corrupt or duplicate it. A batch file that cannot be read, or does not
hold the datasets its name promises, is moved aside and reported, and its batch refitted. A
batch that failed leaves `failed-<start>-<stop>.json` with the error, until a worker fits it.
"""

from __future__ import annotations

import json
import os
import socket
import traceback
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

__all__ = ["Batch", "Store", "batches", "check_writable"]

MANIFEST = "study.json"


class Batch(NamedTuple):
    """Datasets `start` up to (not including) `stop`, the `number`-th batch of the study."""

    number: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.start:06d}-{self.stop:06d}"


def batches(n_datasets: int, batch_size: int) -> list[Batch]:
    """The study's batches in order; the last may be short.

    Example:
        >>> [batch.name for batch in batches(5, 2)]
        ['000000-000002', '000002-000004', '000004-000005']
    """
    return [Batch(i, start, min(start + batch_size, n_datasets))
            for i, start in enumerate(range(0, n_datasets, batch_size))]


def _unique_name(path: Path, tag: str) -> Path:
    """A name beside `path` that no other process picks (host, pid and a random part)."""
    return path.with_name(f".{path.name}.{tag}-{socket.gethostname()}-{os.getpid()}-"
                          f"{uuid.uuid4().hex[:8]}")


def _write_atomic(path: Path, write) -> None:
    tmp = _unique_name(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(directory: Path) -> None:
    """Create `directory` if needed and write a file in it, or say in one line why not.

    Example:
        >>> check_writable(Path("/sys/hjax-study"))
        Traceback (most recent call last):
        ...
        ValueError: Cannot write study results to /sys/hjax-study: ...
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = _unique_name(directory / "probe", "probe")
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"Cannot write study results to {directory}: {reason}. Choose an "
                         "output directory this user can create and write (not an existing "
                         "file).") from None


_ABSENT = object()  # a key one of two manifests lacks (e.g. a setting newer than the study)


def _differences(stored, current, where: str = "",
                 unknown: str = "a setting the hjax that wrote it did not have") -> list[str]:
    """Paths at which two JSON values differ, as 'path: stored X, now Y'; a path the stored
    value lacks shows as 'absent (`unknown`)'."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(stored) | set(current), key=str):
            found += _differences(stored.get(key, _ABSENT), current.get(key, _ABSENT),
                                  f"{where}.{key}" if where else str(key), unknown)
        return found
    if stored != current:
        def show(value, absent):
            return absent if value is _ABSENT else json.dumps(value)[:80]

        stored = show(stored, f"absent ({unknown})")
        return [f"{where or 'manifest'}: stored {stored}, now {show(current, 'absent')}"]
    return []


class Store:
    """The batch files of one study in `directory`, shared by any number of workers.

    Opening a store with a manifest checks that the directory is writable (before anything
    compiles) and writes or checks the manifest; without one, it reads the stored study.

    Example:
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp(), {"model": "...", "n_datasets": 200})
        >>> store.load(Batch(0, 0, 16)) is None  # nothing fitted yet
        True
        >>> Store(store.directory, {"model": "other", "n_datasets": 200})
        Traceback (most recent call last):
        ...
        ValueError: ... holds a different study; it differs in model: stored "...", now ...
    """

    def __init__(self, directory: str | os.PathLike, manifest: dict | None = None):
        self.directory = Path(directory)
        if manifest is None:  # reading a study that workers filled (reports, status)
            path = self.directory / MANIFEST
            if not path.is_file():
                raise ValueError(f"{self.directory} holds no hjax study (no {MANIFEST}).")
            self.manifest = json.loads(path.read_text())
            return
        check_writable(self.directory)
        self.manifest = json.loads(json.dumps(manifest))
        self._check_manifest()

    @property
    def batches(self) -> list[Batch]:
        """The study's batches, from its manifest."""
        return batches(self.manifest["n_datasets"], self.manifest["settings"]["batch_size"])


    def _check_manifest(self) -> None:
        path = self.directory / MANIFEST
        if not path.exists():
            tmp = _unique_name(path, "tmp")
            try:
                tmp.write_text(json.dumps(self.manifest, indent=1))
                # A hard link is created only if the name is free: of two workers starting
                # together, one manifest wins and the other worker is checked against it.
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        stored = json.loads(path.read_text())
        versions = _differences(stored.pop("versions", {}), self.manifest.get("versions", {}),
                                unknown="not recorded by the hjax that wrote it")
        if versions:
            warnings.warn(f"{self.directory} was started with other versions ("
                          + "; ".join(versions) + "): batches fitted now may differ in the last "
                          "bits from those stored.", UserWarning, stacklevel=3)
        differ = _differences(stored, {k: v for k, v in self.manifest.items()
                                       if k != "versions"})
        if differ:
            raise ValueError(
                f"{self.directory} holds a different study; it differs in "
                + "; ".join(differ[:6]) + ("; ..." if len(differ) > 6 else "")
                + ". Use a new output directory, or delete this one to start over.")

    def path(self, batch: Batch) -> Path:
        return self.directory / f"batch-{batch.name}.nc"

    def _failure_path(self, batch: Batch) -> Path:
        return self.directory / f"failed-{batch.name}.json"

    def load(self, batch: Batch) -> xr.Dataset | None:
        """The stored table of `batch`, or None when it has not been fitted; a file that is
        unreadable or holds other datasets is moved aside (`*.corrupt-*`) with a warning."""
        path = self.path(batch)
        if not path.exists():
            return None
        try:
            table = xr.load_dataset(path)
            got = table["dataset"].values
            if not np.array_equal(got, np.arange(batch.start, batch.stop)):
                raise ValueError(f"it holds datasets {got.tolist()[:5]}...")
        except Exception as error:  # noqa: BLE001 - any failure to read means refit
            aside = _unique_name(path, "corrupt")
            os.replace(path, aside)
            warnings.warn(f"Batch file {path.name} is unreadable or truncated ({error}); moved "
                          f"to {aside.name} and the batch is fitted again.", UserWarning,
                          stacklevel=2)
            return None
        return table

    def publish(self, batch: Batch, table: xr.Dataset) -> None:
        """Store `batch`'s table atomically and clear any failure record of it."""
        _write_atomic(self.path(batch), table.to_netcdf)
        self._failure_path(batch).unlink(missing_ok=True)

    def record_failure(self, batch: Batch, error: BaseException) -> None:
        """Leave the error of a batch that failed, for `status` and the next worker."""
        record = {"batch": batch.name, "error": f"{type(error).__name__}: {error}",
                  "host": socket.gethostname(), "pid": os.getpid(),
                  "traceback": traceback.format_exception(error)}
        _write_atomic(self._failure_path(batch),
                      lambda tmp: tmp.write_text(json.dumps(record, indent=1)))

    def failures(self) -> dict[str, str]:
        """Batch name -> error, for batches whose last attempt failed."""
        found = {}
        for path in sorted(self.directory.glob("failed-*.json")):
            try:
                record = json.loads(path.read_text())
                found[record["batch"]] = record["error"]
            except (OSError, ValueError, KeyError):
                continue
        return found

    def done(self, batch: Batch) -> bool:
        return self.path(batch).exists()
