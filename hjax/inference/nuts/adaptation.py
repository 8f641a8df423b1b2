"""Stan's windowed warmup for one NUTS chain, shared by both samplers, as pure functions.

Each chain adapts its own step size (dual averaging) and mass matrix (Welford estimates over
slow windows that double in size), as Stan does, so chains stay independent and R-hat keeps
its meaning. The window schedule is data (`Schedule`), not program structure: a fit with
another `warmup` reuses the compiled program.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, mass_matrix_adaptation
from blackjax.adaptation.step_size import (
    DualAveragingAdaptationState,
    dual_averaging_adaptation,
)
from blackjax.adaptation.window_adaptation import build_schedule
from jaxtyping import Array, Bool, Float, Int

from hjax.errors import ConfigError

__all__ = [
    "AdaptationState",
    "NUTSParameters",
    "Phase",
    "Schedule",
    "StepInfo",
    "adapt",
    "init",
    "parameters",
    "phase_at",
    "schedule",
    "step_size_now",
]

MAX_WINDOWS = 32  # slow windows double in size: 32 cover any warmup a chain could run


class StepInfo(NamedTuple):
    """Per-transition statistics, named as ArviZ's `sample_stats` group names them."""

    lp: Float[Array, ""]
    diverging: Bool[Array, ""]
    tree_depth: Int[Array, ""]
    n_steps: Int[Array, ""]
    energy: Float[Array, ""]
    acceptance_rate: Float[Array, ""]
    step_size: Float[Array, ""]
    # A leapfrog step of the transition met a NaN (or +inf) log density: a density that is
    # undefined where it should be -inf (outside its support), read by NUTS as a divergence.
    nan_log_density: Bool[Array, ""]

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype) -> StepInfo:
        """A blank record of `shape` (counts in int32, the rest in `dtype`).

        Example:
            >>> StepInfo.zeros((2, 4), jnp.float32).n_steps.dtype
            dtype('int32')
        """
        kinds = {"diverging": bool, "tree_depth": jnp.int32, "n_steps": jnp.int32,
                 "nan_log_density": bool}
        return cls(*(jnp.zeros(shape, kinds.get(name, dtype)) for name in cls._fields))


class AdaptationState(NamedTuple):
    """Step-size dual averaging and Welford mass-matrix estimation, with their current values."""

    step_size_state: DualAveragingAdaptationState
    mass_state: MassMatrixAdaptationState
    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


class NUTSParameters(NamedTuple):
    """What warmup hands to sampling: step size and inverse mass matrix (diagonal or dense)."""

    step_size: Float[Array, ""]
    inverse_mass_matrix: Array


class Phase(NamedTuple):
    """What one iteration adapts: anything at all, the mass matrix, and whether a window ends."""

    adapting: Bool[Array, ""]
    slow: Bool[Array, ""]
    window_end: Bool[Array, ""]


class Schedule(NamedTuple):
    """Stan's warmup windows as runtime values: iterations `[slow_start, slow_stop)` estimate
    the mass matrix, a slow window ends at each of `window_ends` (padded with -1)."""

    warmup: Int[Array, ""]
    slow_start: Int[Array, ""]
    slow_stop: Int[Array, ""]
    window_ends: Int[Array, " MAX_WINDOWS"]


def schedule(warmup: int) -> Schedule:
    """Stan's windows for `warmup` iterations (BlackJAX's `build_schedule`), as arrays.

    A fast buffer (75 iterations) adapts only the step size, then slow windows doubling from
    25 iterations estimate the mass matrix, then a fast final buffer (50); short warmups
    shrink all three in proportion, as in Stan.

    Example:
        >>> s = schedule(1000)
        >>> int(s.slow_start), int(s.slow_stop), [int(e) for e in s.window_ends if e >= 0]
        (75, 950, [99, 149, 249, 449, 949])
    """
    with jax.ensure_compile_time_eval():  # BlackJAX builds it with jnp: keep it on the host
        stages = np.asarray(build_schedule(warmup), dtype=int).reshape(-1, 2)
    slow, ends = np.flatnonzero(stages[:, 0] == 1), np.flatnonzero(stages[:, 1] == 1)
    if slow.size and not np.array_equal(slow, np.arange(slow[0], slow[-1] + 1)):
        raise AssertionError("Stan's slow windows are expected to be contiguous.")
    if ends.size > MAX_WINDOWS:
        raise ConfigError(f"warmup={warmup} has more than {MAX_WINDOWS} adaptation windows.")
    start, stop = (int(slow[0]), int(slow[-1]) + 1) if slow.size else (0, 0)
    padded = np.full(MAX_WINDOWS, -1)
    padded[:ends.size] = ends
    return Schedule(*(jnp.asarray(x, jnp.int32) for x in (warmup, start, stop, padded)))


def phase_at(schedule: Schedule, iteration: Int[Array, ""]) -> Phase:
    """The phase of `iteration` (warmup first, then sampling, which adapts nothing).

    Example:
        >>> bool(phase_at(schedule(1000), 99).window_end)
        True
    """
    slow = (iteration >= schedule.slow_start) & (iteration < schedule.slow_stop)
    return Phase(adapting=iteration < schedule.warmup, slow=slow,
                 window_end=jnp.any(schedule.window_ends == iteration))


def init(
    n_dims: int,
    *,
    dtype,
    dense_mass: bool = False,
    inverse_mass_matrix: Array | None = None,
    step_size: float | Float[Array, ""] = 1.0,
) -> AdaptationState:
    """The adaptation state of a chain over `n_dims` unconstrained values.

    Args:
        n_dims: size of the flattened position.
        dtype: the float dtype of the chain's log density.
        dense_mass: adapt a dense mass matrix instead of a diagonal one.
        inverse_mass_matrix: a starting inverse mass matrix (e.g. variational variances); the
            identity when None. Diagonal: shape (d,); dense: (d, d) or (d,) (made diagonal).
        step_size: the starting step size.

    Example:
        >>> init(3, dtype=jnp.float32).inverse_mass_matrix.shape
        (3,)
    """
    if inverse_mass_matrix is not None and dense_mass and jnp.ndim(inverse_mass_matrix) == 1:
        inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
    mm_init, _, _ = mass_matrix_adaptation(not dense_mass)
    da_init, _, _ = dual_averaging_adaptation(target=0.8)  # the target is used by updates only
    mass_state = mm_init(n_dims)
    if inverse_mass_matrix is not None:
        mass_state = mass_state._replace(inverse_mass_matrix=jnp.asarray(inverse_mass_matrix))
    step_size = jnp.asarray(step_size, dtype=dtype)
    return AdaptationState(da_init(step_size), mass_state, step_size,
                           mass_state.inverse_mass_matrix)


def step_size_now(state: AdaptationState, adapting: Bool[Array, ""]) -> Float[Array, ""]:
    """The step size of the next transition: the dual-averaging iterate while adapting, its
    average once warmup is over (Stan's rule).

    Example:
        >>> float(step_size_now(init(2, dtype=jnp.float32), True))
        1.0
    """
    return jnp.where(adapting, state.step_size, jnp.exp(state.step_size_state.log_step_size_avg))


def parameters(state: AdaptationState) -> NUTSParameters:
    """The adapted parameters: the dual-averaged step size and the last mass matrix.

    Example:
        >>> parameters(init(2, dtype=jnp.float32)).inverse_mass_matrix.shape
        (2,)
    """
    return NUTSParameters(jnp.exp(state.step_size_state.log_step_size_avg),
                          state.inverse_mass_matrix)


def adapt(state: AdaptationState, phase: Phase, position, acceptance_rate, target_accept,
          dense_mass: bool) -> AdaptationState:
    """One warmup update: dual averaging of the step size, and in slow windows the Welford
    estimate of the mass matrix, finalized (and dual averaging restarted) at a window's end.

    Example:
        >>> state, phase = init(2, dtype=jnp.float32), phase_at(schedule(100), 0)
        >>> for accept in (0.9, 0.5):  # the more a transition accepted, the longer the next
        ...     new = adapt(state, phase, jnp.zeros(2), accept, 0.8, False)
        ...     print(round(float(new.step_size), 1))
        12.0
        5.8
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
