"""Many datasets: stacking them, the layout of a chunk, running chunks in turn.

A chunk of datasets is split over `devices` (one shard each, run in parallel); each device
runs its share on `lanes` lanes ("nuts" sampler: `LanesLayout`) or as `sequential` rows one
after another (`lax.map`), a row vmapping `vectorized` datasets together ("blackjax":
`Layout`); each sampler plans its own (`hjax.inference.run.samplers`). All chunks have the
same layout (the last is padded with copies of its final dataset, marked invalid, whose
results are dropped), so the chunk program compiles once. Chunks run one after another from
the host, each chunk's results moving to host memory as it finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from hjax.errors import DataError

__all__ = ["LanesLayout", "Layout", "as_batch", "chunk_positions", "map_chunks", "shared_columns"]


class Layout(NamedTuple):
    """How the BlackJAX sampler runs one chunk of `size` datasets: over `devices`, each
    running `sequential` rows of `vectorized` datasets, a row vmapped, one after another."""

    devices: int
    sequential: int
    vectorized: int

    @property
    def size(self) -> int:
        return self.devices * self.sequential * self.vectorized


class LanesLayout(NamedTuple):
    """How the lanes sampler runs one chunk of `size` datasets: over `devices`, each running
    the chains of its `per_device` datasets on `lanes` lanes."""

    devices: int
    per_device: int
    lanes: int

    @property
    def size(self) -> int:
        return self.devices * self.per_device


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
    raise DataError(
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
        >>> batch, batched = as_batch(model, [data, data | {"y": np.zeros(8)}])
        >>> batched, batch["y"].shape
        (True, (2, 8))
        >>> as_batch(model, data)[1]  # one dataset
        False
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
        raise DataError(
            "Expected data as a dict of arrays (one dataset, or a batch with a leading dataset "
            f"axis) or a non-empty list of such dicts; got {type(data).__name__}."
        )
    prepared = []
    for i, raw in enumerate(datasets):
        try:
            prepared.append(model.prepare(raw))
        except ValueError as error:
            raise DataError(f"Dataset {i}: {error}") from error
    shapes = [{k: v.shape for k, v in p.items()} for p in prepared]
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise DataError(
                f"Datasets must have the same shapes to be fitted together; dataset 0 has "
                f"{shapes[0]} but dataset {i} has {shape}. Pad ragged designs to one size."
            )
    return {k: np.stack([np.asarray(p[k]) for p in prepared]) for k in prepared[0]}, True


def shared_columns(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns of a stacked batch that are the same in every dataset (a study's design:
    group indices, predictors), once each: fitted once, not copied per dataset or chain.

    Example:
        >>> shared_columns({"g": np.array([[0, 1], [0, 1]]), "y": np.array([[1.0, 2], [3, 4]])})
        {'g': array([0, 1])}
    """
    return {k: np.asarray(v[0]) for k, v in batch.items() if np.all(v == v[:1])}


def _take(tree, index):
    return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def chunk_positions(n_real: int, width: int, shards: int = 1) -> np.ndarray:
    """Where a chunk's `n_real` datasets go among its `width` rows: dealt round-robin over
    `shards` equal shards (the devices), so that a short chunk (the last one, or the few fits a
    refit escalates) keeps every device busy instead of filling the first one's share.

    Example:
        >>> chunk_positions(3, width=8, shards=2).tolist()  # rows 0-3 on device 0, 4-7 on 1
        [0, 4, 1]
    """
    per = width // shards
    j = np.arange(n_real)
    return (j % shards) * per + j // shards


def map_chunks(
    fn: Callable[[Int[Array, " B"], Bool[Array, " B"], dict[str, Array]], object],
    data: dict[str, Array],
    batch_size: int,
    on_chunk: Callable[[int], None] | None = None,
    shards: int = 1,
):
    """Apply `fn(dataset_index, valid, data_chunk)` to fixed-width chunks; concatenate on the
    host.

    Args:
        fn: a compiled function of the chunk's dataset indices, which of them are real (a
            short chunk is padded with copies of its final dataset) and its data; returns a
            pytree of arrays whose leading axis is the chunk's datasets.
        data: arrays with a leading dataset axis (D).
        batch_size: chunk width; the last chunk (or the only one) is padded to it.
        on_chunk: called with the number of real datasets after each chunk (progress).
        shards: the equal parts `fn` splits a chunk into (devices): a short chunk's datasets
            are dealt over them (`chunk_positions`).

    Returns:
        `fn`'s pytree with leading axis D, as numpy arrays.

    Example:
        >>> batch = {"y": np.arange(10.0).reshape(5, 2)}  # 5 datasets
        >>> map_chunks(lambda index, valid, chunk: {"mean": chunk["y"].mean(-1)}, batch, 2)
        {'mean': array([0.5, 2.5, 4.5, 6.5, 8.5])}
    """
    n = next(iter(data.values())).shape[0]
    results = []
    for start in range(0, n, batch_size):
        real = np.arange(start, min(start + batch_size, n))
        positions = chunk_positions(len(real), batch_size, shards)
        index = np.full(batch_size, real[-1])
        index[positions] = real
        valid = np.zeros(batch_size, bool)
        valid[positions] = True
        out = fn(jnp.asarray(index, jnp.int32), jnp.asarray(valid), _take(data, index))
        results.append(_take(out, positions))
        if on_chunk is not None:
            on_chunk(len(real))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *results)
