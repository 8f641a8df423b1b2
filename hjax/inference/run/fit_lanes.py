"""The lanes sampler on one device: a chunk's datasets x chains as jobs on its lanes.

The kernel (`hjax.inference.nuts.lanes.run`) knows flat positions and jobs; this adapter
gives it the chunk's starts, keys and adaptation (`chunk_starts`, those of the "blackjax"
sampler) and shapes its output as a `ChunkOutput`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from hjax.inference.nuts import adaptation
from hjax.inference.nuts.lanes import Jobs, run
from hjax.inference.run.chunks import (
    Chunk,
    ChunkOutput,
    Program,
    Runtime,
    chunk_output,
    chunk_starts,
)

if TYPE_CHECKING:
    from hjax.model.model import Model

__all__ = ["fit_device"]


def fit_device(model: Model, program: Program, runtime: Runtime, key: PRNGKeyArray,
               chunk: Chunk) -> ChunkOutput:
    """Fit B datasets x C chains as B * C jobs on `program.layout.lanes` lanes; outputs as
    `hjax.inference.run.chunks.ChunkOutput`.

    Starts, keys and adaptation are those of the "blackjax" sampler
    (`hjax.inference.run.fit_vmapped.fit_rows`), so a dataset's chains are the same Markov
    chains in both; `chunk.valid` marks the datasets to fit (the others pad a chunk and are
    skipped); `grad_evals_executed` is the lanes' share of the loop.

    Example:
        >>> from hjax.inference.run.chunks import Chunk, Program, Runtime
        >>> from hjax.inference.run.samplers import LanesNUTS
        >>> sampler = LanesNUTS()
        >>> program = Program(sampler=sampler, layout=sampler.layout(2, chains=2, available=1),
        ...                   chains=2, draws=50)
        >>> batch = {k: jnp.stack([v, v]) for k, v in model.prepare(data).items()}  # 2 datasets
        >>> chunk = Chunk(jnp.arange(2), jnp.ones(2, bool), batch, {})
        >>> out = jax.eval_shape(lambda: fit_device(model, program, Runtime.of(100, 0.8),
        ...                                         jax.random.key(0), chunk))
        >>> out.draws["mu"].shape  # (datasets, chains, draws); shapes only: nothing runs
        (2, 2, 50)
    """
    init, imm, ws_evals, chain_keys = chunk_starts(model, program, runtime, key, chunk)
    data, shared, valid = chunk.data, chunk.shared, chunk.valid
    n_datasets, chains = init.logdensity.shape
    template = jax.tree.map(lambda x: x[0, 0], init.position)
    _, unravel = ravel_pytree(template)
    flat = jax.vmap(jax.vmap(lambda p: ravel_pytree(p)[0]))
    n_dims = flat(init.position).shape[-1]
    if imm is None:
        imm = jnp.ones((n_datasets, n_dims), init.logdensity.dtype)
    if program.dense_mass:
        imm = jax.vmap(jnp.diag)(imm)
    per_job = partial(jax.tree.map, lambda x: x.reshape(n_datasets * chains, *x.shape[2:]))
    jobs = Jobs(
        dataset=jnp.repeat(jnp.where(valid, jnp.arange(n_datasets), -1), chains),
        key=per_job(chain_keys), position=per_job(flat(init.position)),
        logdensity=per_job(init.logdensity), grad=per_job(flat(init.grad)),
        inverse_mass_matrix=jnp.repeat(imm, chains, axis=0),
        step_size=jnp.ones(n_datasets * chains, init.logdensity.dtype))

    # Columns shared by all datasets are closed over, not copied to every lane: the model's
    # gathers by a shared index vectorize across lanes, by per-lane indices they do not.
    def logdensity(x, data):
        return model.logdensity(unravel(x), {**shared, **data})

    def constrain(x, data):
        return ravel_pytree(model.constrain(unravel(x), {**shared, **data}))[0]

    lanes = program.layout.lanes
    out = run(logdensity, constrain, data, jobs, runtime.schedule, lanes=lanes,
              draws=program.draws, saved_warmup=program.saved_warmup, thin=runtime.thin,
              target_accept=runtime.target_accept, dense_mass=program.dense_mass,
              max_tree_depth=program.max_tree_depth, progress=program.progress)
    values = jax.eval_shape(model.constrain, template,
                            {**shared, **jax.tree.map(lambda x: x[0], data)})
    _, unravel_values = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), values))
    per_chain = partial(jax.tree.map, lambda x: x.reshape(n_datasets, chains, *x.shape[1:]))
    values = per_chain(jax.vmap(jax.vmap(unravel_values))(out.draws))
    params = adaptation.NUTSParameters(per_chain(out.step_size),
                                       per_chain(out.inverse_mass_matrix))
    # The lanes' iterations, shared among the datasets fitted.
    executed = jnp.where(valid, out.iterations * lanes / jnp.maximum(jnp.sum(valid), 1), 0.0)
    return chunk_output(program, values, per_chain(out.stats), per_chain(out.warmup_grad_evals),
                        init, ws_evals, params, executed)
