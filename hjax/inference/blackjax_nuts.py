"""The reference sampler (`sampler="blackjax"`): BlackJAX's NUTS kernel, vmapped.

Every function below `fit_rows` works on a single chain and a single dataset; `fit_rows`
vmaps them over chains, then over the datasets of a row, with the iterations in one loop
outside both vmaps. Under vmap every lane keeps stepping until the longest trajectory of the
row ends (lockstep), which is why the default sampler runs NUTS on lanes instead
(`hjax.inference.lanes`); this one is what the lanes are checked against.

Warmup and sampling are one `step` driven by the warmup `Schedule`: the NUTS kernel (and the
model's log density inside it) appears once in the compiled program, which cuts compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc import nuts
from blackjax.mcmc.hmc import HMCState
from blackjax.util import pytree_size
from jaxtyping import Array, Float, PRNGKeyArray

from hjax.inference import adaptation, thinning
from hjax.inference.adaptation import AdaptationState, Phase, StepInfo
from hjax.inference.chunks import chunk_output, chunk_starts
from hjax.inference.progress import report

__all__ = ["HMCState", "NUTSState", "fit_rows", "init", "step"]

LogDensity = Callable[[dict[str, Array]], Float[Array, ""]]


class NUTSState(NamedTuple):
    """A chain: its HMC state and its adaptation state (frozen once warmup ends)."""

    chain: HMCState
    adaptation: AdaptationState


_kernel = nuts.build_kernel()


def init(chain: HMCState, *, dense_mass: bool = False, inverse_mass_matrix: Array | None = None,
         step_size: float | Float[Array, ""] = 1.0) -> NUTSState:
    """Start a chain from its first HMC state (position, log density and its gradient).

    The caller evaluates the density (the starting-point search already has), so the density
    is not traced again here; the other arguments are those of `adaptation.init`.

    Example:
        >>> def logdensity_fn(p):  # a standard normal
        ...     return -0.5 * jnp.sum(p["x"] ** 2)
        >>> position = {"x": jnp.zeros(3)}
        >>> value, grad = jax.value_and_grad(logdensity_fn)(position)
        >>> state = init(HMCState(position, value, grad))
        >>> state.adaptation.inverse_mass_matrix, state.adaptation.step_size
        (Array([1., 1., 1.], dtype=float32), Array(1., dtype=float32))
    """
    return NUTSState(chain, adaptation.init(
        pytree_size(chain.position), dtype=jnp.result_type(chain.logdensity),
        dense_mass=dense_mass, inverse_mass_matrix=inverse_mass_matrix, step_size=step_size))


def step(
    key: PRNGKeyArray,
    state: NUTSState,
    phase: Phase,
    logdensity_fn: LogDensity,
    *,
    target_accept: float | Float[Array, ""] = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
) -> tuple[NUTSState, StepInfo]:
    """One NUTS transition; during warmup (`phase.adapting`) followed by an adaptation update.

    Example:
        >>> def logdensity_fn(p):  # a standard normal
        ...     return -0.5 * jnp.sum(p["x"] ** 2)
        >>> position = {"x": jnp.zeros(3)}
        >>> state = init(HMCState(position, *jax.value_and_grad(logdensity_fn)(position)))
        >>> phase = adaptation.phase_at(adaptation.schedule(200), 0)  # warmup's first
        >>> state, info = step(jax.random.key(0), state, phase, logdensity_fn)
        >>> bool(info.diverging), float(state.adaptation.step_size) != 1.0  # adapted
        (False, True)
    """
    adapt = state.adaptation
    step_size = adaptation.step_size_now(adapt, phase.adapting)
    chain, info = _kernel(key, state.chain, logdensity_fn, step_size, adapt.inverse_mass_matrix,
                          max_num_doublings=max_tree_depth)
    stats = StepInfo(
        lp=chain.logdensity, diverging=info.is_divergent,
        tree_depth=jnp.asarray(info.num_trajectory_expansions, jnp.int32),
        n_steps=jnp.asarray(info.num_integration_steps, jnp.int32),
        energy=info.energy, acceptance_rate=info.acceptance_rate,
        step_size=jnp.asarray(step_size, dtype=chain.logdensity.dtype),
        # BlackJAX's kernel does not show its leapfrog steps: a NaN density is a divergence
        # here, not counted apart (the default sampler, lanes, counts it).
        nan_log_density=jnp.zeros((), bool))
    adapt = jax.lax.cond(
        phase.adapting,
        lambda a: adaptation.adapt(a, phase, chain.position, info.acceptance_rate,
                                   target_accept, dense_mass),
        lambda a: a, adapt)
    return NUTSState(chain, adapt), stats


def _vmap2(fn):
    """vmap over datasets (outer) and chains (inner); `data` is per dataset only."""
    return jax.vmap(lambda *args: jax.vmap(partial(fn, data=args[-1]))(*args[:-1]))


class _Loop(NamedTuple):
    states: NUTSState
    values: dict[str, Array]        # (kept, B, C, ...): saved warmup, then draws
    stats: StepInfo                 # (kept, B, C)
    warmup_grad_evals: Array        # (B, C)
    row_steps: Array                # sum over iterations of the row's longest trajectory


def fit_rows(model, program, runtime, key, dataset_index, data, shared):
    """Fit B datasets (`data` arrays lead with B; `shared` columns are the same for all) with
    C chains each, vmapped together; outputs as `hjax.inference.chunks.ChunkOutput`.

    Dataset b's randomness comes from `fold_in(key, dataset_index[b])` alone, so its draws do
    not depend on which chunk it lands in or how wide the chunk is.

    Example:
        >>> from hjax.inference.chunks import Program, Runtime
        >>> from hjax.inference.samplers import VmappedNUTS
        >>> sampler = VmappedNUTS()
        >>> program = Program(sampler, sampler.layout(2, chains=2, available=1), chains=2, draws=50)
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> out = jax.eval_shape(lambda: fit_rows(model, program, Runtime.of(100, 0.8, 2.0),
        ...     jax.random.key(0), jnp.arange(2), batch, {}))
        >>> out.draws["mu"].shape  # (datasets, chains, draws); shapes only: nothing runs
        (2, 2, 50)
    """
    init_result, imm, ws_evals, chain_keys = chunk_starts(model, program, runtime, key,
                                                          dataset_index, data, shared)
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
        return _Loop(states, write(loop.values, constrain(states.chain.position, data)),
                     write(loop.stats, thinning.fold(kept, info, index)),
                     loop.warmup_grad_evals + jnp.where(phase.adapting, info.n_steps, 0),
                     loop.row_steps + jnp.max(info.n_steps))

    no_steps = jnp.zeros(init_result.logdensity.shape, jnp.int32)
    loop = jax.lax.fori_loop(0, steps, body, _Loop(states, values, stats, no_steps,
                                                   jnp.zeros((), jnp.int32)))
    # The loop stacks iterations first; callers want (dataset, chain, iteration).
    iteration_last = partial(jax.tree.map, lambda x: jnp.moveaxis(x, 0, 2))
    params = jax.vmap(jax.vmap(lambda s: adaptation.parameters(s.adaptation)))(loop.states)
    # Every lane of the row steps until the row's longest trajectory ends.
    executed = jnp.full(dataset_index.shape, loop.row_steps * program.chains,
                        params.step_size.dtype)
    return chunk_output(program, iteration_last(loop.values), iteration_last(loop.stats),
                        loop.warmup_grad_evals, init_result, ws_evals, params, executed)
