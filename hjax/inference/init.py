"""Starting points: Stan's uniform(-2, 2) draws, retried until the density and gradient are finite.

`init_position` runs under jit and vmap (a `while_loop` per chain). When it gives up,
`explain_nonfinite` runs on the host and names the parameters to blame, so the user is told
what to fix rather than handed NaN draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

__all__ = ["InitResult", "explain_nonfinite", "init_position"]


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


def init_position(
    key: PRNGKeyArray,
    draw: Callable[[PRNGKeyArray], dict[str, Array]],
    logdensity_fn: Callable[[dict[str, Array]], Array],
    *,
    max_tries: int = 100,
) -> InitResult:
    """Draw starting points until the log density and its gradient are finite.

    Args:
        key: a PRNG key; try i uses `fold_in(key, i)`.
        draw: a random position from a key, e.g. `lambda k: model.init(k, radius=2.0)`.
        logdensity_fn: log density of one position.
        max_tries: how many draws before giving up (the result then has `ok=False`).

    Example:
        >>> result = init_position(key, model.init, lambda p: model.logdensity(p, data))
        >>> bool(result.ok)
        True
    """
    def cond(carry):
        i, *_, ok = carry
        return ~ok & (i < max_tries)

    def body(carry):
        i = carry[0]
        position = draw(jax.random.fold_in(key, i))
        value, grad = jax.value_and_grad(logdensity_fn)(position)
        return i + 1, position, value, grad, jnp.isfinite(value) & _all_finite(grad)

    # Only the loop calls the density, so it is traced once.
    shapes = jax.eval_shape(draw, key)
    blank = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    value = jnp.zeros((), jax.tree.leaves(shapes)[0].dtype)
    start = (jnp.zeros((), jnp.int32), blank, value, blank, jnp.zeros((), bool))
    tries, position, value, grad, ok = jax.lax.while_loop(cond, body, start)
    return InitResult(position, value, grad, tries, ok)


def explain_nonfinite(
    position: dict[str, Array],
    logdensity_fn: Callable[[dict[str, Array]], Array],
) -> str:
    """Say which parameters make the log density or its gradient non-finite at `position`.

    A parameter is blamed for the density when moving it alone to 0 (the centre of the
    initial box) makes the density finite, and for the gradient when its gradient entries are
    non-finite. Runs eagerly on the host; meant for error messages.

    Example:
        >>> explain_nonfinite({"sigma": jnp.array(-50.0)}, logdensity_fn)
        "log density is -inf; it becomes finite when 'sigma' (now -50) is moved to 0"
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
