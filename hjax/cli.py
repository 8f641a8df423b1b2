"""The `hjax` command: studies and fits driven by YAML configs (see configs/)."""

from __future__ import annotations

import json
import math
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


def _setup(config):
    import jax

    if config.x64:
        jax.config.update("jax_enable_x64", True)


def _fail(error: Exception):
    raise click.ClickException(str(error)) from None


def _run(kind: str, config_path: str | None, overrides: dict, config_dict: dict | None = None):
    import jax

    from hjax import config as cfg
    from hjax.studies import report
    from hjax.studies.calibration import uniformity_test
    from hjax.studies.recover import shrinkage_table

    try:
        config = (cfg.StudyConfig(**config_dict) if config_dict is not None
                  else cfg.load(config_path, **overrides))
        _setup(config)
        model, design = cfg.build(config)
    except ValueError as error:
        _fail(error)
    out = Path(config.output)
    n_datasets = (config.datasets if kind == "sbc" else
                  math.prod(len(v) for v in config.grid.values()) * config.replicates)
    click.echo(f"hjax {kind}: {config.model} ({n_datasets} datasets, {config.chains} chains "
               f"x ({config.warmup} warmup + {config.draws} draws)) on "
               f"{jax.local_device_count()} {jax.default_backend()} device(s) -> {out}")
    key = jax.random.key(config.seed)
    common = dict(key=key, chains=config.chains, warmup=config.warmup, draws=config.draws,
                  batch_size=config.batch_size, target_accept=config.target_accept,
                  init=config.init, sampler=config.sampler, lanes=config.lanes,
                  directory=out / "batches", on_batch=_progress(kind))
    start = time.perf_counter()
    try:
        if kind == "sbc":
            from hjax.studies.sbc import sbc

            table = sbc(model, design, n_datasets=config.datasets, max_rank=config.max_rank,
                        **common)
        else:
            from hjax.studies.recover import recover

            table = recover(model, design, given=config.given, grid=config.grid,
                            replicates=config.replicates, shrinkage=config.shrinkage, **common)
    except ValueError as error:
        _fail(error)
    elapsed = time.perf_counter() - start
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
    click.echo(f"{table.sizes['dataset']} fits in {elapsed:.1f} s; results: {out / (kind + '.nc')}"
               f"\nreport: {path}")


@click.group()
def main():
    """hjax: hierarchical Bayesian models in JAX, fitted many at a time."""


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--datasets", type=int, help="override the number of datasets")
@click.option("--output", type=click.Path(file_okay=False), help="override the output directory")
def sbc(config, datasets, output):
    """Simulation-based calibration study from a YAML CONFIG (resumes if interrupted)."""
    _run("sbc", config, {"datasets": datasets, "output": output})


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--replicates", type=int, help="override datasets per grid point")
@click.option("--output", type=click.Path(file_okay=False), help="override the output directory")
def recover(config, replicates, output):
    """Parameter-recovery study from a YAML CONFIG (resumes if interrupted)."""
    _run("recover", config, {"replicates": replicates, "output": output})


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(exists=True, dir_okay=False),
              help="override the JSON data file")
@click.option("--output", type=click.Path(file_okay=False), help="override the output directory")
def fit(config, data, output):
    """Fit the CONFIG's model to a JSON file of data columns (merged over the model's design)."""
    import jax

    from hjax import config as cfg
    from hjax.inference import sample, summary

    try:
        config = cfg.load(config, data=data, output=output)
        if config.data is None:
            raise ValueError("fit needs a data file: set `data:` in the config or pass --data.")
        _setup(config)
        model, design = cfg.build(config)
        raw = design | json.loads(Path(config.data).read_text())
        result = sample(model, raw, key=jax.random.key(config.seed), chains=config.chains,
                        warmup=config.warmup, draws=config.draws, init=config.init,
                        target_accept=config.target_accept, progress=True)
    except ValueError as error:
        _fail(error)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    result.to_netcdf(out / "fit.nc")
    click.echo(summary(result).to_string())
    click.echo(f"posterior and diagnostics: {out / 'fit.nc'}")


@main.command()
@click.option("--output", type=click.Path(file_okay=False), default=QUICKSTART["output"],
              show_default=True)
def quickstart(output):
    """SBC of the varying-intercept model: 200 datasets (about 2 minutes on 2 CPU cores)."""
    _run("sbc", None, {}, config_dict=QUICKSTART | {"output": output})


if __name__ == "__main__":
    main()
