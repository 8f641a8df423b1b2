"""Whether XLA:CPU can compile a model's lanes NUTS loop into one kernel.

XLA:CPU runs a program as a sequence of kernels ("thunks") and pays a dispatch for each, about
40 such kernels per leapfrog step of the lanes loop. Its small-while-loop hoisting pass
compiles a whole while loop into one kernel instead, but only a loop without scatter, dot,
convolution, sort, FFT or custom-call operations. The lanes loop itself is free of them when
it runs a single lane (with more lanes, each lane writing its own checkpoint row and output
row is a scatter), so it hoists whenever the model's gradient and constraining transform are
free of them too: levels whose index column is a regular pattern of their groups
(`hjax.model.regular_index`: no gather, whose gradient is a scatter-add), no matrix
products, no linear algebra calls. Then one lane per CPU device is
faster than several, on the reduced 20-group model 1.8 times (`scripts/bench`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import jaxlib
from jaxtyping import Array

from hjax.inference.run.chunks import program_signature

__all__ = ["fits_one_kernel", "hoisting_rule"]

# StableHLO operations that keep XLA:CPU from compiling a loop into one kernel, by the first
# jaxlib that behaves so (releases after the last entry are taken to behave as it does).
_BLOCKING = {
    (0, 12, 0): r"scatter|dot|dot_general|convolution|sort|fft|custom_call",
    (0, 12, 1): r"dot|dot_general|convolution|sort|fft|custom_call",
}
_CHECKED: dict[tuple, bool] = {}


def hoisting_rule(version: str = jaxlib.__version__) -> re.Pattern | None:
    """The StableHLO operations that keep jaxlib `version`'s XLA:CPU from compiling a while
    loop into one kernel, or None where it compiles none of hjax's loops so.

    Example:
        >>> scatter = "stablehlo.scatter"
        >>> hoisting_rule("0.11.2") is None, bool(hoisting_rule("0.12.0").search(scatter))
        (True, True)
        >>> bool(hoisting_rule("0.12.1").search(scatter))
        False
    """
    release = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    known = [first for first in _BLOCKING if first <= release]
    if not known:
        return None
    return re.compile(rf"stablehlo\.({_BLOCKING[max(known)]})\b")


def fits_one_kernel(model, dataset: dict[str, Array], dense_mass: bool = False) -> bool:
    """Whether the lanes loop of `model` (on one lane) needs none of the operations that keep
    the installed jaxlib's XLA:CPU from compiling it into one kernel (`hoisting_rule`): its
    log density, gradient and constraining transform on `dataset` (one dataset's arrays) are
    checked; a dense mass matrix needs matrix products.

    Example:
        >>> from hjax.model.regular_index import with_regular_indices
        >>> prepared = model.prepare(data)
        >>> batch = {k: np.asarray(v)[None] for k, v in prepared.items()}
        >>> marked = with_regular_indices(model, batch)  # row i is school i: no gather
        >>> fits_one_kernel(marked, prepared), fits_one_kernel(marked, prepared, dense_mass=True)
        (True, False)
    """
    rule = hoisting_rule()
    if dense_mass or rule is None:
        return False
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    # Checked once per model structure and data shapes, as a program is compiled once.
    signature = program_signature((model, dataset))
    if signature not in _CHECKED:
        def program(position, dataset):
            return (jax.value_and_grad(model.logdensity)(position, dataset),
                    model.constrain(position, dataset))

        text = jax.jit(program).lower(model.init(jax.random.key(0)), dataset).as_text()
        _CHECKED[signature] = rule.search(text) is None
    return _CHECKED[signature]
