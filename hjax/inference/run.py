"""The compiled program for one chunk of datasets: init, warm start, warmup and draws.

Layout: B datasets x C chains. Every phase vmaps the single-chain functions of
`hjax.inference.nuts` over chains, then over datasets; the iterations are a `lax.scan` outside
both vmaps (so a progress callback fires once per step, not once per chain). Data are
arguments of the compiled function, never constants in it, so one compile serves every chunk
of every call with the same shapes and settings.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from hjax.inference import nuts
from hjax.inference.init import init_position
from hjax.inference.progress import report
from hjax.inference.warmstart import warm_start

__all__ = ["ChunkOutput", "FitConfig", "fit_chunk", "run_chunk"]


class FitConfig(NamedTuple):
    """Static settings of a fit; each distinct value compiles its own program."""

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
    warmup_stats: nuts.StepInfo | None
    warmup_n_steps: Int[Array, "B C W"]
    init_positions: dict[str, Array]
    init_tries: Int[Array, "B C"]
    init_ok: Bool[Array, "B C"]
    warm_start_grad_evals: Int[Array, " B"]
    step_size: Float[Array, "B C"]
    inverse_mass_matrix: Array


def _vmap2(fn):
    """vmap over datasets (outer) and chains (inner); `data` is per dataset only."""
    return jax.vmap(lambda *args: jax.vmap(partial(fn, data=args[-1]))(*args[:-1]))


def _initial_positions(model, config, key, data):
    """Uniform(-r, r) starts per chain, replaced by warm-start draws where those are finite."""
    logdensity = partial(model.logdensity, data=data)
    draw = partial(model.init, radius=config.init_radius)
    keys = jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(key, 0)))(
        jnp.arange(config.chains))
    init = jax.vmap(partial(init_position, draw=draw, logdensity_fn=logdensity,
                            max_tries=config.max_init_tries))(keys)
    if config.init is None:
        return init, None, jnp.zeros((), jnp.int32)
    first = jax.tree.map(lambda x: x[0], init.position)
    ws = warm_start(config.init, jax.random.fold_in(key, 1), logdensity, first, config.chains)
    value, grad = jax.vmap(jax.value_and_grad(logdensity))(ws.positions)
    usable = jnp.isfinite(value) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(g.reshape(config.chains, -1)), axis=1)
                   for g in jax.tree.leaves(grad)]), axis=0)
    positions = jax.tree.map(
        lambda w, u: jnp.where(usable.reshape((-1,) + (1,) * (w.ndim - 1)), w, u),
        ws.positions, init.position)
    imm = ws.inverse_mass_matrix
    imm = jnp.where(jnp.isfinite(imm) & (imm > 0), imm, 1.0)
    return init._replace(position=positions), imm, ws.grad_evals


def fit_chunk(
    model,
    config: FitConfig,
    key: PRNGKeyArray,
    dataset_index: Int[Array, " B"],
    data: dict[str, Array],
) -> ChunkOutput:
    """Fit B datasets (`data` arrays lead with B) with C chains each, in one program.

    Dataset b's randomness comes from `fold_in(key, dataset_index[b])` alone, so its draws do
    not depend on which chunk it lands in or how wide the chunk is.

    Example:
        >>> out = fit_chunk(model, FitConfig(warmup=200, draws=200), key, jnp.arange(2), batch)
        >>> out.draws["mu"].shape
        (2, 4, 200)
    """
    keys = jax.vmap(partial(jax.random.fold_in, key))(dataset_index)
    init, imm, ws_evals = jax.vmap(partial(_initial_positions, model, config))(keys, data)
    chain_keys = jax.vmap(lambda k: jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(
        k, 2)))(jnp.arange(config.chains)))(keys)
    steps = config.warmup + config.draws

    def warmup_init(position, imm, data):
        return nuts.warmup_init(position, partial(model.logdensity, data=data),
                                dense_mass=config.dense_mass, inverse_mass_matrix=imm)

    if imm is None:
        states = _vmap2(lambda p, data: warmup_init(p, None, data))(init.position, data)
    else:
        states = jax.vmap(lambda p, m, d: jax.vmap(lambda q: warmup_init(q, m, d))(p))(
            init.position, imm, data)

    def constrain(position, data):
        return model.constrain(position, data)

    def warmup_body(states, xs):
        t, slow, end = xs
        step = _vmap2(lambda k, s, data: nuts.warmup_step(
            jax.random.fold_in(k, t), s, slow, end, partial(model.logdensity, data=data),
            target_accept=config.target_accept, dense_mass=config.dense_mass,
            max_tree_depth=config.max_tree_depth))
        states, info = step(chain_keys, states, data)
        if config.progress:
            report(t, steps)
        if not config.save_warmup:
            return states, info.n_steps
        return states, (_vmap2(constrain)(states.chain.position, data), info)

    slow, end = nuts.warmup_schedule(config.warmup)
    states, warm = jax.lax.scan(warmup_body, states, (jnp.arange(config.warmup), slow, end))
    params = jax.vmap(jax.vmap(nuts.warmup_final))(states)

    def sample_body(chain_states, t):
        step = _vmap2(lambda k, s, p, data: nuts.sample_step(
            jax.random.fold_in(k, t), s, p, partial(model.logdensity, data=data),
            max_tree_depth=config.max_tree_depth))
        chain_states, info = step(chain_keys, chain_states, params, data)
        if config.progress:
            report(t, steps)
        return chain_states, (_vmap2(constrain)(chain_states.position, data), info)

    _, (draws, stats) = jax.lax.scan(sample_body, states.chain,
                                     jnp.arange(config.warmup, steps))
    if config.save_warmup:
        warmup_draws, warmup_stats = warm
        warmup_n_steps = warmup_stats.n_steps
    else:
        warmup_draws, warmup_stats, warmup_n_steps = None, None, warm
    # The scans stack iterations first; callers want (dataset, chain, iteration).
    iteration_last = partial(jax.tree.map, lambda x: jnp.moveaxis(x, 0, 2))
    return ChunkOutput(
        draws=iteration_last(draws),
        stats=iteration_last(stats),
        warmup_draws=iteration_last(warmup_draws),
        warmup_stats=iteration_last(warmup_stats),
        warmup_n_steps=iteration_last(warmup_n_steps),
        init_positions=init.position,
        init_tries=init.tries,
        init_ok=init.ok,
        warm_start_grad_evals=ws_evals,
        step_size=params.step_size,
        inverse_mass_matrix=params.inverse_mass_matrix,
    )


run_chunk = eqx.filter_jit(fit_chunk)
"""`fit_chunk`, compiled once per model, settings and chunk shape (cached across calls)."""
