"""A progress bar for compiled sampling loops.

The loop over iterations is a `lax.scan` outside the vmaps over chains and datasets, so one
unbatched `jax.debug.callback` per reporting interval advances a host-side tqdm bar, however
many chains and datasets run in lockstep. The compiled program is cached across calls, so the
callback finds the bar of the current call through `_ACTIVE` rather than closing over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import jax
import jax.numpy as jnp
from jaxtyping import Array, Int
from tqdm.auto import tqdm

__all__ = ["progress_bar", "report", "report_count"]

_ACTIVE: list[tqdm] = []


def _advance(n) -> None:
    if _ACTIVE:
        _ACTIVE[-1].update(int(n))


def report(iteration: Int[Array, ""], total: int | Int[Array, ""]) -> None:
    """Inside a traced loop: advance the active bar about 100 times over `total` iterations.

    Example:
        >>> def body(carry, t):
        ...     report(t, total=1000)
        ...     return carry, None
        >>> with progress_bar(1000, "demo", enabled=True) as bar:
        ...     _ = jax.lax.scan(body, None, jnp.arange(1000))
        ...     jax.effects_barrier()
        >>> bar.n
        1000
    """
    every = jnp.maximum(1, total // 100)
    done = iteration + 1
    last = total % every
    step = jnp.where(done == total, jnp.where(last == 0, every, last), every)
    jax.lax.cond((done % every == 0) | (done == total),
                 lambda: jax.debug.callback(_advance, step), lambda: None)


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[tqdm | None]:
    """Show a bar of `total` iterations while the block runs (nothing when not `enabled`).

    Example:
        >>> with progress_bar(2000, "sampling", enabled=True) as bar:
        ...     _ = bar.update(500)  # as the compiled loop's callbacks do
        >>> bar.n
        500
        >>> with progress_bar(2000, "sampling", enabled=False) as bar:
        ...     print(bar)
        None
    """
    if not enabled:
        yield None
        return
    bar = tqdm(total=total, desc=desc, unit="it")
    _ACTIVE.append(bar)
    try:
        yield bar
    finally:
        _ACTIVE.remove(bar)
        bar.close()


def report_count(n: Int[Array, ""]) -> None:
    """Inside a traced loop: advance the active bar by `n` (the caller decides how often).

    Example:
        >>> with progress_bar(8, "demo", enabled=True) as bar:
        ...     jax.jit(lambda ended: report_count(jnp.sum(ended)))(jnp.ones(8, jnp.int32))
        ...     jax.effects_barrier()
        >>> bar.n
        8
    """
    jax.debug.callback(_advance, n)
