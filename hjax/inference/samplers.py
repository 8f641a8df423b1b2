"""The samplers `hj.sample` can run, each owning its layout, its program and its bookkeeping.

A `Sampler` says how a chunk of datasets is laid out over a device (`layout`), fits a
device's share (`fit_device`), says how many iterations its progress bar counts
(`progress_total`) and what it records about itself (`attrs`). Both make the same NUTS
transitions from the same keys and starts:

- `LanesNUTS` (`sampler="nuts"`, the default): a device's (dataset, chain) pairs are jobs on
  a fixed set of lanes that each take one leapfrog step per loop iteration, so no chain waits
  for another (`hjax.inference.lanes`).
- `VmappedNUTS` (`sampler="blackjax"`, the reference): BlackJAX's NUTS kernel vmapped over
  chains, then datasets (`hjax.inference.blackjax_nuts`); every lane waits for the longest
  trajectory of its row.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax

from hjax.inference import blackjax_nuts, lanes
from hjax.inference.batching import Layout
from hjax.inference.chunks import ChunkOutput
from hjax.inference.one_kernel import fits_one_kernel
from hjax.settings import FitSettings

__all__ = ["CPU_LANES", "MAX_PER_DEVICE", "LanesNUTS", "Sampler", "VmappedNUTS", "sampler_for"]

MAX_PER_DEVICE = 1024  # most datasets one device holds in one chunk: bounds memory
CPU_LANES = 4  # chains the lanes sampler advances together on a CPU device


def _shares(n_datasets: int, batch_size: int | None, devices: int | None,
            available: int) -> tuple[int, int]:
    """(devices used, datasets per device) of one chunk: every device gets a contiguous
    share; a chunk is all datasets up to `MAX_PER_DEVICE` per device unless `batch_size`."""
    devices = min(devices or available, available)
    chunk = batch_size or min(n_datasets, MAX_PER_DEVICE * devices)
    devices = min(devices, chunk)
    return devices, math.ceil(chunk / devices)


class Sampler(eqx.Module):
    """How one device fits its share of a chunk of datasets (abstract)."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def layout(self, n_datasets: int, *, chains: int, batch_size: int | None = None,
               devices: int | None = None, backend: str | None = None,
               available: int | None = None) -> Layout:
        """Lay a chunk out over the backend's local devices (all by default, on CPU one per
        core: see `hjax.devices`) and over each device's lanes or vmaps."""

    @abc.abstractmethod
    def fit_device(self, model, program, runtime, key, dataset_index, valid, data,
                   shared) -> ChunkOutput:
        """Fit one device's datasets (the arguments of `hjax.inference.chunks.fit_layout`)."""

    @abc.abstractmethod
    def progress_total(self, n_datasets: int, chains: int, layout: Layout,
                       iterations: int) -> int:
        """Iterations the progress bar counts for a call of `n_datasets` datasets."""

    @abc.abstractmethod
    def attrs(self, layout: Layout) -> dict:
        """What a fit's attrs record about the sampler and its layout."""


class LanesNUTS(Sampler):
    """NUTS whose chains never wait: `lanes` lanes per device (4 on CPU, where each lane
    costs compute but an iteration's fixed cost is shared, or 1 where the whole loop compiles
    into one kernel: `sampler_for`; all of a device's chains on an accelerator).

    Example:
        >>> LanesNUTS().layout(64, chains=4, backend="cpu", available=2)
        Layout(devices=2, sequential=1, vectorized=32, lanes=4)
    """

    lanes: int | None = None
    name: ClassVar[str] = "nuts"

    def layout(self, n_datasets, *, chains, batch_size=None, devices=None, backend=None,
               available=None):
        backend = backend or jax.default_backend()
        devices, share = _shares(n_datasets, batch_size, devices,
                                 available or jax.local_device_count(backend))
        # Fixed on CPU whatever the chunk, so that the draws do not depend on it.
        lanes = self.lanes or (CPU_LANES if backend == "cpu" else share * chains)
        return Layout(devices, 1, share, lanes)

    def fit_device(self, model, program, runtime, key, dataset_index, valid, data, shared):
        return lanes.fit_device(model, program, runtime, key, dataset_index, valid, data,
                                shared)

    def progress_total(self, n_datasets, chains, layout, iterations):
        return n_datasets * chains * iterations  # every chain's iterations

    def attrs(self, layout):
        return {"sampler": self.name, "inference_library": "hjax", "lanes": layout.lanes}


class VmappedNUTS(Sampler):
    """BlackJAX's NUTS kernel vmapped over chains and `vectorize` datasets per device (1 on
    CPU, where vmapped NUTS waits for the longest trajectory of all its lanes; a device's
    whole share on an accelerator); rows of datasets run one after another.

    Example:
        >>> VmappedNUTS(vectorize=4).layout(64, chains=4, backend="cpu", available=2)
        Layout(devices=2, sequential=8, vectorized=4, lanes=0)
    """

    vectorize: int | None = None
    name: ClassVar[str] = "blackjax"

    def layout(self, n_datasets, *, chains, batch_size=None, devices=None, backend=None,
               available=None):
        backend = backend or jax.default_backend()
        devices, share = _shares(n_datasets, batch_size, devices,
                                 available or jax.local_device_count(backend))
        width = min(self.vectorize or (1 if backend == "cpu" else share), share)
        return Layout(devices, math.ceil(share / width), width)

    def fit_device(self, model, program, runtime, key, dataset_index, valid, data, shared):
        layout = program.layout

        def rows(x):
            return x.reshape(layout.sequential, layout.vectorized, *x.shape[1:])

        out = jax.lax.map(
            lambda args: blackjax_nuts.fit_rows(model, program, runtime, key, *args, shared),
            jax.tree.map(rows, (dataset_index, data)))
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    def progress_total(self, n_datasets, chains, layout, iterations):
        chunks = math.ceil(n_datasets / layout.size)
        return chunks * layout.devices * layout.sequential * iterations  # each row in turn

    def attrs(self, layout):
        return {"sampler": self.name, "inference_library": "blackjax",
                "sequential": layout.sequential, "vectorize": layout.vectorized}


def sampler_for(settings: FitSettings, model=None, dataset=None) -> Sampler:
    """The sampler `settings.sampler` names, with its lanes or vectorize. Given the `model`
    fitted and one `dataset`, the lanes sampler runs one lane per CPU device where XLA:CPU
    compiles that model's loop into one kernel (`fits_one_kernel`), unless `settings.lanes`
    says otherwise.

    Example:
        >>> sampler_for(FitSettings(lanes=8))
        LanesNUTS(lanes=8)
        >>> sampler_for(FitSettings(dense_mass=True), model, model.prepare(data))  # M^-1 p: a dot
        LanesNUTS()
    """
    if settings.sampler == "blackjax":
        return VmappedNUTS(settings.vectorize)
    if (settings.lanes is None and model is not None and jax.default_backend() == "cpu"
            and fits_one_kernel(model, dataset, settings.dense_mass)):
        return LanesNUTS(1)
    return LanesNUTS(settings.lanes)
