"""The samplers `hj.sample` can run, each owning its layout, its program and its bookkeeping.

A sampler is the value of `FitSettings.sampler`, registered under its YAML name
(`hjax.settings.register`). It says how a chunk of datasets is laid out over a device
(`layout`), fits a device's share (`fit_device`), says how many iterations its progress bar
counts (`progress_total`) and what it records about itself (`attrs`). A new sampler is a
subclass of `AbstractSampler` with `@register("sampler")`: nothing else changes. Both below
make the same NUTS transitions from the same keys and starts:

- `LanesNUTS` (`sampler="nuts"`, the default): a device's (dataset, chain) pairs are jobs on
  a fixed set of lanes that each take one leapfrog step per loop iteration, so no chain waits
  for another (`hjax.inference.nuts.lanes`).
- `BlackJAXNUTS` (`sampler="blackjax"`, the reference): BlackJAX's NUTS kernel vmapped over
  chains, then datasets (`hjax.inference.nuts.blackjax_nuts`); every lane waits for the longest
  trajectory of its row.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Annotated, ClassVar

import equinox as eqx
import jax
from pydantic import Field

from hjax.inference.run import fit_lanes, fit_vmapped
from hjax.inference.run.batching import LanesLayout, Layout
from hjax.inference.run.chunks import Chunk, ChunkOutput
from hjax.inference.run.one_kernel import fits_one_kernel
from hjax.settings import Count, FitSettings, option, register

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["CPU_LANES", "MAX_PER_DEVICE", "AbstractSampler", "BlackJAXNUTS", "LanesNUTS",
           "Sampler", "VmappedNUTS", "sampler_for"]

MAX_PER_DEVICE = 1024  # most datasets one device holds in one chunk: bounds memory
CPU_LANES = 4  # chains the lanes sampler advances together on a CPU device
Width = Annotated[Count, Field(ge=1)] | None  # lanes or datasets vmapped; None: chosen


def _shares(n_datasets: int, batch_size: int | None, devices: int | None,
            available: int) -> tuple[int, int]:
    """(devices used, datasets per device) of one chunk: every device gets a contiguous
    share; a chunk is all datasets up to `MAX_PER_DEVICE` per device unless `batch_size`."""
    devices = min(devices or available, available)
    chunk = batch_size or min(n_datasets, MAX_PER_DEVICE * devices)
    devices = min(devices, chunk)
    return devices, math.ceil(chunk / devices)


class AbstractSampler(eqx.Module):
    """How one device fits its share of a chunk of datasets (abstract)."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def layout(self, n_datasets: int, *, chains: int, batch_size: int | None = None,
               devices: int | None = None, backend: str | None = None,
               available: int | None = None) -> Layout | LanesLayout:
        """Lay a chunk out over the backend's local devices (all by default, on CPU one per
        core: see `hjax.devices`) and over each device's lanes or vmaps."""

    @abc.abstractmethod
    def fit_device(self, model: Model, program, runtime, key,
                   chunk: Chunk) -> ChunkOutput:
        """Fit one device's share of a chunk (`hjax.inference.run.chunks.fit_layout`)."""

    @abc.abstractmethod
    def progress_total(self, n_datasets: int, chains: int, layout,
                       iterations: int) -> int:
        """Iterations the progress bar counts for a call of `n_datasets` datasets."""

    @abc.abstractmethod
    def attrs(self, layout) -> dict:
        """What a fit's attrs record about the sampler and its layout."""

    def for_model(self, model: Model, dataset: dict, dense_mass: bool) -> AbstractSampler:
        """The sampler that fits `model` (one `dataset` at hand): this one, unless it chooses
        an option from the model."""
        return self

    def planned_layout(self, n_datasets: int, **options) -> dict:
        """The layout as a study's manifest records it, before any model is fitted: what
        `for_model` chooses later is None."""
        return self.layout(n_datasets, **options)._asdict()


Sampler = AbstractSampler  # the name before abstract bases were named Abstract*


@register("sampler")
class LanesNUTS(AbstractSampler):
    """NUTS whose chains never wait: `lanes` lanes per device (4 on CPU, where each lane
    costs compute but an iteration's fixed cost is shared, or 1 where the whole loop compiles
    into one kernel: `for_model`; all of a device's chains on an accelerator).

    Example:
        >>> LanesNUTS().layout(64, chains=4, backend="cpu", available=2)
        LanesLayout(devices=2, per_device=32, lanes=4)
    """

    lanes: int | None = eqx.field(default=None, converter=option("lanes", Width))
    name: ClassVar[str] = "nuts"

    def layout(self, n_datasets, *, chains, batch_size=None, devices=None, backend=None,
               available=None):
        backend = backend or jax.default_backend()
        devices, share = _shares(n_datasets, batch_size, devices,
                                 available or jax.local_device_count(backend))
        # Fixed on CPU whatever the chunk, so that the draws do not depend on it.
        lanes = self.lanes or (CPU_LANES if backend == "cpu" else share * chains)
        return LanesLayout(devices, share, lanes)

    def fit_device(self, model, program, runtime, key, chunk):
        return fit_lanes.fit_device(model, program, runtime, key, chunk)

    def progress_total(self, n_datasets, chains, layout, iterations):
        return n_datasets * chains * iterations  # every chain's iterations

    def attrs(self, layout):
        return {"sampler": self.name, "inference_library": "hjax", "lanes": layout.lanes}

    def for_model(self, model, dataset, dense_mass):
        """One lane per CPU device where XLA:CPU compiles the model's loop into one kernel
        (`fits_one_kernel`), unless `lanes` is set.

        Example:
            >>> LanesNUTS().for_model(model, model.prepare(data), dense_mass=True)  # a dot
            LanesNUTS()
        """
        if (self.lanes is None and jax.default_backend() == "cpu"
                and fits_one_kernel(model, dataset, dense_mass)):
            return LanesNUTS(1)
        return self

    def planned_layout(self, n_datasets, **options):
        planned = super().planned_layout(n_datasets, **options)
        return planned if self.lanes is not None else planned | {"lanes": None}


@register("sampler")
class BlackJAXNUTS(AbstractSampler):
    """BlackJAX's NUTS kernel vmapped over chains and `vectorize` datasets per device (1 on
    CPU, where vmapped NUTS waits for the longest trajectory of all its lanes; a device's
    whole share on an accelerator); rows of datasets run one after another.

    Example:
        >>> BlackJAXNUTS(vectorize=4).layout(64, chains=4, backend="cpu", available=2)
        Layout(devices=2, sequential=8, vectorized=4)
    """

    vectorize: int | None = eqx.field(default=None, converter=option("vectorize", Width))
    name: ClassVar[str] = "blackjax"

    def layout(self, n_datasets, *, chains, batch_size=None, devices=None, backend=None,
               available=None):
        backend = backend or jax.default_backend()
        devices, share = _shares(n_datasets, batch_size, devices,
                                 available or jax.local_device_count(backend))
        width = min(self.vectorize or (1 if backend == "cpu" else share), share)
        return Layout(devices, math.ceil(share / width), width)

    def fit_device(self, model, program, runtime, key, chunk):
        layout = program.layout

        def rows(x):
            return x.reshape(layout.sequential, layout.vectorized, *x.shape[1:])

        out = jax.lax.map(
            lambda row: fit_vmapped.fit_rows(model, program, runtime, key,
                                               Chunk(*row, chunk.shared)),
            jax.tree.map(rows, (chunk.dataset_index, chunk.valid, chunk.data)))
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    def progress_total(self, n_datasets, chains, layout, iterations):
        chunks = math.ceil(n_datasets / layout.size)
        return chunks * layout.devices * layout.sequential * iterations  # each row in turn

    def attrs(self, layout):
        return {"sampler": self.name, "inference_library": "blackjax",
                "sequential": layout.sequential, "vectorize": layout.vectorized}


VmappedNUTS = BlackJAXNUTS  # its name before samplers were settings


def sampler_for(settings: FitSettings, model: Model | None = None,
                dataset: dict | None = None) -> AbstractSampler:
    """The sampler of `settings`; given the `model` fitted and one `dataset`, with what it
    chooses from them (`AbstractSampler.for_model`).

    Example:
        >>> sampler_for(FitSettings(lanes=8))
        LanesNUTS(lanes=8)
    """
    if model is None:
        return settings.sampler
    return settings.sampler.for_model(model, dataset, settings.dense_mass)
