"""Many datasets: stacking them, laying a chunk out over devices, running chunks in turn.

A chunk of datasets is split over `devices` (one shard each, run in parallel); each device
runs its share as `sequential` rows one after another (`lax.map`), a row vmapping `vectorized`
datasets together (their chains always vmapped). All chunks have the same layout (the last is
padded with copies of its final dataset, whose results are dropped), so the chunk program
compiles once. Chunks run one after another from the host, each chunk's results moving to
host memory as it finishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

__all__ = ["Layout", "as_batch", "map_chunks", "plan_layout"]


# Most datasets one device holds in one chunk: bounds memory for sweeps of thousands.
MAX_PER_DEVICE = 1024


class Layout(NamedTuple):
    """How one chunk of `size` datasets runs: `devices` x `sequential` x `vectorized`."""

    devices: int
    sequential: int
    vectorized: int

    @property
    def size(self) -> int:
        return self.devices * self.sequential * self.vectorized


def plan_layout(
    n_datasets: int,
    *,
    batch_size: int | None = None,
    vectorize: int | None = None,
    devices: int | None = None,
    backend: str | None = None,
    available: int | None = None,
) -> Layout:
    """Lay a chunk of datasets out over devices, `lax.map` and `vmap`, by backend.

    Vmapped NUTS runs in lockstep (every lane waits for the longest trajectory), so on CPU,
    where a wide vector buys little, each device runs its datasets one at a time
    (`vectorized=1`, chains still vmapped): on 2 cores, 16 fits of a 20-group model took
    4.9 s one at a time and 5.8 s two at a time, 5.7 s four at a time (one device). On an
    accelerator all of a device's datasets are vmapped together. Every local device of the
    backend gets a share (on CPU, one device per core: see `hj.use_cpu_cores`).

    Args:
        n_datasets: datasets to fit.
        batch_size: datasets per chunk; by default all of them, up to `MAX_PER_DEVICE` per
            device.
        vectorize: datasets vmapped together on a device; by default 1 on CPU and all of the
            device's share elsewhere.
        devices: local devices to shard over; by default all (never more than datasets).
        backend: "cpu", "gpu" or "tpu"; by default JAX's default backend.
        available: the backend's local devices; by default as JAX counts them.

    Example:
        >>> plan_layout(64, backend="cpu", available=2)
        Layout(devices=2, sequential=32, vectorized=1)
        >>> plan_layout(64, backend="gpu", available=1)
        Layout(devices=1, sequential=1, vectorized=64)
    """
    backend = backend or jax.default_backend()
    available = available or jax.local_device_count(backend)
    devices = min(devices or available, available)
    chunk = batch_size or min(n_datasets, MAX_PER_DEVICE * devices)
    devices = min(devices, chunk)
    share = math.ceil(chunk / devices)
    width = min(vectorize or (1 if backend == "cpu" else share), share)
    return Layout(devices, math.ceil(share / width), width)


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
