"""What a study config runs: the study (or one shard of it), and its outputs.

`run` fits a config's study, or one worker's shard of it, into `<output>/batches`; `merge`
rebuilds the study table from that directory however many workers filled it; `write_outputs`
writes the table, the report and its figures. The `hjax` command and the Slurm tasks of
`hjax submit` (`hjax.cluster`) are thin layers over these three.

A run that the study's store refuses (another study is in `output`) changes nothing there:
`config.json` and the compilation cache are written only once the store has accepted the run.
Runs the store accepts agree on everything that determines results, so the last one's
`config.json` differs from the others' at most in what only the report reads (`alpha`, the
title's wording). A study reports into the directory it is in: its stored `output` is not read
back, so a copied or moved study directory reports into itself.

Usage (what `hjax sbc CONFIG --shard 0/2` and `hjax report OUTPUT` do)::

    config = hjax.config.load("configs/varying_intercept.yaml")
    table = run(config, shard="0/2")           # worker 0 of 2
    config, table = merge(config.output)       # whatever the workers have stored
    write_outputs(config, table)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jax
import xarray as xr

from hjax.config import StudyConfig, build
from hjax.errors import ConfigError, StudyDirectoryError
from hjax.studies import report
from hjax.studies.calibration import uniformity_test
from hjax.studies.recover import recover, shrinkage_table
from hjax.studies.runner import merge_directory
from hjax.studies.sbc import sbc
from hjax.studies.store import read_json_object, write_atomic, writing

__all__ = ["CONFIG_FILE", "load_config", "merge", "run", "save_config", "use_compile_cache",
           "write_outputs"]

CONFIG_FILE = "config.json"  # the resolved config, beside the study's batches


def use_compile_cache(config: StudyConfig) -> None:
    """Use the config's persistent compilation cache, if any (so that only the first of many
    workers pays for compiling)."""
    cache = config.cache_directory()
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # The study's small programs too (simulation, prior draws): each costs a worker ~1 s.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def save_config(config: StudyConfig) -> None:
    """Record the resolved config beside the study (for `hjax status` and `hjax report`)."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / CONFIG_FILE,
                 lambda tmp: tmp.write_text(config.model_dump_json(indent=1)))


def load_config(output: str | os.PathLike) -> StudyConfig:
    """The config a study in `output` was run with, its `output` being `output` (wherever the
    directory was when it ran: a copy reports into itself, never into the original).

    Example:
        >>> import shutil, tempfile
        >>> config = StudyConfig(model="eight_schools", output=tempfile.mkdtemp())
        >>> save_config(config)
        >>> copy = shutil.copytree(config.output, config.output + "-copy")
        >>> load_config(copy).output == copy
        True
    """
    path = Path(output) / CONFIG_FILE
    if not path.is_file():
        raise StudyDirectoryError(
            f"{output} holds no hjax study (no {CONFIG_FILE}): give the `output` directory of "
            "a study run with `hjax sbc|recover|submit`.")
    fix = ("re-run the study's config (`hjax sbc|recover CONFIG`) to write it again, or "
           "delete the directory to start over.")
    raw = read_json_object(path, "a valid study config", fix)
    try:
        return StudyConfig(**raw | {"output": str(output)})
    except ConfigError as error:
        problem = str(error).rstrip(".")
        raise StudyDirectoryError(f"{path} is not a valid study config ({problem}): "
                                  + fix) from None


def run(config: StudyConfig, *, shard: str | tuple[int, int] | None = None,
        on_batch=None) -> xr.Dataset:
    """Fit the config's study (or shard k/n of its batches; a `hjax.studies.runner.Shard`
    with a `claim_expiry` claims batches and takes the other shards' unclaimed ones) into
    `<output>/batches`; returns the table of every batch stored so far.

    Example:
        >>> import tempfile
        >>> config = StudyConfig(model="eight_schools", datasets=8, batch_size=4, chains=2,
        ...                      warmup=100, draws=50, output=tempfile.mkdtemp())
        >>> run(config, shard="1/2").attrs["missing_batches"]  # worker 0's batch
        '000000-000004'
        >>> merge(config.output)[1].sizes["dataset"]
        4
        >>> table = run(config)
        >>> write_outputs(config, table)[0].name
        'report.md'
    """
    if config.x64:  # before the study's manifest, which records it
        jax.config.update("jax_enable_x64", True)
    model, design = build(config)
    accepted = False

    def started(done: int, total: int) -> None:
        nonlocal accepted
        if not accepted:  # the store accepted the run, before any fit
            accepted = True
            use_compile_cache(config)
            save_config(config)
        if on_batch is not None:
            on_batch(done, total)

    common = dict(key=jax.random.key(config.seed), settings=config.settings(),
                  directory=Path(config.output) / "batches", shard=shard, on_batch=started)
    if config.kind == "sbc":
        return sbc(model, design, n_datasets=config.datasets, **common)
    return recover(model, design, given=config.given, grid=config.grid,
                   replicates=config.replicates, shrinkage=config.shrinkage, **common)


def merge(output: str | os.PathLike) -> tuple[StudyConfig, xr.Dataset]:
    """The config and the table of the study in `output`, from whatever batches are stored
    (`attrs["missing_batches"]` names the others)."""
    config = load_config(output)
    return config, merge_directory(Path(output) / "batches")


def write_outputs(config: StudyConfig, table: xr.Dataset) -> tuple[Path, list[str] | None]:
    """Write `<kind>.nc`, report.md and its figures into the config's output; returns the
    report's path and, for SBC, the rejected variables."""
    out = Path(config.output)
    kind = config.kind
    is_sbc = kind == "sbc"
    test = uniformity_test(table, alpha=config.alpha) if is_sbc else None
    pooled = None if config.shrinkage is None else shrinkage_table(table)
    # Written apart, then renamed into place file by file: workers that finish together
    # (each merging the whole study) never write into one file at once.
    staging = Path(tempfile.mkdtemp(prefix=".outputs-", dir=out))
    try:
        with writing(out / f"{kind}.nc"):
            table.to_netcdf(staging / f"{kind}.nc")
        with writing(out / "report.md"):
            report.write_report(staging, table, test=test, calibration=is_sbc,
                                shrinkage=pooled, title=f"hjax {kind}: {config.title}")
        for path in staging.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rejected = [str(v) for v in test.variable.values[test.rejected.values]] if is_sbc else None
    return out / "report.md", rejected
