"""The `hjax` command: studies and fits driven by YAML configs (see configs/).

Every failure a user can cause (a bad config, a missing file, an output path that cannot be
written: a `hjax.errors.UserInputError` or an `OSError`) ends in one line naming the file or
setting and the fix, and exit code 1; anything else is a bug in hjax and prints its traceback
and exit code 2.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import traceback
from pathlib import Path

import click

from hjax.errors import BatchesFailedError, ConfigError, DataError, UserInputError

QUICKSTART = {
    "model": "varying_intercept",
    "args": {"groups": 20, "per_group": 10},
    "datasets": 200,
    "chains": 4,
    "warmup": 300,
    "draws": 300,
    "batch_size": 50,
    "max_rank": 99,
    "output": "hjax-results/quickstart",
}


def _friendly(command):
    """One line and exit code 1 for what a user can fix (a `UserInputError`, recorded batch
    failures, a file system that refuses); anything else is a bug in hjax: its traceback, and
    a sentence saying so, exit code 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (UserInputError, BatchesFailedError) as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(f"{where}{error.strerror or error}.") from None
        except Exception:  # noqa: BLE001 - the boundary: a bug keeps its traceback
            traceback.print_exc()
            click.echo(f"This is a bug in hjax {_version()}, not a problem with your input: "
                       "please report it with the traceback above.", err=True)
            sys.exit(2)

    return wrapper


def _version() -> str:
    from importlib.metadata import version

    return version("hjax")


def _progress(label: str):
    """A progress bar over datasets, advanced per batch: datasets/s and ETA."""
    from tqdm.auto import tqdm

    bar = None

    def on_batch(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="dataset", file=sys.stderr)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return on_batch


def _load(config_path: str | None, overrides: dict, config_dict: dict | None = None):
    """The validated config (its model is built by whoever runs it)."""
    from hjax import config as cfg

    if config_dict is not None:
        return cfg.StudyConfig(**config_dict)
    return cfg.load(config_path, **overrides)


def _write(config, table) -> None:
    """The table, report and figures; the calibration verdict."""
    from hjax import jobs
    from hjax.studies.report import escalation_summary

    path, rejected = jobs.write_outputs(config, table)
    summary = escalation_summary(table)
    if summary is not None:
        click.echo(f"refitted {summary['refitted']} fits with stronger settings; "
                   f"{summary['still failing']} still fail their diagnostics")
    if rejected is not None:
        click.echo(f"calibration (alpha {config.alpha}, Holm): "
                   f"{'rejected ' + ', '.join(rejected) if rejected else 'no variable rejected'}")
    click.echo(f"results: {Path(config.output) / (config.kind + '.nc')}\nreport: {path}")


def _run(kind: str, config_path: str | None, overrides: dict, config_dict: dict | None = None,
         shard: str | None = None):
    import jax

    from hjax import jobs

    config = _load(config_path, overrides | {"study": kind}, config_dict)
    where = "" if shard is None else f", shard {shard}"
    thinned = f", thinned by {config.thin}" if config.thin > 1 else ""
    click.echo(f"hjax {kind}: {config.title} ({config.n_datasets()} datasets{where}, "
               f"{config.chains} chains x ({config.warmup} warmup + {config.draws} "
               f"draws{thinned})) on "
               f"{jax.local_device_count()} {jax.default_backend()} device(s) -> "
               f"{config.output}")
    start = time.perf_counter()
    table = jobs.run(config, shard=shard, on_batch=_progress(kind))
    click.echo(f"{table.sizes['dataset']} fits stored in {time.perf_counter() - start:.1f} s")
    if shard is not None and table.attrs.get("missing_batches"):
        click.echo(f"other shards' batches are not all done; `hjax report {config.output}` "
                   "merges what is stored")
        return
    _write(config, table)


@click.group()
def main():
    """hjax: hierarchical Bayesian models in JAX, fitted many at a time."""


SHARD = click.option("--shard", metavar="K/N",
                     help="fit only worker K's batches of N (0-based); any number of workers "
                          "may share the output directory")


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--datasets", type=int, help="override the number of datasets")
@click.option("--output", type=click.Path(), help="override the output directory")
@SHARD
@_friendly
def sbc(config, datasets, output, shard):
    """Simulation-based calibration study from a YAML CONFIG (resumes if interrupted)."""
    _run("sbc", config, {"datasets": datasets, "output": output}, shard=shard)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--replicates", type=int, help="override datasets per grid point")
@click.option("--output", type=click.Path(), help="override the output directory")
@SHARD
@_friendly
def recover(config, replicates, output, shard):
    """Parameter-recovery study from a YAML CONFIG (resumes if interrupted)."""
    _run("recover", config, {"replicates": replicates, "output": output}, shard=shard)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--study", type=click.Choice(["sbc", "recover"]),
              help="the kind of study (default: the config's `study`, else recover when it "
                   "holds values, else sbc)")
@click.option("--tasks", type=int, help="override cluster.tasks (array size)")
@click.option("--partition", help="override cluster.partition")
@click.option("--time", "minutes", type=int, help="override cluster.time (minutes per task)")
@click.option("--output", type=click.Path(), help="override the output directory")
@click.option("--dry-run", is_flag=True, help="print the sbatch scripts; submit nothing")
@_friendly
def submit(config, study, tasks, partition, minutes, output, dry_run):
    """Run a CONFIG's study as a Slurm job array (one task per shard) plus a merge job; a
    re-submit starts at most one task per missing batch."""
    from hjax import cluster

    loaded = _load(config, {"study": study, "output": output})
    changes = {k: v for k, v in {"tasks": tasks, "partition": partition,
                                 "time": minutes}.items() if v is not None}
    if changes:
        settings = loaded.cluster.model_validate(loaded.cluster.model_dump() | changes)
        loaded = loaded.model_copy(update={"cluster": settings})
    if dry_run:
        for name, script in cluster.sbatch_scripts(loaded).items():
            click.echo(f"# --- {name} job: sbatch script ---\n{script}")
        return
    record = cluster.submit(loaded)
    if record is None:
        click.echo(f"nothing to submit: every batch of the study in {loaded.output} is "
                   f"stored; `hjax report {loaded.output}` merges them")
        return
    click.echo(f"submitted {loaded.kind} of {loaded.title}: array job {record['array']} "
               f"({record['tasks']} tasks), merge job {record['merge']} after it\n"
               f"follow it with: hjax status {loaded.output}")


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@_friendly
def status(output):
    """Batches done, missing and failed, problems, throughput (an ETA while tasks run), and
    the study's Slurm jobs: each task's state, requeues, why it failed, its log; the merge
    job's verdict."""
    from hjax import cluster, jobs
    from hjax.studies.status import describe, study_status

    config = jobs.load_config(output)
    click.echo(f"{config.kind} of {config.title} in {output}")
    slurm, running = cluster.slurm_states(output)
    batches = Path(output) / "batches"
    started = (batches / "study.json").exists()
    lines = (describe(study_status(batches), running=running) if started
             else ["no worker has started yet"])
    for line in lines + slurm:
        click.echo(line)


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@_friendly
def cancel(output):
    """Cancel the Slurm jobs (arrays and merge jobs) of the study in OUTPUT."""
    from hjax import cluster

    said = cluster.cancel(output)
    click.echo("\n".join(said) if said else f"nothing to cancel: no job of the study in "
                                               f"{output} is queued or running")


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@_friendly
def report(output):
    """Merge whatever batches of the study in OUTPUT are done; test and write the report."""
    from hjax import jobs

    config, table = jobs.merge(output)
    missing = table.attrs.get("missing_batches")
    if missing:
        click.echo(f"incomplete: {table.sizes['dataset']} of {config.n_datasets()} datasets "
                   f"(missing batches: {missing})")
    _write(config, table)


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Output {out} is a file; give a directory (`output:` in the config "
                          "or --output).")
    out.mkdir(parents=True, exist_ok=True)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), help="override the JSON data file")
@click.option("--output", type=click.Path(), help="override the output directory")
@_friendly
def fit(config, data, output):
    """Fit the CONFIG's model to a JSON file of data columns (merged over the model's design)."""
    import jax

    from hjax.config import build
    from hjax.inference import sample, summary

    config = _load(config, {"data": data, "output": output})
    if config.x64:
        jax.config.update("jax_enable_x64", True)
    model, design = build(config)
    if config.data is None:
        raise DataError("fit needs a data file: set `data:` in the config or pass --data.")
    if not Path(config.data).is_file():
        raise DataError(f"Data file {config.data} not found (`data:` in the config, or --data).")
    try:
        columns = json.loads(Path(config.data).read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{config.data}: not valid JSON at line {error.lineno}: "
                        f"{error.msg}.") from None
    out = Path(config.output)
    _check_output(out)
    result = sample(model, design | columns, key=jax.random.key(config.seed),
                    settings=config.fit_settings(), progress=True)
    result.to_netcdf(out / "fit.nc")
    click.echo(summary(result).to_string())
    click.echo(f"posterior and diagnostics: {out / 'fit.nc'}")


@main.command()
@click.option("--output", type=click.Path(), default=QUICKSTART["output"], show_default=True)
@_friendly
def quickstart(output):
    """SBC of the varying-intercept model on 200 datasets: the embedded default study."""
    _run("sbc", None, {}, config_dict=QUICKSTART | {"output": output})


if __name__ == "__main__":
    main()
