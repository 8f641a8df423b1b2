"""The compiled program for one chunk of datasets: starts, then the sampler, over devices.

A chunk's program is a pure function of its static `Program` (sampler, layout, shapes of the
output) and of arrays: the `Chunk` (the datasets' indices, which are real, their data and the
columns they share), and `Runtime` settings (the warmup schedule, the target acceptance, the
initialisation's radius, the thinning), which change without a recompile. `fit_layout` spreads
the chunk over devices (`shard_map`, each device independent: no lockstep across them) and
hands each device's share to the sampler. `run_chunk` compiles that program once per model,
`Program` and argument shapes, keeps the last `MAX_PROGRAMS` compiled (`compiled_programs`,
`clear_caches`), and says how long the compile took, so that sampling time is reported
without it. Every function takes `(model, program, runtime, key, chunk)`, in that order.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from hjax.inference.nuts import adaptation
from hjax.inference.nuts.adaptation import NUTSParameters, Schedule, StepInfo
from hjax.inference.nuts.rows import where_rows
from hjax.inference.run.batching import LanesLayout, Layout
from hjax.inference.run.init import AbstractInit, InitResult, InitUniform, init_position

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["MAX_PROGRAMS", "Chunk", "ChunkOutput", "Program", "Runtime", "chunk_output",
           "chunk_starts", "clear_caches", "compiled_programs", "fit_layout",
           "program_signature", "run_chunk"]


class Chunk(NamedTuple):
    """A chunk of B datasets as its program takes them."""

    dataset_index: Int[Array, " B"]  # dataset b's randomness is fold_in(key, dataset_index[b])
    valid: Bool[Array, " B"]         # the real datasets; the others pad the chunk
    data: dict[str, Array]           # columns that differ between datasets, leading with B
    shared: dict[str, Array]         # columns the same for every dataset, once


class FitsDevice(Protocol):
    """What a chunk's program needs of its sampler (`hjax.inference.run.samplers`): the fit
    of one device's share of the chunk. A protocol, so that the samplers, which are built on
    this module, need not be imported by it."""

    def fit_device(self, model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
                   chunk: Chunk) -> ChunkOutput: ...


class Program(NamedTuple):
    """What a chunk's compiled program is specialised to; each distinct value compiles anew.

    `saved_warmup` is the number of warmup iterations kept in the output (`save_warmup`), 0
    otherwise."""

    sampler: FitsDevice
    layout: Layout | LanesLayout
    chains: int = 4
    draws: int = 1000
    saved_warmup: int = 0
    dense_mass: bool = False
    max_tree_depth: int = 10
    progress: bool = False

    @property
    def kept(self) -> int:
        """Iterations per chain in the output: the saved warmup, then the draws."""
        return self.saved_warmup + self.draws


class Runtime(NamedTuple):
    """Settings that are arguments of the compiled program, not part of it: the
    initialisation's float options (its radius) are arrays here."""

    schedule: Schedule
    target_accept: Float[Array, ""]
    init: AbstractInit
    thin: Int[Array, ""]

    @classmethod
    def of(cls, warmup: int, target_accept: float, init: AbstractInit | None = None,
           thin: int = 1) -> Runtime:
        """The runtime settings of `warmup` iterations, a target acceptance, an
        initialisation (`InitUniform()` by default) and the iterations per kept draw.

        Example:
            >>> runtime = Runtime.of(1000, 0.8, hj.InitUniform(radius=2.0))
            >>> int(runtime.schedule.warmup), runtime.target_accept, runtime.init.radius
            (1000, Array(0.8, dtype=float32), Array(2., dtype=float32))
        """
        dtype = jnp.result_type(float)
        init = jax.tree.map(lambda x: jnp.asarray(x, dtype) if isinstance(x, float) else x,
                            InitUniform() if init is None else init)
        return cls(adaptation.schedule(warmup), jnp.asarray(target_accept, dtype), init,
                   jnp.asarray(thin, jnp.int32))


class ChunkOutput(NamedTuple):
    """Results for B datasets; arrays lead with (B, C) and, for draws, then the iteration."""

    draws: dict[str, Array]
    stats: StepInfo
    warmup_draws: dict[str, Array] | None
    warmup_stats: StepInfo | None
    warmup_grad_evals: Int[Array, "B C"]
    init_positions: dict[str, Array]
    init_tries: Int[Array, "B C"]
    init_ok: Bool[Array, "B C"]
    warm_start_grad_evals: Int[Array, " B"]
    step_size: Float[Array, "B C"]
    inverse_mass_matrix: Array
    grad_evals_executed: Float[Array, " B"]


def _starts(model: Model, program: Program, runtime: Runtime, key, data):
    """A start per chain from the initialisation's stages, replaced by its warm start's draws
    where those are finite; and the warm start's inverse mass matrix and gradient count."""
    logdensity = partial(model.logdensity, data=data)
    keys = jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(key, 0)))(
        jnp.arange(program.chains))
    init = jax.vmap(partial(init_position, draw=runtime.init.stages(model, data),
                            logdensity_fn=logdensity))(keys)
    first = jax.tree.map(lambda x: x[0], init.position)
    ws = runtime.init.warm_start(jax.random.fold_in(key, 1), logdensity, first, program.chains)
    if ws is None:
        return init, None, jnp.zeros((), jnp.int32)
    value, grad = jax.vmap(jax.value_and_grad(logdensity))(ws.positions)
    finite = [jnp.all(jnp.isfinite(g.reshape(program.chains, -1)), axis=1)
              for g in jax.tree.leaves(grad)]
    usable = jnp.isfinite(value) & jnp.all(jnp.stack(finite), axis=0)
    init = init._replace(position=where_rows(usable, ws.positions, init.position),
                         logdensity=jnp.where(usable, value, init.logdensity),
                         grad=where_rows(usable, grad, init.grad))
    imm = ws.inverse_mass_matrix
    return init, jnp.where(jnp.isfinite(imm) & (imm > 0), imm, 1.0), ws.grad_evals


def chunk_starts(model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
                 chunk: Chunk) -> tuple[InitResult, Array | None, Array, PRNGKeyArray]:
    """Per dataset: starts, warm-start inverse mass matrices (None without a warm start) and
    gradient counts, and chain keys, all from `fold_in(key, chunk.dataset_index[b])`.

    Example:
        >>> from hjax.inference.run.samplers import LanesNUTS
        >>> sampler = LanesNUTS()
        >>> program = Program(sampler=sampler, layout=sampler.layout(2, chains=2, available=1),
        ...                   chains=2, draws=50)
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> chunk = Chunk(jnp.arange(2), jnp.ones(2, bool), batch, {})
        >>> init, imm, ws_evals, chain_keys = jax.eval_shape(lambda: chunk_starts(
        ...     model, program, Runtime.of(100, 0.8), jax.random.key(0), chunk))  # shapes only
        >>> init.position["theta_z"].shape, imm  # (datasets, chains, schools); no warm start
        ((2, 2, 8), None)
    """
    keys = jax.vmap(partial(jax.random.fold_in, key))(chunk.dataset_index)
    init, imm, ws_evals = jax.vmap(
        lambda key, data: _starts(model, program, runtime, key, {**chunk.shared, **data}))(
        keys, chunk.data)
    chain_keys = jax.vmap(lambda k: jax.vmap(partial(jax.random.fold_in, jax.random.fold_in(
        k, 2)))(jnp.arange(program.chains)))(keys)
    return init, imm, ws_evals, chain_keys


def chunk_output(program: Program, values, stats: StepInfo, warmup_grad_evals,
                 init: InitResult, ws_evals, params: NUTSParameters, executed) -> ChunkOutput:
    """Split the kept (dataset, chain, iteration) values and statistics into saved warmup and
    draws.

    Example:
        Through `fit_layout`, whose samplers end with it:

        >>> from hjax.inference.run.samplers import LanesNUTS
        >>> sampler = LanesNUTS()
        >>> program = Program(sampler=sampler, layout=sampler.layout(2, chains=2, available=1),
        ...                   chains=2, draws=50, saved_warmup=100)  # save_warmup, warmup=100
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> chunk = Chunk(jnp.arange(2), jnp.ones(2, bool), batch, {})
        >>> out = jax.eval_shape(lambda: fit_layout(model, program, Runtime.of(100, 0.8),
        ...                                         jax.random.key(0), chunk))
        >>> out.warmup_draws["mu"].shape, out.draws["mu"].shape
        ((2, 2, 100), (2, 2, 50))
    """
    split = program.saved_warmup
    return ChunkOutput(
        draws=jax.tree.map(lambda x: x[:, :, split:], values),
        stats=jax.tree.map(lambda x: x[:, :, split:], stats),
        warmup_draws=jax.tree.map(lambda x: x[:, :, :split], values) if split else None,
        warmup_stats=jax.tree.map(lambda x: x[:, :, :split], stats) if split else None,
        warmup_grad_evals=warmup_grad_evals,
        init_positions=init.position,
        init_tries=init.tries,
        init_ok=init.ok,
        warm_start_grad_evals=ws_evals,
        step_size=params.step_size,
        inverse_mass_matrix=params.inverse_mass_matrix,
        grad_evals_executed=executed,
    )


def fit_layout(model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
               chunk: Chunk) -> ChunkOutput:
    """Fit a chunk of `program.layout.size` datasets; device j fits the j-th contiguous share
    with `program.sampler`. A dataset's draws depend only on its index, never on the layout.

    Example:
        >>> from hjax.inference.run.samplers import LanesNUTS
        >>> sampler = LanesNUTS()
        >>> program = Program(sampler=sampler, layout=sampler.layout(2, chains=2, available=1),
        ...                   chains=2, draws=50)
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> chunk = Chunk(jnp.arange(2), jnp.ones(2, bool), batch, {})
        >>> out = jax.eval_shape(lambda: fit_layout(model, program, Runtime.of(100, 0.8),
        ...                                         jax.random.key(0), chunk))
        >>> out.draws["theta"].shape, out.step_size.shape  # shapes only: nothing runs
        ((2, 2, 50, 8), (2, 2))
    """
    def on_device(runtime, chunk):
        return program.sampler.fit_device(model, program, runtime, key, chunk)

    layout = program.layout
    if layout.devices == 1:
        return on_device(runtime, chunk)
    mesh = Mesh(np.asarray(jax.local_devices()[:layout.devices]), ("device",))
    # Each device runs its own while loops: no collective inside, so no lockstep across devices.
    split, whole = PartitionSpec("device"), PartitionSpec()
    sharded = jax.shard_map(on_device, mesh=mesh,
                            in_specs=(whole, Chunk(split, split, split, whole)),
                            out_specs=split, check_vma=False)
    return sharded(runtime, chunk)


MAX_PROGRAMS = 32  # compiled chunk programs kept (least recently used dropped first)
_COMPILED: OrderedDict[tuple, Any] = OrderedDict()
# XLA:CPU's copy insertion with region analysis: without it, every loop-carried buffer a
# branch returns unchanged is copied, in the NUTS loop on every leapfrog step (with it, 11 %
# less time per loop iteration on the 20-group model, the same draws). GPUs ignore it.
COMPILER_OPTIONS = {"xla_cpu_copy_insertion_use_region_analysis": True}


def compiled_programs() -> list:
    """The compiled chunk programs `hj.sample` keeps for reuse, least recently used first
    (at most `MAX_PROGRAMS`; each holds its executable's memory until dropped).

    Example:
        >>> hj.clear_caches()
        >>> _ = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> len(compiled_programs())
        1
    """
    return list(_COMPILED.values())


def clear_caches() -> None:
    """Drop every compiled program `hj.sample` keeps (`compiled_programs`): the next fit
    compiles anew. JAX's own caches are `jax.clear_caches()`'s.

    Example:
        >>> hj.clear_caches()
        >>> compiled_programs()
        []
    """
    _COMPILED.clear()


def program_signature(args) -> tuple:
    """What a compiled program is specialised to: the pytree structure (static fields
    included), every array's shape and dtype, every other leaf's value, and x64.

    Example:
        >>> program_signature(np.zeros(3)) == program_signature(np.ones(3))
        True
    """
    leaves, treedef = jax.tree.flatten(args)
    shapes = tuple((x.shape, x.dtype, getattr(x, "weak_type", False))
                   if isinstance(x, jax.Array | np.ndarray) else x for x in leaves)
    return treedef, shapes, jax.config.jax_enable_x64


def run_chunk(model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
              chunk: Chunk) -> tuple[ChunkOutput, float]:
    """`fit_layout(model, program, runtime, key, chunk)`, compiled on first use of these
    settings and shapes; returns the output and the seconds spent compiling (0 when reused).

    Example:
        Through `hj.sample`, which fits every chunk with it:

        >>> first = hj.sample(model, data, key=0, chains=2, warmup=100, draws=50, warn=False)
        >>> again = hj.sample(model, data, key=1, chains=2, warmup=200, draws=50, warn=False)
        >>> again.posterior.attrs["compile_time"]  # compiled already; warmup is a runtime value
        0.0
    """
    everything = (model, program, runtime, key, chunk)
    signature = program_signature(everything)
    compiled, seconds = _COMPILED.get(signature), 0.0
    if compiled is None:
        start = time.perf_counter()
        compiled = eqx.filter_jit(fit_layout).lower(*everything).compile(
            compiler_options=COMPILER_OPTIONS)
        seconds = time.perf_counter() - start
        _COMPILED[signature] = compiled
        if len(_COMPILED) > MAX_PROGRAMS:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(signature)
    return compiled(*everything), seconds
