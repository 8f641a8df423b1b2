"""NUTS for one chain, with Stan's windowed adaptation, as pure init/step functions.

Every function here works on a single chain and a single dataset; batching over chains and
datasets is done by `vmap` in `hjax.inference.run`. Each chain adapts its own step size and
mass matrix, as Stan does, so chains stay independent and R-hat keeps its meaning.

Warmup and sampling are one `step` driven by a `schedule`: the NUTS kernel (and the model's
log density inside it) appears once in the compiled program, not once per loop, which cuts
compile time (the kernel dominates it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, mass_matrix_adaptation
from blackjax.adaptation.step_size import (
    DualAveragingAdaptationState,
    dual_averaging_adaptation,
)
from blackjax.adaptation.window_adaptation import build_schedule
from blackjax.mcmc import nuts
from blackjax.mcmc.hmc import HMCState
from blackjax.util import pytree_size
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

LogDensity = Callable[[dict[str, Array]], Float[Array, ""]]

__all__ = [
    "AdaptationState",
    "NUTSParameters",
    "NUTSState",
    "HMCState",
    "Phase",
    "StepInfo",
    "adapt",
    "init",
    "parameters",
    "schedule",
    "step",
]


class AdaptationState(NamedTuple):
    """Step-size dual averaging and Welford mass-matrix estimation, with their current values."""

    step_size_state: DualAveragingAdaptationState
    mass_state: MassMatrixAdaptationState
    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


class NUTSState(NamedTuple):
    """A chain: its HMC state and its adaptation state (frozen once warmup ends)."""

    chain: HMCState
    adaptation: AdaptationState


class NUTSParameters(NamedTuple):
    """What warmup hands to sampling: step size and inverse mass matrix (diagonal or dense)."""

    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


class Phase(NamedTuple):
    """What one iteration adapts: anything at all, the mass matrix, and whether a window ends."""

    adapting: Bool[Array, ""]
    slow: Bool[Array, ""]
    window_end: Bool[Array, ""]


class StepInfo(NamedTuple):
    """Per-transition statistics, named as ArviZ's `sample_stats` group names them."""

    lp: Float[Array, ""]
    diverging: Bool[Array, ""]
    tree_depth: Int[Array, ""]
    n_steps: Int[Array, ""]
    energy: Float[Array, ""]
    acceptance_rate: Float[Array, ""]
    step_size: Float[Array, ""]


_kernel = nuts.build_kernel()


def _nuts(key, state, logdensity_fn, step_size, inverse_mass_matrix, max_tree_depth):
    new_state, info = _kernel(key, state, logdensity_fn, step_size, inverse_mass_matrix,
                              max_num_doublings=max_tree_depth)
    stats = StepInfo(
        lp=new_state.logdensity,
        diverging=info.is_divergent,
        tree_depth=info.num_trajectory_expansions,
        n_steps=info.num_integration_steps,
        energy=info.energy,
        acceptance_rate=info.acceptance_rate,
        step_size=jnp.asarray(step_size, dtype=new_state.logdensity.dtype),
    )
    return new_state, stats


def schedule(warmup: int, draws: int) -> Phase:
    """Per-iteration phases: Stan's warmup windows, then `draws` iterations adapting nothing.

    Warmup starts with a fast buffer (75 steps) adapting only the step size, then slow windows
    doubling from 25 steps estimate the mass matrix, then a fast final buffer (50 steps); short
    warmups shrink all three in proportion, as in Stan.

    Example:
        >>> phases = schedule(1000, 1000)
        >>> int(phases.adapting.sum()), int(phases.window_end.sum())  # windows 25, 50, ..., 500
        (1000, 5)
    """
    if warmup:
        stages = jnp.asarray(build_schedule(warmup))
        slow, end = stages[:, 0] == 1, stages[:, 1] == 1
    else:
        slow = end = jnp.zeros((0,), bool)
    pad = jnp.zeros((draws,), bool)
    return Phase(adapting=jnp.arange(warmup + draws) < warmup,
                 slow=jnp.concatenate([slow, pad]), window_end=jnp.concatenate([end, pad]))


def init(
    chain: HMCState,
    *,
    dense_mass: bool = False,
    inverse_mass_matrix: Array | None = None,
    step_size: float | Float[Array, ""] = 1.0,
) -> NUTSState:
    """Start a chain from its first HMC state (position, log density and its gradient).

    The caller evaluates the density (the starting-point search already has), so the density
    is not traced again here.

    Args:
        chain: the starting `HMCState`.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        inverse_mass_matrix: a starting inverse mass matrix (e.g. variational variances); the
            identity when None. Diagonal: shape (d,); dense: (d, d) or (d,) (made diagonal).
        step_size: the starting step size.

    Example:
        >>> position = {"x": jnp.zeros(3)}
        >>> value, grad = jax.value_and_grad(logdensity_fn)(position)
        >>> state = init(HMCState(position, value, grad))
    """
    n_dims = pytree_size(chain.position)
    if inverse_mass_matrix is not None and dense_mass and jnp.ndim(inverse_mass_matrix) == 1:
        inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
    mm_init, _, _ = mass_matrix_adaptation(not dense_mass)
    da_init, _, _ = dual_averaging_adaptation(target=0.8)  # the target is used by updates only
    mass_state = mm_init(n_dims)
    if inverse_mass_matrix is not None:
        mass_state = mass_state._replace(inverse_mass_matrix=jnp.asarray(inverse_mass_matrix))
    step_size = jnp.asarray(step_size, dtype=jnp.result_type(chain.logdensity))
    adaptation = AdaptationState(da_init(step_size), mass_state, step_size,
                                 mass_state.inverse_mass_matrix)
    return NUTSState(chain, adaptation)


def parameters(state: NUTSState) -> NUTSParameters:
    """The adapted parameters: the dual-averaged step size and the last mass matrix.

    Example:
        >>> parameters(state).step_size
    """
    adapt = state.adaptation
    return NUTSParameters(jnp.exp(adapt.step_size_state.log_step_size_avg),
                          adapt.inverse_mass_matrix)


def adapt(state: AdaptationState, phase: Phase, position, acceptance_rate, target_accept,
          dense_mass) -> AdaptationState:
    """One warmup update: dual averaging of the step size, and in slow windows the Welford
    estimate of the mass matrix, finalized (and dual averaging restarted) at a window's end.

    Example:
        >>> adaptation = adapt(state.adaptation, phase, position, 0.9, 0.8, False)
    """
    _, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
    ss_state = da_update(state.step_size_state, acceptance_rate)
    mass_state = jax.lax.cond(phase.slow, lambda m: mm_update(m, position), lambda m: m,
                              state.mass_state)

    def end_window(args):
        # Stan restarts dual averaging from the window's average step size once the new mass
        # matrix is in place, since the old step size was tuned for the old metric.
        ss, mm = args
        return da_init(da_final(ss)), mm_final(mm)

    ss_state, mass_state = jax.lax.cond(phase.window_end, end_window, lambda a: a,
                                        (ss_state, mass_state))
    return AdaptationState(ss_state, mass_state, jnp.exp(ss_state.log_step_size),
                           mass_state.inverse_mass_matrix)


def step(
    key: PRNGKeyArray,
    state: NUTSState,
    phase: Phase,
    logdensity_fn: LogDensity,
    *,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
) -> tuple[NUTSState, StepInfo]:
    """One NUTS transition; during warmup (`phase.adapting`) followed by an adaptation update.

    After warmup the transition uses the adapted parameters (`parameters(state)`).

    Example:
        >>> phases = schedule(200, 100)
        >>> state, info = step(key, state, jax.tree.map(lambda x: x[0], phases), logdensity_fn)
    """
    adaptation = state.adaptation
    step_size = jnp.where(phase.adapting, adaptation.step_size,
                          jnp.exp(adaptation.step_size_state.log_step_size_avg))
    chain, info = _nuts(key, state.chain, logdensity_fn, step_size,
                        adaptation.inverse_mass_matrix, max_tree_depth)
    adaptation = jax.lax.cond(
        phase.adapting,
        lambda a: adapt(a, phase, chain.position, info.acceptance_rate, target_accept,
                        dense_mass),
        lambda a: a, adaptation)
    return NUTSState(chain, adaptation), info
