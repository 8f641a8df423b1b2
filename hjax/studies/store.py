"""A study's directory, safe for any number of workers on a shared (network) filesystem.

`study.json` is the manifest: everything that determines the study's bits (model, design,
settings, key, x64, sampler layout). A worker whose manifest differs is refused, naming the
settings that differ (library versions only warn). Each batch is one netCDF file, written
under a name no other worker uses and then renamed into place (an atomic publish), so two
workers that fit the same batch waste time but never corrupt or duplicate it.

Every batch carries the study's fingerprint (a digest of the manifest, versions aside): a
batch of another study (copied in, or left behind when `study.json` was deleted and another
study started there) is never merged. Such a batch, or one that cannot be read or does not
hold the datasets its name promises, is moved aside (`.batch-*.nc.other-study-*`,
`.batch-*.nc.corrupt-*`) and reported, and its batch refitted. A batch that failed leaves
`failed-<start>-<stop>.json` with the error, until a worker fits it.

Workers that share the batches out as they go (Slurm array tasks) claim a batch before fitting
it: `claim-<start>-<stop>.<generation>.json` names the holder and when the claim expires; the
holder renews it while it fits, so only a dead or stalled worker's claim expires, and then
another worker may take the batch over (see `Store.claim`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import xarray as xr

from hjax.errors import StudyDirectoryError

__all__ = ["CLAIM_EXPIRY", "Batch", "Claim", "Store", "batches", "check_writable",
           "read_json_object", "write_atomic", "writing"]

MANIFEST = "study.json"
FINGERPRINT = "study_fingerprint"  # the attribute of a batch file naming its study
FORMAT = 4  # of study.json; 4: the sampler and init as {name, options}
FINGERPRINTED = 3  # batches carry the study's fingerprint since format 3
CLAIM_EXPIRY = 180.0  # seconds a batch's claim lasts unless its holder renews it
_MANIFEST_FIX = ("delete the directory to start over, or delete only this file and re-run the "
                 "study's own config (its stored batches are kept; other studies' are set "
                 "aside).")


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


# Below this many free bytes a failed write is taken for a full disk: netCDF reports one as
# "NetCDF: HDF error", without an errno.
_NEARLY_FULL = 1 << 20


@contextlib.contextmanager
def writing(path: Path):
    """Turn a full disk while writing `path` into one line naming it.

    Example:
        >>> with writing(Path("/tmp/sbc.nc")):
        ...     raise OSError(errno.ENOSPC, "No space left on device")
        Traceback (most recent call last):
        ...
        hjax.errors.StudyDirectoryError: Cannot write /tmp/sbc.nc: no space left on device. ...
    """
    try:
        yield
    except (OSError, RuntimeError) as error:
        full = getattr(error, "errno", None) == errno.ENOSPC
        if not full:
            try:
                full = shutil.disk_usage(path.parent).free < _NEARLY_FULL
            except OSError:
                pass
        if not full:
            raise
        raise StudyDirectoryError(
            f"Cannot write {path}: no space left on device. Free some space (or choose an "
            "output directory on another disk) and re-run: what is stored is kept.") from None


def write_atomic(path: Path, write) -> None:
    """Write `path` whole or not at all: `write(tmp)` writes a temporary name beside it, which
    is then renamed into place (and removed if anything fails)."""
    tmp = _unique_name(path, "tmp")
    try:
        with writing(path):
            write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json_object(path: Path, what: str, fix: str) -> dict:
    """The JSON object in `path`, or a `StudyDirectoryError` naming the file, what it should
    be (`what`), the cause and `fix`.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "study.json"
        >>> _ = path.write_text("[1, 2]")
        >>> read_json_object(path, "a study manifest", "delete it.")
        Traceback (most recent call last):
        ...
        hjax.errors.StudyDirectoryError: .../study.json is not a study manifest (a JSON list, ...
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        cause = getattr(error, "strerror", None) or str(error)
    else:
        try:
            found = json.loads(text)
            cause = (None if isinstance(found, dict)
                     else f"a JSON {type(found).__name__}, not an object")
        except json.JSONDecodeError as error:
            cause = ("an empty file" if not text.strip() else
                     f"not JSON: {error.msg} at line {error.lineno} column {error.colno}")
        if cause is None:
            return found
    raise StudyDirectoryError(f"{path} is not {what} ({cause}): {fix}")


def _fingerprint(manifest: dict) -> str:
    """A digest of what determines a study's bits: its manifest without the versions (which
    only warn)."""
    determining = {k: v for k, v in manifest.items() if k != "versions"}
    return hashlib.sha256(json.dumps(determining, sort_keys=True).encode()).hexdigest()


def check_writable(directory: Path) -> None:
    """Create `directory` if needed and write a file in it, or say in one line why not.

    Example:
        >>> check_writable(Path("/sys/hjax-study"))
        Traceback (most recent call last):
        ...
        hjax.errors.StudyDirectoryError: Cannot write study results to /sys/hjax-study: ...
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = _unique_name(directory / "probe", "probe")
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise StudyDirectoryError(
            f"Cannot write study results to {directory}: {reason}. Choose an output directory "
            "this user can create and write (not an existing file).") from None


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

    Opening a store with a manifest checks it against a stored one (refusing another study
    before anything in the directory changes), then checks that the directory is writable
    (before anything compiles) and writes the manifest if none is there; without one, it
    reads the stored study. `fingerprint` names the study in each batch file.

    Example:
        >>> import tempfile
        >>> store = Store(tempfile.mkdtemp(), {"model": "...", "n_datasets": 200})
        >>> store.load(Batch(0, 0, 16)) is None  # nothing fitted yet
        True
        >>> Store(store.directory, {"model": "other", "n_datasets": 200})
        Traceback (most recent call last):
        ...
        hjax.errors.StudyDirectoryError: ... holds a different study; it differs in model: ...
    """

    def __init__(self, directory: str | os.PathLike, manifest: dict | None = None):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if manifest is None:  # reading a study that workers filled (reports, status)
            if not path.is_file():
                raise StudyDirectoryError(f"{self.directory} holds no hjax study (no "
                                          f"{MANIFEST}).")
            self.manifest = self._read_manifest()
            try:  # what a report needs of the manifest
                batches(self.manifest["n_datasets"], self.manifest["settings"]["batch_size"])
            except (KeyError, TypeError, ValueError):
                raise StudyDirectoryError(
                    f"{path} is not a valid study manifest (no n_datasets and "
                    f"settings.batch_size): {_MANIFEST_FIX}") from None
            if self.manifest.get("format", 0) < FINGERPRINTED:
                # Its batches carry no fingerprint: read, each would be moved aside.
                raise StudyDirectoryError(
                    f"{path} was written by an older hjax (manifest format "
                    f"{self.manifest.get('format')}; this one reads {FORMAT}): its batches "
                    "carry no study fingerprint. Report it with the hjax that wrote it, or "
                    "re-run the study in a new directory.")
        else:
            self.manifest = json.loads(json.dumps(manifest))
            created = not path.exists()
            if created:
                check_writable(self.directory)
                self._claim_manifest()
            self._check_manifest()
            if not created:  # only once the study is this one may the probe touch it
                check_writable(self.directory)
        self.fingerprint = _fingerprint(self.manifest)

    @property
    def batches(self) -> list[Batch]:
        """The study's batches, from its manifest."""
        return batches(self.manifest["n_datasets"], self.manifest["settings"]["batch_size"])

    def _read_manifest(self) -> dict:
        return read_json_object(self.directory / MANIFEST, "a valid study manifest",
                                _MANIFEST_FIX)

    def _claim_manifest(self) -> None:
        path = self.directory / MANIFEST
        tmp = _unique_name(path, "tmp")
        try:
            with writing(path):
                tmp.write_text(json.dumps(self.manifest, indent=1))
            # A hard link is created only if the name is free: of two workers starting
            # together, one manifest wins and the other worker is checked against it.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def _check_manifest(self) -> None:
        stored = self._read_manifest()
        versions = _differences(stored.pop("versions", {}), self.manifest.get("versions", {}),
                                unknown="not recorded by the hjax that wrote it")
        if versions:
            warnings.warn(f"{self.directory} was started with other versions ("
                          + "; ".join(versions) + "): batches fitted now may differ in the last "
                          "bits from those stored.", UserWarning, stacklevel=3)
        differ = _differences(stored, {k: v for k, v in self.manifest.items()
                                       if k != "versions"})
        if differ:
            raise StudyDirectoryError(
                f"{self.directory} holds a different study; it differs in "
                + "; ".join(differ[:6]) + ("; ..." if len(differ) > 6 else "")
                + ". Use a new output directory, or delete this one to start over.")

    def path(self, batch: Batch) -> Path:
        return self.directory / f"batch-{batch.name}.nc"

    def _failure_path(self, batch: Batch) -> Path:
        return self.directory / f"failed-{batch.name}.json"

    def load(self, batch: Batch) -> xr.Dataset | None:
        """The stored table of `batch`, or None when it has to be fitted: not there yet, or
        moved aside with a warning: a file of another study (`*.other-study-*`: another
        fingerprint, or none), or one that is unreadable or holds other datasets
        (`*.corrupt-*`)."""
        path = self.path(batch)
        try:
            judged = path.stat()
        except FileNotFoundError:  # not fitted yet
            return None
        try:
            table = xr.load_dataset(path)
        except FileNotFoundError:  # set aside by another worker meanwhile
            return None
        except Exception as error:  # noqa: BLE001 - any failure to read means refit
            return self._set_aside(path, judged, "corrupt",
                                   f"is unreadable or truncated ({error})")
        theirs = table.attrs.get(FINGERPRINT)
        if theirs is None:
            return self._set_aside(path, judged, "other-study",
                                   "carries no study fingerprint (written by an older hjax, "
                                   "or not by hjax), so it may belong to another study")
        if theirs != self.fingerprint:
            return self._set_aside(
                path, judged, "other-study",
                f"belongs to another study (fingerprint {str(theirs)[:12]}, this study's "
                f"{self.fingerprint[:12]}): copied in from one, or left by one whose "
                f"{MANIFEST} was deleted")
        got = table["dataset"].values if "dataset" in table.coords else np.arange(0)
        if not np.array_equal(got, np.arange(batch.start, batch.stop)):
            return self._set_aside(path, judged, "corrupt",
                                   f"is unreadable or truncated (it holds datasets "
                                   f"{got.tolist()[:5]}...)")
        return table

    @staticmethod
    def _set_aside(path: Path, judged: os.stat_result, tag: str, reason: str) -> None:
        """Move the batch file judged bad out of the study (to `.<name>.<tag>-...`) with a
        warning; a file another worker published there meanwhile is left in place."""
        aside = _unique_name(path, tag)
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another worker set it aside first, and warned
            return None
        if not os.path.samestat(judged, aside.stat()):  # published since we read it
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
            aside.unlink()
            return None
        warnings.warn(f"Batch file {path.name} {reason}; moved to {aside.name} and the batch "
                      "is fitted again.", UserWarning, stacklevel=3)
        return None

    def publish(self, batch: Batch, table: xr.Dataset) -> None:
        """Store `batch`'s table, marked with the study's fingerprint, atomically; clear any
        failure record of it."""
        write_atomic(self.path(batch), table.assign_attrs({FINGERPRINT: self.fingerprint})
                     .to_netcdf)
        self._failure_path(batch).unlink(missing_ok=True)

    def record_failure(self, batch: Batch, error: BaseException) -> None:
        """Leave the error of a batch that failed, for `status` and the next worker."""
        record = {"batch": batch.name, "error": f"{type(error).__name__}: {error}",
                  "host": socket.gethostname(), "pid": os.getpid(),
                  "traceback": traceback.format_exception(error)}
        write_atomic(self._failure_path(batch),
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


    def claim(self, batch: Batch, expiry: float = CLAIM_EXPIRY) -> Claim | None:
        """Hold `batch` for this worker for `expiry` seconds (renewed while the claim is used
        as a context manager), or None if a live claim of another worker holds it.

        Why exactly one of any number of racing workers wins: a claim is the file of the
        highest generation, and a claim file is only ever created by `os.link`, which fails if
        the name exists (atomic on local and network filesystems, where O_EXCL is not on older
        NFS), so each generation has one creator. A worker creates generation g + 1 only after
        reading generation g expired (or released); of two that read it so, one link wins;
        one that listed the claims before g + 1 appeared tries a name that now exists and
        fails. Only the holder rewrites its file afterwards (renewal, release), by an atomic
        replace, so a reader sees a whole claim. A holder stalled past its expiry finds
        generation g + 1 at its next renewal and stops renewing; what it may still publish
        has the same bits (a batch is a pure function of its index) and is published
        atomically. Claims are removed once the batch is stored; a new holder re-checks that
        the batch is not stored before fitting it.

        Example:
            >>> import tempfile
            >>> store = Store(tempfile.mkdtemp(), {"model": "...", "n_datasets": 8})
            >>> claim = store.claim(Batch(0, 0, 4), expiry=60)
            >>> store.claim(Batch(0, 0, 4)) is None  # held by a live claim
            True
            >>> claim.release()
            >>> store.claim(Batch(0, 0, 4)) is not None  # released: free to take
            True
        """
        found = self._claims(batch)
        generation = 0
        if found:
            latest = max(found)
            if not _expired(found[latest]):
                return None
            generation = latest + 1
        claim = Claim(self, batch, generation, expiry)
        return claim if claim.create() else None

    def _claims(self, batch: Batch) -> dict[int, Path]:
        """Generation -> claim file of `batch`."""
        found = {}
        for path in self.directory.glob(f"claim-{batch.name}.*.json"):
            with contextlib.suppress(ValueError):
                found[int(path.name.split(".")[1])] = path
        return found

    def claimed(self, batch: Batch) -> bool:
        """Whether a live (unexpired, unreleased) claim holds `batch`."""
        found = self._claims(batch)
        return bool(found) and not _expired(found[max(found)])

    def clear_claims(self, batch: Batch) -> None:
        """Remove the claims of a stored batch (no worker needs them any more)."""
        for path in self._claims(batch).values():
            path.unlink(missing_ok=True)


def _expired(path: Path) -> bool:
    """Whether the claim in `path` has expired or was released. A claim is created and
    rewritten whole (link, replace), so one that cannot be read was damaged or removed
    (its batch stored) meanwhile: it holds nothing."""
    try:
        return json.loads(path.read_text())["expires"] < time.time()
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _owner() -> dict:
    """Who holds a claim: the Slurm job (array task), host and pid."""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    job = (f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}" if task is not None
           else os.environ.get("SLURM_JOB_ID"))
    return {"slurm_job": job, "host": socket.gethostname(), "pid": os.getpid()}


class Claim:
    """This worker's hold on one batch (see `Store.claim`). Used as a context manager, a
    daemon thread renews it every quarter of `expiry` while the batch is fitted; leaving it
    releases the claim (or removes the batch's claims once the batch is stored)."""

    def __init__(self, store: Store, batch: Batch, generation: int, expiry: float):
        self.store, self.batch, self.expiry = store, batch, expiry
        self.path = store.directory / f"claim-{batch.name}.{generation}.json"
        self._next = store.directory / f"claim-{batch.name}.{generation + 1}.json"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _record(self, expires: float) -> Path:
        tmp = _unique_name(self.path, "tmp")
        tmp.write_text(json.dumps({"batch": self.batch.name, **_owner(), "expires": expires}))
        return tmp

    def create(self) -> bool:
        """Create the claim file; False if another worker created this generation first."""
        tmp = self._record(time.time() + self.expiry)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    @property
    def lost(self) -> bool:
        """Whether another worker took the batch over (this claim expired unrenewed)."""
        return self._next.exists()

    def renew(self) -> bool:
        """Push the expiry `expiry` seconds on; False (and nothing written) if lost."""
        if self.lost:
            return False
        os.replace(self._record(time.time() + self.expiry), self.path)
        return True

    def release(self) -> None:
        """Give the batch up: its claims are removed if it is stored, else this one is marked
        released (the next worker takes the next generation: generations only grow)."""
        if self.store.done(self.batch):
            self.store.clear_claims(self.batch)
        elif not self.lost:
            os.replace(self._record(0.0), self.path)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.expiry / 4):
            try:
                if not self.renew():
                    warnings.warn(f"The claim of batch {self.batch.name} expired before it was "
                                  "renewed (this worker stalled) and another worker took it "
                                  "over.", UserWarning, stacklevel=1)
                    return
            except OSError:  # a passing filesystem error: the next period tries again
                continue

    def __enter__(self) -> Claim:
        self._renewer = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                         name=f"hjax-claim-{self.batch.name}")
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._renewer.join()
        self.release()
