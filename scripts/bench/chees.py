"""ChEES-HMC with BlackJAX, over many datasets: the variant that avoids NUTS's lockstep.

Per dataset: `chees_adaptation` (diagonal mass matrix, Adam on the trajectory length) for the
warmup, then `dynamic_hmc` with the adapted parameters; chains vmapped, datasets one after
another by `lax.map`, all inside one jit. Chains of a dataset share a trajectory length up to
the jitter, so vmapped chains waste little; its failure mode is mixing (R-hat), not speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from scripts.bench.metrics import as_dataset, quality
from scripts.bench.models import Data, Problem
from scripts.bench.peers import Settings

INITIAL_STEP_SIZE = 0.1
LEARNING_RATE = 0.05


@dataclass
class CheesRun:
    """Like `HjaxRun`: both calls' seconds, lockstep efficiency, and per dataset divergences
    and posterior quality of the second call."""

    first_seconds: float = 0.0
    seconds: float = 0.0
    grad_evals: int = 0
    lockstep_efficiency: float = 1.0
    divergences: list[int] = field(default_factory=list)
    quality: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def compile_seconds(self) -> float:
        return self.first_seconds - self.seconds


def _program(problem: Problem, settings: Settings):
    model, chains = problem.model, settings.chains

    def fit_one(key, data):
        def logdensity(position):
            return model.logdensity(position, data)

        init_key, warm_key, draw_key = jax.random.split(key, 3)
        positions = jax.vmap(model.init)(jax.random.split(init_key, chains))
        warmup = blackjax.chees_adaptation(
            logdensity, num_chains=chains, mass_matrix_estimation="diagonal",
            adaptation_info_fn=lambda state, info, adaptation: (info.num_integration_steps,))
        (states, parameters), info = warmup.run(warm_key, positions, INITIAL_STEP_SIZE,
                                                optax.adam(LEARNING_RATE), settings.warmup)
        kernel = blackjax.dynamic_hmc(logdensity, **parameters)

        def step(states, key):
            states, info = jax.vmap(kernel.step)(jax.random.split(key, chains), states)
            constrained = jax.vmap(model.constrain, in_axes=(0, None))(states.position, data)
            return states, (constrained, info.num_integration_steps, info.is_divergent)

        _, (draws, steps, divergent) = jax.lax.scan(
            step, states, jax.random.split(draw_key, settings.draws))
        # The adaptation info object needs unwrapping to reach the tuple returned above.
        warm_steps = info._wrapped_info[0]
        steps = jnp.concatenate([warm_steps, steps])
        draws = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), draws)
        return draws, steps, divergent.sum()

    @jax.jit
    def fit(keys, batch):
        return jax.lax.map(lambda args: fit_one(*args), (keys, batch))

    return fit


def sample_twice(problem: Problem, data: Data, settings: Settings) -> CheesRun:
    """Fit the batch `data` twice (the first call compiles) and keep the second."""
    n = next(iter(data.values())).shape[0]
    fit = _program(problem, settings)
    batch = {k: jnp.asarray(v) for k, v in data.items()}
    run = CheesRun()
    try:
        for seed in (1, 2):
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(seed),
                                                                    jnp.arange(n))
            start = time.perf_counter()
            draws, steps, divergences = jax.block_until_ready(fit(keys, batch))
            run.first_seconds, run.seconds = run.seconds, time.perf_counter() - start
    except Exception as error:  # recorded, never dropped
        run.error = f"{type(error).__name__}: {error}"
        return run
    steps = np.asarray(steps)  # (dataset, iteration, chain)
    run.grad_evals = int(steps.sum())
    run.lockstep_efficiency = run.grad_evals / float(steps.max(axis=2).sum() * settings.chains)
    run.divergences = np.asarray(divergences).tolist()
    draws = {k: np.asarray(v) for k, v in draws.items()}
    run.quality = [quality(as_dataset({k: v[d] for k, v in draws.items()})) for d in range(n)]
    return run
