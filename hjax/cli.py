"""The `hjax` command: studies and fits driven by YAML configs (see configs/).

Every failure a user can cause (a bad config, a missing file, an output path that cannot be
written) ends in one line naming the file or setting and the fix, and a non-zero exit; a
traceback means a bug in hjax.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click

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
    """Turn the errors a user causes into one message and exit code 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ValueError, RuntimeError) as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(f"{where}{error.strerror or error}.") from None

    return wrapper


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
    """The validated config, with JAX set up as it asks (x64), and its model and design."""
    import jax

    from hjax import config as cfg

    config = (cfg.StudyConfig(**config_dict) if config_dict is not None
              else cfg.load(config_path, **overrides))
    if config.x64:
        jax.config.update("jax_enable_x64", True)
    model, design = cfg.build(config)
    return config, model, design


def _study(kind: str, config, model, design, on_batch=None):
    """Run an "sbc" or "recover" study of `config`; returns its table."""
    import jax

    common = dict(key=jax.random.key(config.seed), settings=config.settings(),
                  directory=Path(config.output) / "batches", on_batch=on_batch)
    if kind == "sbc":
        from hjax.studies.sbc import sbc

        return sbc(model, design, n_datasets=config.datasets, **common)
    from hjax.studies.recover import recover

    return recover(model, design, given=config.given, grid=config.grid,
                   replicates=config.replicates, shrinkage=config.shrinkage, **common)


def _report(kind: str, config, table) -> Path:
    """Write the study's table, report and figures; print the calibration verdict."""
    from hjax.studies import report
    from hjax.studies.calibration import uniformity_test
    from hjax.studies.recover import shrinkage_table

    out = Path(config.output)
    table.to_netcdf(out / f"{kind}.nc")
    is_sbc = kind == "sbc"
    test = uniformity_test(table, alpha=config.alpha) if is_sbc else None
    pooled = None if config.shrinkage is None else shrinkage_table(table)
    path = report.write_report(out, table, test=test, calibration=is_sbc, shrinkage=pooled,
                               title=f"hjax {kind}: {config.model}")
    if is_sbc:
        rejected = [str(v) for v in test.variable.values[test.rejected.values]]
        click.echo(f"calibration (alpha {config.alpha}, Holm): "
                   f"{'rejected ' + ', '.join(rejected) if rejected else 'no variable rejected'}")
    return path


def _run(kind: str, config_path: str | None, overrides: dict, config_dict: dict | None = None):
    import jax

    config, model, design = _load(config_path, overrides, config_dict)
    out = Path(config.output)
    click.echo(f"hjax {kind}: {config.model} ({config.n_datasets(kind)} datasets, "
               f"{config.chains} chains x ({config.warmup} warmup + {config.draws} draws)) on "
               f"{jax.local_device_count()} {jax.default_backend()} device(s) -> {out}")
    start = time.perf_counter()
    table = _study(kind, config, model, design, on_batch=_progress(kind))
    elapsed = time.perf_counter() - start
    path = _report(kind, config, table)
    click.echo(f"{table.sizes['dataset']} fits in {elapsed:.1f} s; results: {out / (kind + '.nc')}"
               f"\nreport: {path}")


@click.group()
def main():
    """hjax: hierarchical Bayesian models in JAX, fitted many at a time."""


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--datasets", type=int, help="override the number of datasets")
@click.option("--output", type=click.Path(), help="override the output directory")
@_friendly
def sbc(config, datasets, output):
    """Simulation-based calibration study from a YAML CONFIG (resumes if interrupted)."""
    _run("sbc", config, {"datasets": datasets, "output": output})


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--replicates", type=int, help="override datasets per grid point")
@click.option("--output", type=click.Path(), help="override the output directory")
@_friendly
def recover(config, replicates, output):
    """Parameter-recovery study from a YAML CONFIG (resumes if interrupted)."""
    _run("recover", config, {"replicates": replicates, "output": output})


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output {out} is a file; give a directory (`output:` in the config "
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

    from hjax.inference import sample, summary

    config, model, design = _load(config, {"data": data, "output": output})
    if config.data is None:
        raise ValueError("fit needs a data file: set `data:` in the config or pass --data.")
    if not Path(config.data).is_file():
        raise ValueError(f"Data file {config.data} not found (`data:` in the config, or --data).")
    try:
        columns = json.loads(Path(config.data).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config.data}: not valid JSON at line {error.lineno}: "
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
