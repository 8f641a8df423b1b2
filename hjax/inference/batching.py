"""Many datasets: stacking them, and running them in fixed-size chunks one after another.

All chunks have the same width (the last is padded with copies of its final dataset, whose
results are dropped), so the chunk program compiles once. Chunks run sequentially from the
host: device memory holds one chunk's draws at a time, each chunk's results move to host
memory as it finishes, and a progress bar can count chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

__all__ = ["as_batch", "default_batch_size", "map_chunks"]


# Widest chunk vmapped by default on an accelerator: one vmap keeps the device busy, and this
# bounds memory for sweeps of thousands of datasets.
ACCELERATOR_MAX_BATCH = 1024
# On CPU, datasets run one after another (their chains still vmapped). Vmapped NUTS runs in
# lockstep, every lane waiting for the longest trajectory, and a CPU gains little from wide
# vectors: on 2 cores, 64 prior-simulated fits of a 20-group model took 39 s one at a time,
# 58 s in chunks of 4 and 143 s in chunks of 8 (scripts/bench_sample.py --batch-sizes).
CPU_BATCH = 1


def default_batch_size(n_datasets: int, backend: str | None = None) -> int:
    """How many datasets to vmap in one chunk, by backend.

    On CPU, `CPU_BATCH` datasets per chunk, chunks run in sequence; on GPU/TPU, all datasets
    in one chunk up to `ACCELERATOR_MAX_BATCH`.

    Example:
        >>> default_batch_size(64, "cpu"), default_batch_size(64, "gpu")
        (1, 64)
    """
    backend = backend or jax.default_backend()
    width = CPU_BATCH if backend == "cpu" else ACCELERATOR_MAX_BATCH
    return max(1, min(n_datasets, width))


def _is_batched(arrays: Mapping[str, np.ndarray]) -> bool:
    # Scalars (e.g. a count J next to the columns) are never per-observation data: ignore them.
    arrays = {k: v for k, v in arrays.items() if v.ndim > 0}
    ndims = {v.ndim for v in arrays.values()}
    if ndims == {1}:
        return False
    leading = {v.shape[0] for v in arrays.values() if v.ndim > 0}
    if ndims == {2} and len(leading) == 1:
        return True
    shapes = {k: v.shape for k, v in arrays.items()}
    raise ValueError(
        "Expected one dataset (every array 1-D) or a batch (every array 2-D, the first axis "
        f"indexing datasets, the same length for all); got shapes {shapes}."
    )


def as_batch(model, data: Mapping | Sequence[Mapping]) -> tuple[dict[str, np.ndarray], bool]:
    """Validate data with `model.prepare` and stack it along a leading dataset axis.

    Accepts one dataset (raw or prepared: a dict of 1-D arrays), a dict whose arrays all have
    a leading dataset axis (e.g. `jax.vmap(model.simulate)` output), or a list of same-shaped
    datasets. Each dataset is checked on the host, so bad data fail before compiling.

    Returns:
        (batch, batched): the stacked prepared data (host arrays, so chunks are cut on the
        host and only one chunk at a time goes to the device), and whether the input was a
        batch.

    Example:
        >>> batch, batched = as_batch(model, [raw_a, raw_b])
        >>> batched, batch["y"].shape
        (True, (2, 8))
    """
    if isinstance(data, Mapping):
        arrays = {k: np.asarray(v) for k, v in data.items()}
        if not _is_batched(arrays):
            prepared = model.prepare(data)
            return {k: np.asarray(v)[None] for k, v in prepared.items()}, False
        n = next(v for v in arrays.values() if v.ndim > 0).shape[0]
        datasets = [{k: v[i] if v.ndim else v for k, v in arrays.items()} for i in range(n)]
    elif isinstance(data, Sequence) and data and all(isinstance(d, Mapping) for d in data):
        datasets = list(data)
    else:
        raise TypeError(
            "Expected data as a dict of arrays (one dataset, or a batch with a leading dataset "
            f"axis) or a non-empty list of such dicts; got {type(data).__name__}."
        )
    prepared = []
    for i, raw in enumerate(datasets):
        try:
            prepared.append(model.prepare(raw))
        except ValueError as error:
            raise ValueError(f"Dataset {i}: {error}") from error
    shapes = [{k: v.shape for k, v in p.items()} for p in prepared]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                f"Datasets must have the same shapes to be fitted together; dataset 0 has "
                f"{shapes[0]} but dataset {i} has {shape}. Pad ragged designs to one size."
            )
    return {k: np.stack([np.asarray(p[k]) for p in prepared]) for k in prepared[0]}, True


def _take(tree, index):
    return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def map_chunks(
    fn: Callable[[Int[Array, " B"], dict[str, Array]], object],
    data: dict[str, Array],
    batch_size: int,
    on_chunk: Callable[[int], None] | None = None,
):
    """Apply `fn(dataset_index, data_chunk)` to fixed-width chunks; concatenate on the host.

    Args:
        fn: a compiled function of the chunk's dataset indices and data; returns a pytree of
            arrays whose leading axis is the chunk's datasets.
        data: arrays with a leading dataset axis (D).
        batch_size: chunk width; the last chunk (or the only one) is padded to it.
        on_chunk: called with the number of real datasets after each chunk (progress).

    Returns:
        `fn`'s pytree with leading axis D, as numpy arrays.

    Example:
        >>> out = map_chunks(lambda idx, d: {"mean": d["y"].mean(-1)}, batch, batch_size=4)
    """
    n = next(iter(data.values())).shape[0]
    results = []
    for start in range(0, n, batch_size):
        real = np.arange(start, min(start + batch_size, n))
        index = np.concatenate([real, np.full(batch_size - len(real), real[-1])])
        out = fn(jnp.asarray(index, jnp.int32), _take(data, index))
        results.append(_take(out, slice(len(real))))
        if on_chunk is not None:
            on_chunk(len(real))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *results)
