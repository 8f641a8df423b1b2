"""The libraries hjax is measured against: NumPyro's NUTS and Stan's (pystan 3 / httpstan).

Each runner fits one dataset at a time, the way their users loop over a sweep, and returns a
`Fit` record; a fit that raises is recorded with its error and its time, never dropped.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpstan.cache
import httpstan.models
import jax
import jax.numpy as jnp
import numpy as np
import stan
from numpyro.infer import MCMC, NUTS

from scripts.bench.metrics import as_dataset, quality
from scripts.bench.models import Data, Problem, take


@dataclass(frozen=True)
class Settings:
    """Chains per dataset and iterations per chain, the same for every library."""

    chains: int
    warmup: int
    draws: int


@dataclass
class Fit:
    """One dataset's fit: wall seconds, divergences after warmup, leapfrog steps (warmup
    included when the runner counts it), posterior quality; or the error that stopped it."""

    seconds: float
    divergences: int = 0
    grad_evals: int = 0
    quality: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _failed(start: float, error: Exception) -> Fit:
    return Fit(time.perf_counter() - start, error=f"{type(error).__name__}: {error}")


def _quiet():
    out, err = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    stack = contextlib.ExitStack()
    stack.enter_context(out)
    stack.enter_context(err)
    return stack


# --- NumPyro -------------------------------------------------------------------------------

class NumPyroRunner:
    """NumPyro NUTS compiled once (`jit_model_args=True`) and reused for every dataset.

    With `count_warmup`, warmup runs as its own call collecting `num_steps`, so that gradient
    evaluations include it (as hjax's and Stan's counts do)."""

    def __init__(self, problem: Problem, settings: Settings, chain_method: str,
                 count_warmup: bool = False):
        self.problem, self.chain_method, self.count_warmup = problem, chain_method, count_warmup
        # NumPyro 0.22 re-jits its sampling loop on every run when progress_bar=False (the
        # loop body is a fresh closure passed as a static argument), so the compiled-once
        # path that jit_model_args promises needs progress_bar=True; its output is discarded.
        self.mcmc = MCMC(NUTS(problem.numpyro_model), num_warmup=settings.warmup,
                         num_samples=settings.draws, num_chains=settings.chains,
                         chain_method=chain_method, progress_bar=True, jit_model_args=True)

    def fit(self, data: Data, seed: int) -> Fit:
        data = {k: jnp.asarray(v) for k, v in data.items()}
        warm_key, run_key = jax.random.split(jax.random.key(seed))
        start = time.perf_counter()
        try:
            with _quiet():
                warmup_steps = 0
                if self.count_warmup:
                    self.mcmc.warmup(warm_key, data, extra_fields=("num_steps",),
                                     collect_warmup=True)
                    warmup_steps = int(self.mcmc.get_extra_fields()["num_steps"].sum())
                self.mcmc.run(run_key, data, extra_fields=("num_steps", "diverging"))
                samples = jax.block_until_ready(self.mcmc.get_samples(group_by_chain=True))
        except Exception as error:  # recorded, never dropped
            return _failed(start, error)
        seconds = time.perf_counter() - start
        extra = self.mcmc.get_extra_fields(group_by_chain=True)
        draws = {name: np.asarray(samples[name]) for name in self.problem.params}
        return Fit(seconds, divergences=int(extra["diverging"].sum()),
                   grad_evals=warmup_steps + int(extra["num_steps"].sum()),
                   quality=quality(as_dataset(draws)))


def numpyro_methods(chains: int) -> list[str]:
    """Chain methods worth trying: `parallel` needs a device per chain."""
    methods = ["vectorized", "sequential"]
    return methods + ["parallel"] if jax.local_device_count() >= chains else methods


@dataclass
class Choice:
    """The fastest chain method's runner, and every method's fits: a first one (compiles)
    and the timed ones (seconds per fit decide)."""

    runner: NumPyroRunner
    first: dict[str, Fit]
    timed: dict[str, list[Fit]]

    @property
    def compile_seconds(self) -> float:
        """The chosen method's first fit minus its median timed fit."""
        method = self.runner.chain_method
        return self.first[method].seconds - statistics.median(f.seconds for f in
                                                               self.timed[method])


def choose_numpyro(problem: Problem, settings: Settings, data: Data, seed: int,
                   count_warmup: bool = False, trials: int = 2) -> Choice:
    """Time each chain method on the first `trials` datasets of `data` (cycling through them
    if there are fewer) after a first fit that compiles; keep the fastest."""
    n = next(iter(data.values())).shape[0]
    first, timed, runners = {}, {}, {}
    for method in numpyro_methods(settings.chains):
        runners[method] = NumPyroRunner(problem, settings, method, count_warmup)
        first[method] = runners[method].fit(take(data, 0), seed)
        timed[method] = [runners[method].fit(take(data, i % n), seed + 1 + i)
                         for i in range(trials)]
    usable = [m for m in timed if not any(f.error for f in timed[m])] or list(timed)
    best = min(usable, key=lambda m: sum(f.seconds for f in timed[m]))
    return Choice(runners[best], first, timed)


# --- Stan ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _into_file(path: Path):
    """Send file descriptors 1 and 2 to `path`: the compiler writes there, not to sys.stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


class StanRunner:
    """pystan 3: one `stan.build` (cached compile, data sent) and `sample` per dataset.

    Every fit gets its own seed (pystan's `random_seed=None` repeats one seed per process),
    and its disk copy in httpstan's cache is deleted after it (httpstan keeps every seeded fit).
    With `count_warmup`, warmup iterations are saved so their leapfrog steps are counted."""

    def __init__(self, problem: Problem, settings: Settings, count_warmup: bool = False):
        self.problem, self.settings, self.count_warmup = problem, settings, count_warmup
        name = httpstan.models.calculate_model_name(problem.stan_code)
        self.model_dir = httpstan.cache.model_directory(name)

    def compile(self, data: Data, log: Path) -> tuple[float, bool]:
        """Build the program once: (seconds, whether it was compiled rather than found in
        httpstan's cache). Compiler output goes to `log`; `./build/` to a temporary folder."""
        compiled = not self.model_dir.exists()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder), _into_file(log):
            stan.build(self.problem.stan_code, data=self.problem.stan_data(data), random_seed=1)
        return time.perf_counter() - start, compiled

    def fit(self, data: Data, seed: int) -> Fit:
        s = self.settings
        start = time.perf_counter()
        try:
            with _quiet():
                posterior = stan.build(self.problem.stan_code, data=self.problem.stan_data(data),
                                       random_seed=seed)
                fit = posterior.sample(num_chains=s.chains, num_warmup=s.warmup,
                                       num_samples=s.draws, save_warmup=self.count_warmup)
        except Exception as error:  # recorded, never dropped
            return _failed(start, error)
        finally:
            seconds = time.perf_counter() - start
            shutil.rmtree(self.model_dir / "fits", ignore_errors=True)
        skip = s.warmup if self.count_warmup else 0
        draws = {name: self._chains(fit, name)[:, skip:] for name in self.problem.params}
        return Fit(seconds, divergences=int(self._chains(fit, "divergent__")[:, skip:].sum()),
                   grad_evals=int(self._chains(fit, "n_leapfrog__").sum()),
                   quality=quality(as_dataset(draws)))

    def _chains(self, fit, name: str) -> np.ndarray:
        """`fit[name]` is (dims..., draw * chain) with the chain varying fastest; return
        (chain, draw, dims...)."""
        dims = [] if name.endswith("__") else list(fit.dims[fit.param_names.index(name)])
        values = fit[name].reshape(*dims, -1, self.settings.chains)
        return np.moveaxis(values, (-1, -2), (0, 1))
