"""Starting points: draws retried until the density and gradient are finite.

The default search tries Stan's uniform(-2, 2) draws, then prior draws, then prior draws moved
inside the bounds the data put on the likelihood (`move_inside`), so a start is found
whenever the model has one near its prior, e.g. a hierarchical DDM whose non-decision times
must stay below each participant's fastest RT. `init_position` runs under jit and vmap (a
`while_loop` per chain). When it gives up,
`explain_nonfinite` runs on the host and names the parameters to blame, so the user is told
what to fix rather than handed NaN draws.

An initialisation is an object (`FitSettings.init`), registered under its YAML name: it says
which stages search the starts (`AbstractInit.stages`) and whether a warm start follows
(`hjax.inference.run.warmstart`). Its float options (the radius) are runtime values of the
compiled program: changing them compiles nothing.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Annotated, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray
from pydantic import Field

from hjax.settings import WARMUP, Number, option, register

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["AbstractInit", "InitPrior", "InitResult", "InitUniform", "Stage",
           "explain_nonfinite", "init_position", "move_inside", "prior_stages", "uniform_stages"]

UNIFORM_TRIES, PRIOR_TRIES, BOUNDED_TRIES = 100, 100, 20  # start draws per stage
RADIUS = 2.0  # Stan's: uniform(-2, 2) in unconstrained space
Radius = Annotated[Number, Field(gt=0)]


class WarmStart(NamedTuple):
    """Chain starting points (leading chain axis), inverse mass matrix (d,), and the cost."""

    positions: dict[str, Array]
    inverse_mass_matrix: Float[Array, " d"]
    grad_evals: Int[Array, ""]


class InitResult(NamedTuple):
    """The chosen position with its log density and gradient, the draws it took, and whether
    it is usable (density and gradient finite)."""

    position: dict[str, Array]
    logdensity: Float[Array, ""]
    grad: dict[str, Array]
    tries: Int[Array, ""]
    ok: Bool[Array, ""]


def _all_finite(tree) -> Bool[Array, ""]:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class Stage(NamedTuple):
    """A way to draw starting points (a position from a key), how many draws to try, and
    optionally a violation of the data's bounds (0 inside) that each draw descends before it
    is tried (`move_inside`)."""

    draw: Callable[[PRNGKeyArray], dict[str, Array]]
    tries: int
    violation: Callable[[dict[str, Array]], Array] | None = None


def prior_stages(model: Model, data: dict[str, Array]) -> list[Stage]:
    """Prior draws, then (when the likelihood declares bounds the data put on it) prior draws
    moved inside those bounds."""
    def prior(key):
        # Prior draws respect the model's scales, e.g. a non-decision time below the RTs,
        # where uniform(-2, 2) in unconstrained space can put exp(2) = 7 s.
        return model.unconstrain(model.sample_prior(key, data))

    stages = [Stage(prior, PRIOR_TRIES)]
    if model.likelihood.data_bounds():
        # The same `prior` as the stage before: a draw several stages share is traced once.
        stages.append(Stage(prior, BOUNDED_TRIES, partial(model.bound_violation, data=data)))
    return stages


def uniform_stages(model: Model, data: dict[str, Array], radius) -> list[Stage]:
    """Stan's uniform(-radius, radius) draws, then `prior_stages`."""
    return [Stage(partial(model.init, radius=radius), UNIFORM_TRIES),
            *prior_stages(model, data)]


class AbstractInit(eqx.Module):
    """How each chain's starting point is found (abstract). A subclass says which stages
    search the starts and, optionally, fits a warm start from them; `register("init")`
    gives it a YAML name."""

    name: eqx.AbstractClassVar[str]
    default_warmup: ClassVar[int] = WARMUP  # the warmup when `FitSettings.warmup` is None

    @abc.abstractmethod
    def stages(self, model: Model, data: dict[str, Array]) -> list[Stage]:
        """Where starting points are drawn from, in turn (`init_position`)."""

    def warm_start(self, key: PRNGKeyArray, logdensity_fn, position: dict[str, Array],
                   chains: int) -> WarmStart | None:
        """Starts and an inverse mass matrix that replace the stages' (None: no warm start)."""
        return None


@register("init")
class InitUniform(AbstractInit):
    """Stan's starts: uniform(-radius, radius) in unconstrained space, then prior draws,
    each retried until the density and gradient are finite (numpyro's `init_to_uniform`).

    Example:
        >>> hj.InitUniform(radius=1.0)
        InitUniform(radius=1.0)
    """

    radius: float = eqx.field(default=RADIUS, converter=option("radius", Radius))
    name: ClassVar[str] = "uniform"

    def stages(self, model, data):
        return uniform_stages(model, data, self.radius)


@register("init")
class InitPrior(AbstractInit):
    """Prior draws, retried until the density and gradient are finite: for models whose
    parameters the uniform box puts far out of scale (a non-decision time of exp(2) s).

    Example:
        >>> hj.FitSettings(init="prior").init
        InitPrior()
    """

    name: ClassVar[str] = "prior"

    def stages(self, model, data):
        return prior_stages(model, data)


def init_position(
    key: PRNGKeyArray,
    draw: Callable[[PRNGKeyArray], dict[str, Array]] | Sequence[Stage],
    logdensity_fn: Callable[[dict[str, Array]], Array],
    *,
    max_tries: int = 100,
) -> InitResult:
    """Draw starting points until the log density and its gradient are finite.

    Args:
        key: a PRNG key; try i uses `fold_in(key, i)`.
        draw: a random position from a key, e.g. `lambda k: model.init(k, radius=2.0)`, tried
            `max_tries` times; or stages tried in turn, each `Stage(draw, tries)` times (e.g.
            uniform starts, then prior draws, then prior draws moved inside the data's
            bounds: `Stage(draw, tries, violation)`).
        logdensity_fn: log density of one position.
        max_tries: how many draws before giving up (the result then has `ok=False`).

    Example:
        >>> prepared = model.prepare(data)
        >>> result = init_position(jax.random.key(0), model.init,
        ...                        lambda p: model.logdensity(p, prepared))
        >>> bool(result.ok), int(result.tries)
        (True, 1)
    """
    stages = [Stage(draw, max_tries)] if callable(draw) else list(draw)
    ends = np.cumsum([stage.tries for stage in stages])
    # A draw several stages share (prior draws, then prior draws moved inside) is traced once
    # (each trace of it costs compile time: scripts/bench/RESULTS.md).
    draws = list(dict.fromkeys(stage.draw for stage in stages))
    branches = np.asarray([draws.index(stage.draw) for stage in stages])

    def cond(carry):
        i, *_, ok = carry
        return ~ok & (i < ends[-1])

    def body(carry):
        i = carry[0]
        try_key = jax.random.fold_in(key, i)
        stage = jnp.sum(i >= jnp.asarray(ends[:-1]))
        position = (draws[0](try_key) if len(draws) == 1 else
                    jax.lax.switch(jnp.asarray(branches)[stage], draws, try_key))
        # Unfused from the density: XLA otherwise copies the draw's Threefry hashes into the
        # density's and gradient's fusions, which costs compile time (scripts/bench/RESULTS.md;
        # the barrier keeps the same starting positions).
        position = jax.lax.optimization_barrier(position)
        # Under vmap a `switch` computes every branch: the descent runs here, only on the tries
        # of its stage (as a branch, it ran on every try of every chain while one chain was
        # still searching: the hierarchical DDM's starts, scripts/bench/RESULTS.md).
        for index, stage_ in enumerate(stages):
            if stage_.violation is not None:
                position = move_inside(position, stage_.violation, active=stage == index)
        value, grad = jax.value_and_grad(logdensity_fn)(position)
        return i + 1, position, value, grad, jnp.isfinite(value) & _all_finite(grad)

    # Only the loop calls the density, so it is traced once.
    shapes = jax.eval_shape(draws[0], key)
    blank = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    value = jnp.zeros((), jax.tree.leaves(shapes)[0].dtype)
    start = (jnp.zeros((), jnp.int32), blank, value, blank, jnp.zeros((), bool))
    tries, position, value, grad, ok = jax.lax.while_loop(cond, body, start)
    return InitResult(position, value, grad, tries, ok)


def move_inside(
    position: dict[str, Array],
    violation_fn: Callable[[dict[str, Array]], Array],
    *,
    active: Bool[Array, ""] | bool = True,
    steps: int = 200,
    learning_rate: float = 0.05,
) -> dict[str, Array]:
    """`position` moved inside the bounds the data impose: Adam (optax) descends the squared
    violation (`Model.bound_violation`) until it is 0, at most `steps` steps (none unless
    `active`). It reaches a start where uniform and prior draws keep breaking a bound
    somewhere, e.g. a participant's non-decision time above one of that participant's RTs.

    Example:
        >>> moved = move_inside({"t0": jnp.array(2.0)}, lambda p: jax.nn.relu(p["t0"] - 0.3) ** 2)
        >>> bool(moved["t0"] <= 0.3)
        True
    """
    optimizer = optax.adam(learning_rate)

    def cond(carry):
        i, _, _, violation = carry
        return active & (violation > 0) & (i < steps)

    def body(carry):
        i, position, state, _ = carry
        violation, grad = jax.value_and_grad(violation_fn)(position)
        updates, state = optimizer.update(grad, state, position)
        position = optax.apply_updates(position, updates)
        return i + 1, position, state, violation_fn(position)

    start = (jnp.zeros((), jnp.int32), position, optimizer.init(position),
             violation_fn(position))
    return jax.lax.while_loop(cond, body, start)[1]


def explain_nonfinite(
    position: dict[str, Array],
    logdensity_fn: Callable[[dict[str, Array]], Array],
) -> str:
    """Say which parameters make the log density or its gradient non-finite at `position`.

    A parameter is blamed for the density when moving it alone to 0 (the centre of the
    initial box) makes the density finite, and for the gradient when its gradient entries are
    non-finite. Runs eagerly on the host; meant for error messages.

    Example:
        >>> def logdensity_fn(p):
        ...     return jax.scipy.stats.norm.logpdf(1.0, p["mu"], jnp.exp(p["log_sigma"]))
        >>> explain_nonfinite({"mu": jnp.array(0.5), "log_sigma": jnp.array(-200.0)},
        ...                   logdensity_fn)
        "log density is nan; it becomes finite when 'log_sigma' (now -200.0) is moved to 0"
    """
    value, grad = jax.value_and_grad(logdensity_fn)(position)
    value = float(value)
    shown = {name: np.round(np.asarray(v), 3).tolist() for name, v in position.items()}
    if not np.isfinite(value):
        culprits = []
        for name in position:
            moved = {**position, name: jnp.zeros_like(position[name])}
            if np.isfinite(float(logdensity_fn(moved))):
                culprits.append(name)
        if culprits:
            where = ", ".join(f"'{n}' (now {shown[n]})" for n in culprits)
            return f"log density is {value}; it becomes finite when {where} is moved to 0"
        zero = {name: jnp.zeros_like(v) for name, v in position.items()}
        if not np.isfinite(float(logdensity_fn(zero))):
            return (f"log density is {value}, even with every parameter at 0: check the data "
                    "(e.g. observations outside the likelihood's support) and the priors")
        return (f"log density is {value} at {shown}; no single parameter is to blame (they "
                "interact)")
    bad = [name for name, g in grad.items() if not np.all(np.isfinite(np.asarray(g)))]
    where = ", ".join(f"'{n}' (now {shown[n]})" for n in bad)
    return f"log density is finite ({value:.4g}) but its gradient is not for {where}"
