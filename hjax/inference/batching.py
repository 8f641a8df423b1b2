"""Many datasets: stacking them, laying a chunk out over devices, running chunks in turn.

A chunk of datasets is split over `devices` (one shard each, run in parallel); each device
runs its share on `lanes` lanes ("nuts" sampler) or as `sequential` rows one after another
(`lax.map`), a row vmapping `vectorized` datasets together ("blackjax"). All chunks have the
same layout (the last is padded with copies of its final dataset, marked invalid, whose
results are dropped), so the chunk program compiles once. Chunks run one after another from
the host, each chunk's results moving to host memory as it finishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

__all__ = ["Layout", "as_batch", "map_chunks", "plan_layout", "shared_columns"]


# Most datasets one device holds in one chunk: bounds memory for sweeps of thousands.
MAX_PER_DEVICE = 1024


class Layout(NamedTuple):
    """How one chunk of `size` datasets runs: over `devices`, each running `sequential` rows
    of `vectorized` datasets; the "nuts" sampler runs a device's share (`sequential` = 1) on
    `lanes` lanes."""

    devices: int
    sequential: int
    vectorized: int
    lanes: int = 0

    @property
    def size(self) -> int:
        return self.devices * self.sequential * self.vectorized


# Chains the "nuts" sampler advances together on a CPU device (see `plan_layout`).
CPU_LANES = 4


def plan_layout(
    n_datasets: int,
    *,
    chains: int = 4,
    sampler: str = "nuts",
    batch_size: int | None = None,
    vectorize: int | None = None,
    lanes: int | None = None,
    devices: int | None = None,
    backend: str | None = None,
    available: int | None = None,
) -> Layout:
    """Lay a chunk of datasets out over devices, and on each device over lanes or vmaps.

    Every local device of the backend gets a contiguous share (on CPU, one device per core:
    see `hj.use_cpu_cores`). The "nuts" sampler runs a device's dataset x chain jobs on
    `lanes` lanes that never wait for each other: all of them at once on an accelerator, and
    `CPU_LANES` on a CPU, where each lane costs compute but an iteration's fixed cost is
    shared. The "blackjax" sampler vmaps NUTS, which runs in lockstep (every lane waits for
    the longest trajectory), so on CPU each device fits its datasets one at a time
    (`vectorized=1`, chains vmapped) and on an accelerator all at once.

    Args:
        n_datasets: datasets to fit.
        chains: chains per dataset.
        sampler: "nuts" or "blackjax".
        batch_size: datasets per chunk; by default all of them, up to `MAX_PER_DEVICE` per
            device.
        vectorize: "blackjax": datasets vmapped together on a device; by default 1 on CPU
            and all of the device's share elsewhere.
        lanes: "nuts": chains advanced together on a device; by default `CPU_LANES` on CPU
            (whatever the chunk, so that the draws do not depend on it) and all of the
            device's chains elsewhere.
        devices: local devices to shard over; by default all (never more than datasets).
        backend: "cpu", "gpu" or "tpu"; by default JAX's default backend.
        available: the backend's local devices; by default as JAX counts them.

    Example:
        >>> plan_layout(64, backend="cpu", available=2)
        Layout(devices=2, sequential=1, vectorized=32, lanes=4)
        >>> plan_layout(64, sampler="blackjax", backend="gpu", available=1)
        Layout(devices=1, sequential=1, vectorized=64, lanes=0)
    """
    backend = backend or jax.default_backend()
    available = available or jax.local_device_count(backend)
    devices = min(devices or available, available)
    chunk = batch_size or min(n_datasets, MAX_PER_DEVICE * devices)
    devices = min(devices, chunk)
    share = math.ceil(chunk / devices)
    if sampler == "nuts":
        return Layout(devices, 1, share,
                      lanes or (CPU_LANES if backend == "cpu" else share * chains))
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


def map_chunks(
    fn: Callable[[Int[Array, " B"], Bool[Array, " B"], dict[str, Array]], object],
    data: dict[str, Array],
    batch_size: int,
    on_chunk: Callable[[int], None] | None = None,
):
    """Apply `fn(dataset_index, valid, data_chunk)` to fixed-width chunks; concatenate on the
    host.

    Args:
        fn: a compiled function of the chunk's dataset indices, which of them are real (the
            last chunk is padded with copies of its final dataset) and its data; returns a
            pytree of arrays whose leading axis is the chunk's datasets.
        data: arrays with a leading dataset axis (D).
        batch_size: chunk width; the last chunk (or the only one) is padded to it.
        on_chunk: called with the number of real datasets after each chunk (progress).

    Returns:
        `fn`'s pytree with leading axis D, as numpy arrays.

    Example:
        >>> out = map_chunks(lambda idx, ok, d: {"mean": d["y"].mean(-1)}, batch, batch_size=4)
    """
    n = next(iter(data.values())).shape[0]
    results = []
    for start in range(0, n, batch_size):
        real = np.arange(start, min(start + batch_size, n))
        index = np.concatenate([real, np.full(batch_size - len(real), real[-1])])
        valid = np.arange(batch_size) < len(real)
        out = fn(jnp.asarray(index, jnp.int32), jnp.asarray(valid), _take(data, index))
        results.append(_take(out, slice(len(real))))
        if on_chunk is not None:
            on_chunk(len(real))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *results)
