"""The compiled program for one chunk of datasets: init, warm start, warmup and draws.

Two samplers run the same NUTS transitions with the same keys and starts. `fit_jobs` (the
default, "nuts") runs a device's dataset x chain pairs as jobs on a fixed set of lanes that
never wait for each other (`hjax.inference.lanes`). `fit_chunk` ("blackjax", the reference)
vmaps BlackJAX's NUTS kernel (`hjax.inference.nuts`) over chains, then datasets, with the
iterations in a `lax.scan` outside both vmaps: every lane waits for the longest trajectory.
`fit_layout` spreads a chunk over devices (`shard_map`, each device independent: no lockstep
across them). Data are arguments of the compiled function, never constants in it, so one
compile serves every chunk of every call with the same shapes, layout and settings.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.mcmc.hmc import HMCState
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from hjax.inference import lanes as lanes_nuts
from hjax.inference import nuts
from hjax.inference.batching import Layout
from hjax.inference.init import InitResult, init_position
from hjax.inference.progress import report
from hjax.inference.warmstart import warm_start

__all__ = ["ChunkOutput", "FitConfig", "fit_chunk", "fit_jobs", "fit_layout", "run_chunk"]


class FitConfig(NamedTuple):
    """Static settings of a fit; each distinct value compiles its own program."""

    sampler: str = "nuts"
    chains: int = 4
    warmup: int = 1000
    draws: int = 1000
    target_accept: float = 0.8
    dense_mass: bool = False
    max_tree_depth: int = 10
    init: str | None = None
    init_radius: float = 2.0
    max_init_tries: int = 100
    save_warmup: bool = False
    progress: bool = False


class ChunkOutput(NamedTuple):
    """Results for B datasets; arrays lead with (B, C) and, for draws, then the iteration."""

    draws: dict[str, Array]
    stats: nuts.StepInfo
    warmup_draws: dict[str, Array] | None
    warmup_stats: nuts.StepInfo
    init_positions: dict[str, Array]
    init_tries: Int[Array, "B C"]
    init_ok: Bool[Array, "B C"]
    warm_start_grad_evals: Int[Array, " B"]
    step_size: Float[Array, "B C"]
    inverse_mass_matrix: Array
    grad_evals_executed: Float[Array, " B"]


def _vmap2(fn):
    """vmap over datasets (outer) and chains (inner); `data` is per dataset only."""
    return jax.vmap(lambda *args: jax.vmap(partial(fn, data=args[-1]))(*args[:-1]))


def _where_chain(mask, new, old):
    """Per chain (leading axis), `new` where `mask` else `old`, for every leaf."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o),
                        new, old)


def _starts(model, config, key, data) -> tuple[InitResult, Array | None, Array]:
    """Uniform(-r, r) (or prior) starts per chain, replaced by warm-start draws where those are
    finite."""
    logdensity = partial(model.logdensity, data=data)
    if config.init == "prior":
        # Prior draws respect the model's scales, e.g. a non-decision time below the RTs,
        # where uniform(-2, 2) in unconstrained space can put exp(2) = 7 s.
        def draw(key):
            return model.unconstrain(model.sample_prior(key, data))
    else:
        draw = partial(model.init, radius=config.init_radius)
    keys = jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(key, 0)))(
        jnp.arange(config.chains))
    init = jax.vmap(partial(init_position, draw=draw, logdensity_fn=logdensity,
                            max_tries=config.max_init_tries))(keys)
    if config.init in (None, "prior"):
        return init, None, jnp.zeros((), jnp.int32)
    first = jax.tree.map(lambda x: x[0], init.position)
    ws = warm_start(config.init, jax.random.fold_in(key, 1), logdensity, first, config.chains)
    value, grad = jax.vmap(jax.value_and_grad(logdensity))(ws.positions)
    finite = [jnp.all(jnp.isfinite(g.reshape(config.chains, -1)), axis=1)
              for g in jax.tree.leaves(grad)]
    usable = jnp.isfinite(value) & jnp.all(jnp.stack(finite), axis=0)
    init = init._replace(position=_where_chain(usable, ws.positions, init.position),
                         logdensity=jnp.where(usable, value, init.logdensity),
                         grad=_where_chain(usable, grad, init.grad))
    imm = ws.inverse_mass_matrix
    return init, jnp.where(jnp.isfinite(imm) & (imm > 0), imm, 1.0), ws.grad_evals


def _chunk_starts(model, config, key, dataset_index, data, shared):
    """Per dataset: starts, warm-start mass matrices and gradient count, and chain keys, all
    from `fold_in(key, dataset_index[b])`."""
    keys = jax.vmap(partial(jax.random.fold_in, key))(dataset_index)
    init, imm, ws_evals = jax.vmap(
        lambda key, data: _starts(model, config, key, {**shared, **data}))(keys, data)
    chain_keys = jax.vmap(lambda k: jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(
        k, 2)))(jnp.arange(config.chains)))(keys)
    return init, imm, ws_evals, chain_keys


def _chunk_output(config, values, stats, init, ws_evals, params, executed) -> ChunkOutput:
    """Split (dataset, chain, iteration) values and statistics into warmup and draws."""
    split = config.warmup if config.save_warmup else 0
    return ChunkOutput(
        draws=jax.tree.map(lambda x: x[:, :, split:], values),
        stats=jax.tree.map(lambda x: x[:, :, config.warmup:], stats),
        warmup_draws=jax.tree.map(lambda x: x[:, :, :split], values) if split else None,
        warmup_stats=jax.tree.map(lambda x: x[:, :, :config.warmup], stats),
        init_positions=init.position,
        init_tries=init.tries,
        init_ok=init.ok,
        warm_start_grad_evals=ws_evals,
        step_size=params.step_size,
        inverse_mass_matrix=params.inverse_mass_matrix,
        grad_evals_executed=executed,
    )


def fit_chunk(
    model,
    config: FitConfig,
    key: PRNGKeyArray,
    dataset_index: Int[Array, " B"],
    data: dict[str, Array],
    shared: dict[str, Array],
) -> ChunkOutput:
    """Fit B datasets (`data` arrays lead with B; `shared` columns are the same for all) with
    C chains each, in one program.

    Dataset b's randomness comes from `fold_in(key, dataset_index[b])` alone, so its draws do
    not depend on which chunk it lands in or how wide the chunk is.

    Example:
        >>> out = fit_chunk(model, FitConfig(warmup=200, draws=200), key, jnp.arange(2), batch, {})
        >>> out.draws["mu"].shape
        (2, 4, 200)
    """
    init, imm, ws_evals, chain_keys = _chunk_starts(model, config, key, dataset_index, data,
                                                    shared)
    steps = config.warmup + config.draws

    chains = HMCState(init.position, init.logdensity, init.grad)
    start = partial(nuts.init, dense_mass=config.dense_mass)
    if imm is None:
        states = jax.vmap(jax.vmap(start))(chains)
    else:
        states = jax.vmap(lambda c, m: jax.vmap(partial(start, inverse_mass_matrix=m))(c))(
            chains, imm)

    def transition(key, state, phase, data):
        return nuts.step(key, state, phase, partial(model.logdensity, data={**shared, **data}),
                         target_accept=config.target_accept, dense_mass=config.dense_mass,
                         max_tree_depth=config.max_tree_depth)

    constrain = _vmap2(lambda position, data: model.constrain(position, {**shared, **data}))
    # Without save_warmup, draws go into a buffer carried through the loop (written in place
    # at t - warmup; warmup iterations write slot 0, which sampling then overwrites), so
    # memory holds `draws` iterations, not `warmup + draws`.
    blank = jax.eval_shape(constrain, init.position, data)
    buffer = None if config.save_warmup else jax.tree.map(
        lambda s: jnp.zeros((config.draws, *s.shape), s.dtype), blank)

    def body(carry, xs):
        states, buffer = carry
        t, phase = xs
        keys = jax.vmap(jax.vmap(partial(jax.random.fold_in, data=t)))(chain_keys)
        # The phase is shared by every chain of every dataset: closed over, not vmapped.
        states, info = _vmap2(partial(transition, phase=phase))(keys, states, data)
        if config.progress:
            report(t, steps)
        values = constrain(states.chain.position, data)
        if config.save_warmup:
            return (states, buffer), (values, info)
        buffer = jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(
            b, v, jnp.maximum(t - config.warmup, 0), 0), buffer, values)
        return (states, buffer), info

    phases = nuts.schedule(config.warmup, config.draws)
    (states, buffer), ys = jax.lax.scan(body, (states, buffer), (jnp.arange(steps), phases))
    values, stats = ys if config.save_warmup else (buffer, ys)
    # The loop stacks iterations first; callers want (dataset, chain, iteration).
    iteration_last = partial(jax.tree.map, lambda x: jnp.moveaxis(x, 0, 2))
    values, stats = iteration_last(values), iteration_last(stats)
    params = jax.vmap(jax.vmap(nuts.parameters))(states)
    # Every lane of the row steps until the row's longest trajectory ends.
    executed = jnp.full(dataset_index.shape, jnp.sum(jnp.max(stats.n_steps, axis=(0, 1)))
                        * config.chains, params.step_size.dtype)
    return _chunk_output(config, values, stats, init, ws_evals, params, executed)


def fit_jobs(
    model,
    config: FitConfig,
    key: PRNGKeyArray,
    dataset_index: Int[Array, " B"],
    valid: Bool[Array, " B"],
    data: dict[str, Array],
    shared: dict[str, Array],
    *,
    lanes: int,
) -> ChunkOutput:
    """Fit B datasets x C chains as B * C jobs on `lanes` lanes (`hjax.inference.lanes`).

    Starts, keys and adaptation are those of `fit_chunk`, so a dataset's chains are the same
    Markov chains in both; `valid` marks the datasets to fit (the others pad a chunk and are
    skipped). Outputs as `fit_chunk`, with `grad_evals_executed` the lanes' share of the loop.

    Example:
        >>> out = fit_jobs(model, FitConfig(), key, jnp.arange(2), jnp.ones(2, bool), batch, {},
        ...                lanes=4)
        >>> out.draws["mu"].shape
        (2, 4, 1000)
    """
    init, imm, ws_evals, chain_keys = _chunk_starts(model, config, key, dataset_index, data,
                                                    shared)
    n_datasets, chains = init.logdensity.shape
    template = jax.tree.map(lambda x: x[0, 0], init.position)
    _, unravel = ravel_pytree(template)
    flat = jax.vmap(jax.vmap(lambda p: ravel_pytree(p)[0]))
    n_dims = flat(init.position).shape[-1]
    if imm is None:
        imm = jnp.ones((n_datasets, n_dims), init.logdensity.dtype)
    if config.dense_mass:
        imm = jax.vmap(jnp.diag)(imm)
    per_job = partial(jax.tree.map, lambda x: x.reshape(n_datasets * chains, *x.shape[2:]))
    jobs = lanes_nuts.Jobs(
        dataset=jnp.repeat(jnp.where(valid, jnp.arange(n_datasets), -1), chains),
        key=per_job(chain_keys), position=per_job(flat(init.position)),
        logdensity=per_job(init.logdensity), grad=per_job(flat(init.grad)),
        inverse_mass_matrix=jnp.repeat(imm, chains, axis=0),
        step_size=jnp.ones(n_datasets * chains, init.logdensity.dtype))

    # Columns shared by all datasets are closed over, not copied to every lane: the model's
    # gathers by a shared index vectorize across lanes, by per-lane indices they do not.
    def logdensity(x, data):
        return model.logdensity(unravel(x), {**shared, **data})

    def constrain(x, data):
        return ravel_pytree(model.constrain(unravel(x), {**shared, **data}))[0]

    out = lanes_nuts.run(logdensity, constrain, data, jobs, lanes=lanes, warmup=config.warmup,
                         draws=config.draws, target_accept=config.target_accept,
                         dense_mass=config.dense_mass, max_tree_depth=config.max_tree_depth,
                         save_warmup=config.save_warmup, progress=config.progress)
    values = jax.eval_shape(model.constrain, template,
                            {**shared, **jax.tree.map(lambda x: x[0], data)})
    _, unravel_values = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), values))
    per_chain = partial(jax.tree.map, lambda x: x.reshape(n_datasets, chains, *x.shape[1:]))
    values = per_chain(jax.vmap(jax.vmap(unravel_values))(out.draws))
    params = nuts.NUTSParameters(per_chain(out.step_size), per_chain(out.inverse_mass_matrix))
    # The lanes' iterations, shared among the datasets fitted.
    executed = jnp.where(valid, out.iterations * lanes / jnp.maximum(jnp.sum(valid), 1), 0.0)
    return _chunk_output(config, values, per_chain(out.stats), init, ws_evals, params, executed)


def fit_layout(
    model,
    config: FitConfig,
    layout: Layout,
    key: PRNGKeyArray,
    dataset_index: Int[Array, " B"],
    valid: Bool[Array, " B"],
    data: dict[str, Array],
    shared: dict[str, Array],
) -> ChunkOutput:
    """Fit a chunk of `layout.size` datasets laid out as `layout` says; outputs as `fit_chunk`.

    Device j fits the j-th contiguous share. With `config.sampler == "nuts"` its datasets'
    chains are jobs on `layout.lanes` lanes (`fit_jobs`); with "blackjax", rows of
    `layout.vectorized` consecutive datasets run one after another (`fit_chunk`). Datasets
    not `valid` pad the chunk; `shared` columns are the same for every dataset. A dataset's
    draws depend only on its index, never on the layout.

    Example:
        >>> out = fit_layout(model, FitConfig(), Layout(2, 1, 3, 4), key, jnp.arange(6),
        ...                  jnp.ones(6, bool), batch, {})
        >>> out.draws["mu"].shape
        (6, 4, 1000)
    """
    def on_device(index, valid, data, shared):
        if config.sampler == "nuts":
            return fit_jobs(model, config, key, index, valid, data, shared, lanes=layout.lanes)

        def rows(x):
            return x.reshape(layout.sequential, layout.vectorized, *x.shape[1:])

        out = jax.lax.map(lambda args: fit_chunk(model, config, key, *args, shared),
                          jax.tree.map(rows, (index, data)))
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    if layout.devices == 1:
        return on_device(dataset_index, valid, data, shared)
    mesh = Mesh(np.asarray(jax.local_devices()[:layout.devices]), ("device",))
    # Each device runs its own while loops: no collective inside, so no lockstep across devices.
    split = PartitionSpec("device")
    sharded = jax.shard_map(on_device, mesh=mesh, in_specs=(split, split, split, PartitionSpec()),
                            out_specs=split, check_vma=False)
    return sharded(dataset_index, valid, data, shared)


run_chunk = eqx.filter_jit(fit_layout)
"""`fit_layout`, compiled once per model, settings, layout and data shapes (cached)."""
