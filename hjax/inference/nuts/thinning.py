"""Thinning: the output slot of each iteration of a chain, and the statistics of a kept draw
that stands for several iterations.

A chain's output holds its saved warmup (the last `saved_warmup` warmup iterations, one slot
each), then its draws: the iterations after warmup in blocks of `thin`, one slot per block,
each written by every iteration of its block, so that the last one's draw is kept. Its
statistics fold in every iteration of the block (`fold`): a divergence is never thinned away.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Int

from hjax.inference.nuts.adaptation import StepInfo

__all__ = ["fold", "slot"]


def slot(iteration: Int[Array, "..."], warmup: Int[Array, ""], saved_warmup: int,
         thin: Int[Array, ""]) -> tuple[Int[Array, "..."], Int[Array, "..."]]:
    """The output slot of iteration `iteration` (negative: unsaved warmup, kept nowhere) and
    its index within the slot's block.

    Example:
        >>> slots, index = slot(jnp.arange(8), warmup=2, saved_warmup=0, thin=3)
        >>> slots.tolist(), index.tolist()
        ([-2, -1, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 2, 0, 1, 2])
    """
    after = iteration - warmup
    sampling = after >= 0
    return (jnp.where(sampling, saved_warmup + after // thin, saved_warmup + after),
            jnp.where(sampling, after % thin, 0))


def fold(kept: StepInfo, new: StepInfo, index: Int[Array, "..."]) -> StepInfo:
    """The statistics of a slot after iteration `index` of its block (0: the first, which
    replaces what the slot held): `lp`, `energy` and `step_size` of the last iteration,
    `diverging` if any diverged (`nan_log_density` if any met one), the deepest tree, the
    leapfrog steps summed and the mean acceptance rate. With one iteration per slot, `new`
    exactly.

    Example:
        >>> a = StepInfo(*(jnp.asarray(v) for v in (-1.0, False, 2, 3, 0.5, 0.6, 0.1, False)))
        >>> b = StepInfo(*(jnp.asarray(v) for v in (-2.0, True, 1, 1, 0.7, 1.0, 0.1, False)))
        >>> both = fold(a, b, jnp.asarray(1))
        >>> bool(both.diverging), int(both.tree_depth), int(both.n_steps)
        (True, 2, 4)
        >>> round(float(both.acceptance_rate), 6)
        0.8
    """
    first = index == 0
    return new._replace(
        diverging=new.diverging | (~first & kept.diverging),
        nan_log_density=new.nan_log_density | (~first & kept.nan_log_density),
        tree_depth=jnp.where(first, new.tree_depth, jnp.maximum(kept.tree_depth,
                                                                new.tree_depth)),
        n_steps=new.n_steps + jnp.where(first, 0, kept.n_steps),
        acceptance_rate=jnp.where(
            first, new.acceptance_rate,
            kept.acceptance_rate + (new.acceptance_rate - kept.acceptance_rate) / (index + 1)))
