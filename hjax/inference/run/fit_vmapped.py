"""The "blackjax" sampler on one device: BlackJAX's NUTS kernel vmapped over a chunk's
datasets and chains, with the iterations in one loop outside both vmaps."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from hjax.inference.nuts import adaptation, thinning
from hjax.inference.nuts.adaptation import StepInfo
from hjax.inference.nuts.blackjax_nuts import HMCState, NUTSState, init, step
from hjax.inference.nuts.progress import report
from hjax.inference.run.chunks import (
    Chunk,
    ChunkOutput,
    Program,
    Runtime,
    chunk_output,
    chunk_starts,
)

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["fit_rows"]


def _vmap2(fn):
    """vmap over datasets (outer) and chains (inner); `data` is per dataset only."""
    return jax.vmap(lambda *args: jax.vmap(partial(fn, data=args[-1]))(*args[:-1]))


class _Loop(NamedTuple):
    states: NUTSState
    values: dict[str, Array]        # (kept, B, C, ...): saved warmup, then draws
    stats: StepInfo                 # (kept, B, C)
    warmup_grad_evals: Array        # (B, C)
    row_steps: Array                # sum over iterations of the row's longest trajectory


def fit_rows(model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
             chunk: Chunk) -> ChunkOutput:
    """Fit a chunk's B datasets with C chains each, vmapped together (padding datasets too);
    outputs as `hjax.inference.run.chunks.ChunkOutput`.

    Dataset b's randomness comes from `fold_in(key, chunk.dataset_index[b])` alone, so its
    draws do not depend on which chunk it lands in or how wide the chunk is.

    Example:
        >>> from hjax.inference.run.chunks import Chunk, Program, Runtime
        >>> from hjax.inference.run.samplers import BlackJAXNUTS
        >>> sampler = BlackJAXNUTS()
        >>> program = Program(sampler=sampler, layout=sampler.layout(2, chains=2, available=1),
        ...                   chains=2, draws=50)
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> chunk = Chunk(jnp.arange(2), jnp.ones(2, bool), batch, {})
        >>> out = jax.eval_shape(lambda: fit_rows(model, program, Runtime.of(100, 0.8),
        ...                                       jax.random.key(0), chunk))
        >>> out.draws["mu"].shape  # (datasets, chains, draws); shapes only: nothing runs
        (2, 2, 50)
    """
    init_result, imm, ws_evals, chain_keys = chunk_starts(model, program, runtime, key, chunk)
    data, shared, dataset_index = chunk.data, chunk.shared, chunk.dataset_index
    schedule = runtime.schedule
    steps = schedule.warmup + program.draws * runtime.thin
    start = partial(init, dense_mass=program.dense_mass)
    chains = HMCState(init_result.position, init_result.logdensity, init_result.grad)
    if imm is None:
        states = jax.vmap(jax.vmap(start))(chains)
    else:
        states = jax.vmap(lambda c, m: jax.vmap(partial(start, inverse_mass_matrix=m))(c))(
            chains, imm)

    def transition(key, state, phase, data):
        return step(key, state, phase, partial(model.logdensity, data={**shared, **data}),
                    target_accept=runtime.target_accept, dense_mass=program.dense_mass,
                    max_tree_depth=program.max_tree_depth)

    constrain = _vmap2(lambda position, data: model.constrain(position, {**shared, **data}))
    blank = jax.eval_shape(constrain, init_result.position, data)
    values = jax.tree.map(lambda s: jnp.zeros((program.kept, *s.shape), s.dtype), blank)
    stats = StepInfo.zeros((program.kept, *init_result.logdensity.shape),
                           init_result.logdensity.dtype)

    def body(t, loop: _Loop) -> _Loop:
        keys = jax.vmap(jax.vmap(partial(jax.random.fold_in, data=t)))(chain_keys)
        # The phase is shared by every chain of every dataset: closed over, not vmapped.
        phase = adaptation.phase_at(schedule, t)
        states, info = _vmap2(partial(transition, phase=phase))(keys, loop.states, data)
        if program.progress:
            report(t, steps)
        # Iterations before the kept ones (unsaved warmup) write slot 0, which later ones
        # overwrite; each slot's statistics fold in its block's (`thinning`).
        slot, index = thinning.slot(t, schedule.warmup, program.saved_warmup, runtime.thin)
        slot = jnp.maximum(slot, 0)
        write = partial(jax.tree.map, lambda b, v: jax.lax.dynamic_update_index_in_dim(
            b, v, slot, 0))
        kept = jax.tree.map(lambda b: jax.lax.dynamic_index_in_dim(b, slot, 0, False),
                            loop.stats)
        return _Loop(states=states,
                     values=write(loop.values, constrain(states.chain.position, data)),
                     stats=write(loop.stats, thinning.fold(kept, info, index)),
                     warmup_grad_evals=loop.warmup_grad_evals
                     + jnp.where(phase.adapting, info.n_steps, 0),
                     row_steps=loop.row_steps + jnp.max(info.n_steps))

    no_steps = jnp.zeros(init_result.logdensity.shape, jnp.int32)
    loop = jax.lax.fori_loop(0, steps, body, _Loop(
        states=states, values=values, stats=stats, warmup_grad_evals=no_steps,
        row_steps=jnp.zeros((), jnp.int32)))
    # The loop stacks iterations first; callers want (dataset, chain, iteration).
    iteration_last = partial(jax.tree.map, lambda x: jnp.moveaxis(x, 0, 2))
    params = jax.vmap(jax.vmap(lambda s: adaptation.parameters(s.adaptation)))(loop.states)
    # Every lane of the row steps until the row's longest trajectory ends.
    executed = jnp.full(dataset_index.shape, loop.row_steps * program.chains,
                        params.step_size.dtype)
    return chunk_output(program, iteration_last(loop.values), iteration_last(loop.stats),
                        loop.warmup_grad_evals, init_result, ws_evals, params, executed)
