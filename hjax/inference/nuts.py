"""NUTS for one chain, with Stan's windowed adaptation, as pure init/step functions.

Every function here works on a single chain and a single dataset; batching over chains and
datasets is done by `vmap` in `hjax.inference.run`. Each chain adapts its own step size and
mass matrix, as Stan does, so chains stay independent and R-hat keeps its meaning.
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
    "StepInfo",
    "WarmupState",
    "sample_step",
    "warmup_final",
    "warmup_init",
    "warmup_schedule",
    "warmup_step",
]


class AdaptationState(NamedTuple):
    """Step-size dual averaging and Welford mass-matrix estimation, with their current values."""

    step_size_state: DualAveragingAdaptationState
    mass_state: MassMatrixAdaptationState
    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


class WarmupState(NamedTuple):
    """A chain during warmup: its HMC state and its adaptation state."""

    chain: HMCState
    adaptation: AdaptationState


class NUTSParameters(NamedTuple):
    """What warmup hands to sampling: step size and inverse mass matrix (diagonal or dense)."""

    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


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


def warmup_schedule(num_steps: int) -> tuple[Int[Array, " n"], Bool[Array, " n"]]:
    """Stan's warmup windows: for each step, whether it is slow (mass matrix) and a window end.

    A fast initial buffer (75 steps) adapts only the step size, then slow windows doubling from
    25 steps estimate the mass matrix, then a fast final buffer (50 steps); short warmups shrink
    all three in proportion, as in Stan.

    Example:
        >>> slow, window_end = warmup_schedule(1000)
        >>> int(window_end.sum())  # slow windows of 25, 50, 100, 200, 500
        5
    """
    if num_steps == 0:
        return jnp.zeros((0,), jnp.int32), jnp.zeros((0,), bool)
    schedule = jnp.asarray(build_schedule(num_steps))
    return schedule[:, 0].astype(jnp.int32), schedule[:, 1].astype(bool)


def warmup_init(
    position: dict[str, Array],
    logdensity_fn: LogDensity,
    *,
    dense_mass: bool = False,
    inverse_mass_matrix: Array | None = None,
    step_size: float | Float[Array, ""] = 1.0,
) -> WarmupState:
    """Start a chain's warmup at `position`.

    Args:
        position: unconstrained starting point (a dict of arrays).
        logdensity_fn: log density of one position.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        inverse_mass_matrix: a starting inverse mass matrix (e.g. variational variances); the
            identity when None. Diagonal: shape (d,); dense: (d, d) or (d,) (made diagonal).
        step_size: the starting step size.

    Example:
        >>> state = warmup_init({"x": jnp.zeros(3)}, lambda p: -0.5 * jnp.sum(p["x"] ** 2))
    """
    value, grad = jax.value_and_grad(logdensity_fn)(position)
    n_dims = pytree_size(position)
    if inverse_mass_matrix is not None and dense_mass and jnp.ndim(inverse_mass_matrix) == 1:
        inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
    mm_init, _, _ = mass_matrix_adaptation(not dense_mass)
    da_init, _, _ = dual_averaging_adaptation(0.8)
    mass_state = mm_init(n_dims, inverse_mass_matrix)
    step_size = jnp.asarray(step_size, dtype=value.dtype)
    adaptation = AdaptationState(da_init(step_size), mass_state, step_size,
                                 mass_state.inverse_mass_matrix)
    return WarmupState(HMCState(position, value, grad), adaptation)


def warmup_step(
    key: PRNGKeyArray,
    state: WarmupState,
    slow: Int[Array, ""],
    window_end: Bool[Array, ""],
    logdensity_fn: LogDensity,
    *,
    target_accept: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
) -> tuple[WarmupState, StepInfo]:
    """One NUTS transition, then one adaptation update (`slow`, `window_end` from the schedule).

    Example:
        >>> slow, end = warmup_schedule(200)
        >>> state, info = warmup_step(key, state, slow[0], end[0], logdensity_fn)
    """
    _, mm_update, mm_final = mass_matrix_adaptation(not dense_mass)
    da_init, da_update, da_final = dual_averaging_adaptation(target_accept)
    adapt = state.adaptation
    chain, info = _nuts(key, state.chain, logdensity_fn, adapt.step_size,
                        adapt.inverse_mass_matrix, max_tree_depth)

    ss_state = da_update(adapt.step_size_state, info.acceptance_rate)
    mass_state = jax.lax.cond(slow == 1, lambda m: mm_update(m, chain.position),
                              lambda m: m, adapt.mass_state)

    def end_window(args):
        # Stan restarts dual averaging from the window's average step size once the new mass
        # matrix is in place, since the old step size was tuned for the old metric.
        ss, mm = args
        mm = mm_final(mm)
        return da_init(da_final(ss)), mm

    ss_state, mass_state = jax.lax.cond(window_end, end_window, lambda a: a,
                                        (ss_state, mass_state))
    adapt = AdaptationState(ss_state, mass_state, jnp.exp(ss_state.log_step_size),
                            mass_state.inverse_mass_matrix)
    return WarmupState(chain, adapt), info


def warmup_final(state: WarmupState) -> NUTSParameters:
    """The adapted parameters: the dual-averaged step size and the last mass matrix.

    Example:
        >>> params = warmup_final(state)
    """
    adapt = state.adaptation
    return NUTSParameters(jnp.exp(adapt.step_size_state.log_step_size_avg),
                          adapt.inverse_mass_matrix)


def sample_step(
    key: PRNGKeyArray,
    state: HMCState,
    params: NUTSParameters,
    logdensity_fn: LogDensity,
    *,
    max_tree_depth: int = 10,
) -> tuple[HMCState, StepInfo]:
    """One NUTS transition with fixed, adapted parameters.

    Example:
        >>> state, info = sample_step(key, warmup_state.chain, warmup_final(warmup_state),
        ...                           logdensity_fn)
    """
    return _nuts(key, state, logdensity_fn, params.step_size, params.inverse_mass_matrix,
                 max_tree_depth)
