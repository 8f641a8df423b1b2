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
from jaxtyping import Array

from hjax.inference.chunks import program_signature

__all__ = ["fits_one_kernel"]

# StableHLO operations that keep XLA:CPU from compiling a loop into one kernel.
_BLOCKING = re.compile(
    r"stablehlo\.(scatter|dot|dot_general|convolution|sort|fft|custom_call)\b")
_CHECKED: dict[tuple, bool] = {}


def fits_one_kernel(model, dataset: dict[str, Array], dense_mass: bool = False) -> bool:
    """Whether the lanes loop of `model` (on one lane) needs none of the operations that keep
    XLA:CPU from compiling it into one kernel: its log density, gradient and constraining
    transform on `dataset` (one dataset's arrays) are checked; a dense mass matrix needs
    matrix products.

    Example:
        >>> from hjax.model.regular_index import with_regular_indices
        >>> prepared = model.prepare(data)
        >>> fits_one_kernel(model, prepared)  # theta[school] is a gather
        False
        >>> batch = {k: np.asarray(v)[None] for k, v in prepared.items()}
        >>> marked = with_regular_indices(model, batch)  # row i is school i: no gather
        >>> fits_one_kernel(marked, prepared), fits_one_kernel(marked, prepared, dense_mass=True)
        (True, False)
    """
    if dense_mass:
        return False
    dataset = {k: jnp.asarray(v) for k, v in dataset.items()}
    # Checked once per model structure and data shapes, as a program is compiled once.
    signature = program_signature((model, dataset))
    if signature not in _CHECKED:
        def program(position, dataset):
            return (jax.value_and_grad(model.logdensity)(position, dataset),
                    model.constrain(position, dataset))

        text = jax.jit(program).lower(model.init(jax.random.key(0)), dataset).as_text()
        _CHECKED[signature] = _BLOCKING.search(text) is None
    return _CHECKED[signature]
