"""The reference sampler's kernel (`sampler="blackjax"`): BlackJAX's NUTS with adaptation.

Every function here works on a single chain and a single dataset; `hjax.inference.run.
fit_vmapped.fit_rows` vmaps them over chains, then over the datasets of a row, with the
iterations in one loop outside both vmaps. Under vmap every lane keeps stepping until the
longest trajectory of the row ends (lockstep), which is why the default sampler runs NUTS on
lanes instead (`hjax.inference.nuts.lanes`); this one is what the lanes are checked against.

Warmup and sampling are one `step` driven by the warmup `Schedule`: the NUTS kernel (and the
model's log density inside it) appears once in the compiled program, which cuts compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.mcmc import nuts
from blackjax.mcmc.hmc import HMCState
from blackjax.util import pytree_size
from jaxtyping import Array, Float, PRNGKeyArray

from hjax.inference.nuts import adaptation
from hjax.inference.nuts.adaptation import AdaptationState, Phase, StepInfo

__all__ = ["HMCState", "NUTSState", "init", "step"]

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
