"""The batch runner behind SBC and recovery studies: simulate, fit, score, store, resume.

A study of N datasets runs in batches of `batch_size`. Dataset i is simulated with
`fold_in(simulation_key, i)` and fitted with `fold_in(fit_key, i)`, so its result does not
depend on the batch it ran in (bit for bit with the same layout; see `hj.sample` for others).
With a `directory`, each finished batch is published to the study's `Store` (atomically, so a
killed run never leaves a half-written batch) and a re-run skips the batches already there:
an interrupted run ends with exactly the results of an uninterrupted one. A `shard` (k, n)
fits only batches k, k + n, k + 2n, ...: n workers, on one machine or many, share a study.
A `Shard` with a `claim_expiry` (Slurm array tasks) claims its batches from the store instead
and then takes any other unclaimed one, so the tasks that remain finish a study whatever
happens to the others.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from hjax.errors import BatchesFailedError, ConfigError, ModelError, StudyDirectoryError
from hjax.inference.run.sample import sample
from hjax.inference.workflow.diagnostics import DIAGNOSTICS
from hjax.inference.workflow.predictive import (
    loo_per_dataset,
    posterior_predictive,
    prior_sensitivity,
)
from hjax.settings import RHAT_LIMIT, StudySettings
from hjax.studies.ranks import sbc_ranks
from hjax.studies.store import FORMAT, Batch, Store, batches

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["Shard", "combine", "merge_directory", "parse_shard", "prior_variance",
           "rhat_limit", "run_study", "truths_dataset"]

PRIOR_DRAWS = 4000  # prior draws behind each parameter's prior variance (contraction)

Extra = Callable[[xr.DataTree, dict, np.ndarray], xr.Dataset]


def truths_dataset(model: Model, truths: Mapping[str, np.ndarray],
                   indices: np.ndarray) -> xr.Dataset:
    """Reported parameter values as a Dataset with dims (dataset, *param dims).

    Example:
        >>> truths = {"mu": np.zeros(2), "theta_sd": np.ones(2), "theta": np.zeros((2, 8))}
        >>> truths_dataset(model, truths, np.arange(2))["theta"].dims
        ('dataset', 'school')
    """
    coords = model.coords
    variables = {}
    for name, dims in model.param_dims.items():
        variables[name] = xr.DataArray(
            np.asarray(truths[name]), dims=("dataset", *dims),
            coords={d: list(coords[d]) for d in dims},
        )
    return xr.Dataset(variables, coords={"dataset": indices})


def prior_variance(model: Model, design: dict, key, n: int = PRIOR_DRAWS) -> xr.Dataset:
    """Each reported value's variance over `n` prior draws given the (prepared) design: the
    denominator of posterior contraction, the same for every dataset and batch.

    Example:
        >>> variance = prior_variance(model, model.prepare(design, observed=False),
        ...                           jax.random.key(0))
        >>> round(float(variance["mu"]))  # mu ~ Normal(0, 5)
        25
    """
    def draw(key):
        return model.constrain(model.unconstrain(model.sample_prior(key, design)), design)

    draws = jax.jit(jax.vmap(draw))(jax.random.split(key, n))
    table = truths_dataset(model, {k: np.asarray(v) for k, v in draws.items()}, np.arange(n))
    return table.var("dataset", ddof=1)


class Shard(NamedTuple):
    """Worker `index` of `count`. Without `claim_expiry` it fits batches index, index +
    count, ... and nothing else; with one (seconds), it claims those batches from the store
    first and then any other batch neither stored nor claimed (or whose claim expired), and
    waits for claimed batches to be stored or their claims to expire: a dead, cancelled or
    slow worker's batches go to the others."""

    index: int
    count: int
    claim_expiry: float | None = None


def parse_shard(shard: tuple[int, int] | str | None) -> Shard:
    """A `Shard` from `(k, n)`, "k/n" (worker k of n, 0-based) or a `Shard`; 0/1 for None.

    Example:
        >>> parse_shard("2/4")
        Shard(index=2, count=4, claim_expiry=None)
    """
    if shard is None:
        return Shard(0, 1)
    if isinstance(shard, Shard):
        return shard
    try:
        k, n = (int(x) for x in (shard.split("/") if isinstance(shard, str) else shard))
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be 'k/n' or (k, n), worker k of n counted from 0; got "
                          f"{shard!r}.") from None
    if not 0 <= k < n:
        raise ConfigError(f"shard {k}/{n}: need 0 <= k < n (workers are counted from 0).")
    return Shard(k, n)


def _manifest(model, fit_model, design, n_datasets, settings, key, given, labels) -> dict:
    """Everything that determines the study's bits, for the store to compare (and to name
    the study in each batch file)."""
    def digest(arrays: Mapping) -> str:
        return hashlib.sha256(b"".join(
            k.encode() + np.ascontiguousarray(v).tobytes()
            for k, v in sorted(arrays.items()))).hexdigest()

    # What the sampler chooses from the fitted model (`for_model`) is None here.
    layout = settings.sampler.planned_layout(min(settings.batch_size, n_datasets),
                                             chains=settings.chains,
                                             batch_size=settings.batch_size,
                                             devices=settings.devices)
    return {
        # 3: batch files carry the study's fingerprint (batches of format 2 carry none);
        # 4: settings record the sampler and init as {"name": ..., **options}.
        "format": FORMAT, "model": str(model), "fit_model": str(fit_model),
        "design": {k: list(np.shape(v)) for k, v in sorted(design.items())},
        "design_digest": digest(design), "n_datasets": n_datasets,
        "given": {k: list(np.shape(v)) for k, v in sorted(given.items())},
        "given_digest": digest(given), "settings": settings.model_dump(),
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "key_impl": str(jax.random.key_impl(key)),
        "x64": bool(jax.config.jax_enable_x64), "backend": jax.default_backend(),
        # The compiled arithmetic depends on the layout (devices, datasets per device, lanes
        # or vmap width): another layout gives other, equally valid, draws.
        "layout": layout,
        **labels,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    """Versions that can change the bits; recorded, but a difference only warns.

    hjax's own code is named by a digest of its source as well as by its version, which
    does not change with every commit (an editable install, a checkout that moves)."""
    found = {}
    for name in ("jax", "jaxlib", "blackjax", "hjax"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "unknown"
    found["hjax source"] = _source_digest(Path(__file__).parents[1])
    return found


@functools.cache
def _source_digest(package: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a package's Python files (names and bytes).

    Example:
        >>> import hjax
        >>> len(_source_digest(Path(hjax.__file__).parent))
        16
    """
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _checked_fit_model(model: Model, fit_model: Model | None) -> Model:
    """The model to fit: `model` itself unless another is given, which must report the same
    parameters (SBC compares them)."""
    fit_model = model if fit_model is None else fit_model
    if set(fit_model.param_dims) != set(model.param_dims):
        raise ModelError(
            f"fit_model reports {sorted(fit_model.param_dims)} but the simulating model reports "
            f"{sorted(model.param_dims)}; SBC compares the same parameters.")
    return fit_model


def run_study(
    model: Model,
    design: Mapping,
    *,
    n_datasets: int,
    key,
    settings: StudySettings | None = None,
    given: Mapping[str, np.ndarray] | None = None,
    directory: str | os.PathLike | None = None,
    shard: tuple[int, int] | str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    fit_model: Model | None = None,
    extra: Extra | None = None,
    labels: Mapping | None = None,
) -> xr.Dataset:
    """Simulate, fit and score `n_datasets` datasets in batches; see `hj.sbc` / `hj.recover`.

    Args:
        settings: the fit settings, batch size and rank resolution (`StudySettings()` by
            default).
        given: parameter values held fixed per dataset (arrays with a leading dataset axis);
            the rest are drawn from the prior.
        directory: where batches are stored and resumed from (any number of workers may
            share it); None keeps everything in memory.
        shard: fit only batches k, k + n, ... (`(k, n)` or "k/n"); the others are read from
            `directory` if there, else reported missing. A `Shard` with a `claim_expiry`
            (needs `directory`) shares the batches out by claims instead.
        on_batch: called as on_batch(datasets_done, n_datasets) before the first batch (once
            the store has accepted the run) and after each (progress bars, interruption).
        fit_model: the model fitted to the simulated data, if not `model` itself (to check that
            SBC flags a deliberately wrong model); it must report the same parameters.
        extra: extra(fit, data, dataset_indices) -> per-dataset variables (dim `dataset`)
            merged into the table (e.g. observed group means for shrinkage).
        labels: what else determines the results (e.g. the `extra` hook's settings), for the
            store's manifest.

    Returns:
        The study table (dims dataset, variable: SBC columns and per-dataset diagnostics) of
        every batch fitted or stored, with coords `held_<name>` for scalar values held per
        dataset; `attrs["missing_batches"]` names the batches neither
        fitted here (another shard's) nor stored yet.

    Example:
        >>> settings = hj.StudySettings(chains=2, warmup=100, draws=50, batch_size=4)
        >>> table = run_study(model, design, n_datasets=8, key=jax.random.key(0),
        ...                   settings=settings)
        >>> table.sizes["dataset"], table.attrs["missing_batches"]
        (8, '')
    """
    settings = StudySettings() if settings is None else settings
    shard = parse_shard(shard)
    if shard.claim_expiry is not None and directory is None:
        raise ConfigError("A shard that claims batches needs a study directory to claim them "
                          "in: give `directory`.")
    fit_model = _checked_fit_model(model, fit_model)
    design = model.prepare(design, observed=False)
    given = {k: np.asarray(v) for k, v in (given or {}).items()}
    # A short study is one short batch, not a batch padded to `batch_size`.
    fit_settings = settings.model_copy(update={"batch_size": min(settings.batch_size,
                                                                 n_datasets)})
    store = None if directory is None else Store(directory, _manifest(
        model, fit_model, design, n_datasets, fit_settings, key, given, dict(labels or {})))
    # Datasets use fold_in(sim_key, i) and fold_in(fit_key, i); the prior variance a third key.
    sim_key, fit_key, prior_key = jax.random.split(key, 3)
    batch_study = _BatchStudy(model=model, fit_model=fit_model, design=design,
                              settings=fit_settings, sim_key=sim_key, fit_key=fit_key,
                              prior_key=prior_key, given=given, extra=extra)
    todo = batches(n_datasets, settings.batch_size)
    if shard.claim_expiry is None:
        tables, missing = _run_batches(batch_study, store, todo, shard, on_batch)
    else:
        tables, missing = _claim_batches(batch_study, store, todo, shard, on_batch)
    # The report and `hjax status` judge R-hat by the limit the study's refits used.
    limit = {"rhat_limit": settings.escalation.max_rhat}
    if not tables:  # a worker with no batch of its own, before any other worker stored one
        return xr.Dataset(coords={"dataset": np.arange(0)}).assign_attrs(
            n_datasets=n_datasets, missing_batches=", ".join(b.name for b in missing), **limit)
    return combine(tables, n_datasets, missing).assign_attrs(limit)


def _run_batches(batch_study, store: Store | None, todo: list[Batch], shard: Shard,
                 on_batch) -> tuple[list[xr.Dataset], list[Batch]]:
    """Each batch's table: stored, or fitted (and published) when it is this shard's; the
    batches neither stored nor this shard's are missing. A batch that fails is recorded in
    the store and the others are fitted before the failures are raised."""
    mine, n_shards, _ = shard
    n_datasets = todo[-1].stop
    tables, missing, failed = [], [], []
    if on_batch is not None:
        on_batch(0, n_datasets)
    for batch in todo:
        table = None if store is None else store.load(batch)
        if table is None and batch.number % n_shards == mine:
            try:
                table = batch_study.fit(batch)
            except Exception as error:
                if store is None:
                    raise
                store.record_failure(batch, error)
                failed.append(f"{batch.name} ({type(error).__name__}: {error})")
                continue
            if store is not None:
                store.publish(batch, table)
        if table is None:
            missing.append(batch)
            continue
        tables.append(table)
        if on_batch is not None:
            on_batch(sum(t.sizes["dataset"] for t in tables), n_datasets)
    _raise_failed(failed, store)
    return tables, missing


def _raise_failed(failed: list[str], store: Store | None) -> None:
    if failed:
        raise BatchesFailedError(
            f"{len(failed)} batch(es) failed: " + "; ".join(failed[:3])
            + f". Their errors are in {store.directory}/failed-*.json; the other batches are "
            "stored, and a re-run fits only what is missing.")


def _claim_batches(batch_study, store: Store, todo: list[Batch], shard: Shard,
                   on_batch) -> tuple[list[xr.Dataset], list[Batch]]:
    """Fit batches by claiming them (see `Shard`) until every batch is stored, or failed, or
    left to a re-run: a batch another worker failed (its `failed-*.json`) is not retried
    here unless it is this shard's own. Returns the stored tables and the missing batches.

    `on_batch` is called after each stored batch and while waiting on other workers' claims
    (so a preemption signal is acted on between batches, never during one)."""
    n_datasets = todo[-1].stop
    own = [b for b in todo if b.number % shard.count == shard.index]
    # Others' batches from the end: their live owners work from the front, so a taker and an
    # owner rarely reach for the same batch.
    order = own + [b for b in reversed(todo) if b.number % shard.count != shard.index]
    # Checking a claim reads files on a shared filesystem: a few seconds apart is enough.
    poll = min(5.0, shard.claim_expiry / 4)
    tried: set[Batch] = set()
    failed = []

    def report() -> None:
        if on_batch is not None:
            on_batch(sum(b.stop - b.start for b in todo if store.done(b)), n_datasets)

    report()
    while True:
        others_failed = set(store.failures())
        waiting = fitted = False
        for batch in order:
            if batch in tried or store.done(batch):
                continue
            if batch not in own and batch.name in others_failed:
                continue  # left to a re-run, which fits it on its own shard
            claim = store.claim(batch, shard.claim_expiry)
            if claim is None:
                waiting = True
                continue
            with claim:
                tried.add(batch)
                if store.done(batch):  # stored after we looked, before we claimed
                    continue
                try:
                    store.publish(batch, batch_study.fit(batch))
                except Exception as error:
                    store.record_failure(batch, error)
                    failed.append(f"{batch.name} ({type(error).__name__}: {error})")
            fitted = True
            break  # look again from this shard's own batches
        if fitted:
            report()
        elif waiting:
            time.sleep(poll)
            report()
        else:
            break
    _raise_failed(failed, store)
    tables, missing = [], []
    for batch in todo:
        table = store.load(batch)
        (missing if table is None else tables).append(batch if table is None else table)
    return tables, missing


class _BatchStudy:
    """Simulates, fits and scores one batch; compiled pieces are made once, on first use."""

    def __init__(self, *, model: Model, fit_model: Model, design: dict,
                 settings: StudySettings, sim_key, fit_key, prior_key,
                 given: dict[str, np.ndarray], extra: Extra | None):
        self.model, self.fit_model, self.design = model, fit_model, design
        self.settings, self.sim_key, self.fit_key = settings, sim_key, fit_key
        self.prior_key, self.given, self.extra = prior_key, given, extra
        self.simulate = jax.jit(jax.vmap(model.simulate, in_axes=(0, None, 0)))
        self._prior_variance = None
        # Tie-breaking of ranks: from the key, never from the batch order.
        self.tie_seed = [int(w) for w in np.ravel(jax.random.key_data(fit_key))]

    def _workflow(self, fit, indices):
        return _workflow_columns(self.fit_model, fit, self.settings,
                                 jax.random.fold_in(self.prior_key, int(indices[0])), indices)

    def fit(self, batch: Batch) -> xr.Dataset:
        if self._prior_variance is None:
            self._prior_variance = prior_variance(self.fit_model, self.design, self.prior_key)
        indices = np.arange(batch.start, batch.stop)
        fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
        held = {k: jnp.asarray(v[indices]) for k, v in self.given.items()}
        truths, data = self.simulate(fold(self.sim_key, jnp.asarray(indices)), self.design,
                                     held)
        # A batch is one chunk (spread over the devices); a short last batch is padded to the
        # full width, so every batch runs the same compiled program.
        fit = sample(self.fit_model, data, key=self.fit_key, settings=self.settings,
                     first_dataset=batch.start, progress=False, warn=False)
        posterior = fit.posterior.to_dataset().assign_coords(dataset=indices)
        truth = truths_dataset(self.model, {k: np.asarray(v) for k, v in truths.items()},
                               indices)
        rng = np.random.default_rng([*self.tie_seed, batch.start])
        table = sbc_ranks(posterior, truth, max_rank=self.settings.max_rank,
                          prior_variance=self._prior_variance, seed=rng)
        # The returned fits' diagnostics (computed once, by `sample`), every attempt of an
        # escalated fit, and whether its last one passes the policy.
        stats = fit.fit_stats.to_dataset()
        kept = [name for name in stats.data_vars if name in DIAGNOSTICS
                or name in ("attempts", "passed") or name.startswith("attempt_")]
        table = table.merge(stats[kept].assign_coords(dataset=indices))
        if self.extra is not None:
            table = table.merge(self.extra(fit, data, indices))
        table = table.merge(self._workflow(fit, indices), join="left")
        # Held scalar values label each dataset (a recovery's grid point).
        table = table.assign_coords({f"held_{name}": ("dataset", values[indices])
                                     for name, values in self.given.items() if values.ndim == 1})
        # Kept in the batch's file (for `hjax status`), dropped when batches are combined.
        return table.assign_attrs({k: fit.posterior.attrs[k]
                                   for k in ("sampling_time", "compile_time")})


def merge_directory(directory: str | os.PathLike) -> xr.Dataset:
    """The study table of every batch of the study in `directory` stored there, however many
    workers wrote them; `attrs["missing_batches"]` names the batches not there yet (or set
    aside: another study's, or unreadable).

    Example:
        >>> import tempfile
        >>> directory = tempfile.mkdtemp()
        >>> _ = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50,
        ...            directory=directory)
        >>> merge_directory(directory).sizes["dataset"]
        8
    """
    store = Store(directory)
    tables, missing = [], []
    for batch in store.batches:
        table = store.load(batch)
        (missing if table is None else tables).append(batch if table is None else table)
    return combine(tables, store.manifest["n_datasets"], missing).assign_attrs(
        rhat_limit=rhat_limit(store.manifest))


def rhat_limit(manifest: dict) -> float:
    """The largest R-hat the study in a manifest allowed its fits (`Escalation.max_rhat`).

    Example:
        >>> rhat_limit({"settings": {"escalation": {"max_rhat": 1.05}}})
        1.05
    """
    return manifest["settings"].get("escalation", {}).get("max_rhat", RHAT_LIMIT)


def _workflow_columns(model: Model, fit, settings, key, indices) -> xr.Dataset:
    """Per-dataset PSIS-LOO and per-(dataset, variable) power-scaling sensitivity, as asked."""
    if not (settings.loo or settings.sensitivity):
        return xr.Dataset(coords={"dataset": indices})
    fit = posterior_predictive(model, fit, key=key)
    columns = xr.Dataset()
    if settings.loo:
        columns = columns.merge(loo_per_dataset(fit))
    if settings.sensitivity:
        found = prior_sensitivity(fit)
        columns = columns.merge(found[["prior", "likelihood"]].rename(
            prior="prior_sensitivity", likelihood="likelihood_sensitivity"))
    return columns.assign_coords(dataset=indices)


def combine(tables: list[xr.Dataset], n_datasets: int, missing: list[Batch] = ()) -> xr.Dataset:
    """Concatenate batch tables, checking no dataset is there twice and none is absent
    unless its batch is listed as `missing`.

    Example:
        >>> table = hj.sbc(model, design, n_datasets=8, key=0, chains=2, warmup=100, draws=50)
        >>> halves = [table.isel(dataset=slice(0, 4)), table.isel(dataset=slice(4, 8))]
        >>> combine(halves, n_datasets=8).sizes["dataset"]
        8
    """
    names = [batch.name for batch in missing]
    listed = f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
    if not tables:
        raise StudyDirectoryError(f"No batch of the study's {n_datasets} datasets is done yet "
                                  f"(missing: {listed}).")
    table = xr.concat(tables, dim="dataset", combine_attrs="drop").sortby("dataset")
    got = table["dataset"].values
    expected = n_datasets - sum(batch.stop - batch.start for batch in missing)
    if got.size != expected or np.unique(got).size != got.size:
        raise StudyDirectoryError(
            f"Study results hold {got.size} rows for {expected} datasets expected once each; "
            "the output directory is corrupt: start a new one.")
    return table.assign_attrs(n_datasets=n_datasets, missing_batches=", ".join(names))
