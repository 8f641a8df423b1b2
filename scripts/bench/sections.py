"""The benchmark's parts: sbc, ddm, ess, floor, variants and compile.

Each takes the run's `Config` and returns {"tables": [Table, ...], "records": {...}}, the
records holding every fit (times, divergences, errors, quality) so that none is dropped.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import scipy.stats

import hjax as hj
from hjax.inference.run.sample import fitted
from scripts.bench import chees, models
from scripts.bench.hjax_runs import HjaxRun, sample_twice
from scripts.bench.models import Data, Problem, take
from scripts.bench.peers import Fit, NumPyroRunner, Settings, StanRunner, choose_numpyro
from scripts.bench.report import Table

log = logging.getLogger("bench")
NAN = float("nan")
RHAT_LIMIT = 1.05


@dataclass(frozen=True)
class Config:
    """What to run: dataset counts, the D at which quality, floor and variants are measured,
    sampler settings per section, how long to time the gradient loop, where logs go."""

    sizes: tuple[int, ...]
    focus: int
    ddm_datasets: int
    sbc: Settings
    ess: Settings
    variants: Settings
    floor_seconds: float
    logs: Path


# --- shared helpers ------------------------------------------------------------------------

def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else NAN


def _peer_rate(fits: list[Fit], n: int) -> float:
    """Completed fits per minute over the first `n` fits (cumulative time, failures included)."""
    done = fits[:n]
    seconds = sum(f.seconds for f in done)
    return sum(f.error is None for f in done) * 60 / seconds if seconds else NAN


def _hjax_rate(run: HjaxRun, n: int) -> float:
    return NAN if run.error else (n - sum(run.failed)) * 60 / run.seconds


def _fit_records(fits: list[Fit]) -> list[dict]:
    return [{"dataset": i, **asdict(f)} for i, f in enumerate(fits)]


def _stan(problem: Problem, settings: Settings, data: Data, config: Config,
          count_warmup: bool = False) -> tuple[StanRunner, dict]:
    runner = StanRunner(problem, settings, count_warmup)
    logfile = config.logs / f"stan-build-{problem.name}.log"
    seconds, compiled = runner.compile(take(data, 0), logfile)
    log.info("  stan: %s in %.1f s", "compiled" if compiled else "found in cache", seconds)
    return runner, {"seconds": seconds, "compiled": compiled, "log": str(logfile)}


def _compile_cell(build: dict) -> str:
    return f"{build['seconds']:.1f}" if build["compiled"] else f"{build['seconds']:.2f} (cached)"


def _memory_maps_nearly_full() -> bool:
    """Whether this process holds over 3/4 of the memory mappings Linux allows it. NumPyro
    compiles small programs on every run (about 180 mappings per fit here), and past
    vm.max_map_count the next compile fails ("LLVM ERROR: Unable to allocate section
    memory")."""
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps) > 0.75 * limit
    except OSError:
        return False


def _numpyro_maker(problem: Problem, settings: Settings, method: str):
    return lambda: NumPyroRunner(problem, settings, method).fit


def _always(fit):
    return lambda: fit


def _sweep(name: str, fit, remake, data: Data, n: int, seed: int = 1) -> list[Fit]:
    """Fit the first `n` datasets one after another with the compiled `fit`. When memory
    mappings run short, compiled programs are dropped, `remake()` gives a fresh runner
    (NumPyro's MCMC object fails once JAX's caches are cleared under it) and one untimed fit
    compiles it again, so no fit's time includes the recompile."""
    start = time.perf_counter()
    fits = []
    for i in range(n):
        if _memory_maps_nearly_full():
            jax.clear_caches()
            fit = remake()
            fit(take(data, i), seed + i)
            log.info("  %s: compiled programs dropped before fit %d (memory maps)", name, i)
        fits.append(fit(take(data, i), seed + i))
    failed = sum(f.error is not None for f in fits)
    log.info("  %s: %d fits in %.1f s (%d failed)", name, n, time.perf_counter() - start, failed)
    return fits


QUALITY_COLUMNS = ["model", "library", "fits", "failed", "median min bulk ESS / draw",
                   "median min bulk ESS / 1000 grads", "divergences", "fits with divergences",
                   f"fits with R-hat > {RHAT_LIMIT}", "lockstep efficiency",
                   "hjax - library: ESS / draw (p)", "hjax - library: ESS / 1000 grads (p)"]
QUALITY_NOTE = ("ESS / 1000 grads: the min bulk ESS over the leapfrog steps of the kept draws "
                "(hjax n_steps, NumPyro num_steps, Stan n_leapfrog__), which tells a sampler "
                "that mixes worse per gradient from one that stops its trajectories sooner. "
                "hjax - library: the median over datasets of hjax's value minus the library's "
                "on the same dataset, and the two-sided Wilcoxon signed-rank p of those paired "
                "differences (datasets where both fits have a value).")


def _paired(hjax: list[float | None], peer: list[float | None]) -> str:
    """Median paired difference (hjax - peer) over datasets and its Wilcoxon p."""
    differences = [h - p for h, p in zip(hjax, peer, strict=True)
                   if h is not None and p is not None]
    if len(differences) < 2 or not any(differences):
        return "-"
    p = scipy.stats.wilcoxon(differences).pvalue
    return f"{statistics.median(differences):+.3g} (p {p:.2g})"


def _efficiency(qualities: list[dict], grads: list[int]) -> tuple[list, list]:
    """Per dataset: min bulk ESS per draw and per 1000 gradients (None where no quality)."""
    pairs = list(zip(qualities, grads, strict=True))
    return ([q["min_ess_per_draw"] if q else None for q, _ in pairs],
            [1000 * q["min_ess_bulk"] / g if q and g else None for q, g in pairs])


def _median(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else NAN


def _quality_row(model: str, library: str, qualities: list[dict], grads: list[int],
                 divergences: list[int], failed: list[bool], lockstep: float | None = None,
                 versus: tuple[list, list] | None = None) -> list:
    """One library's row; `versus`: hjax's (per draw, per 1000 grads) values to pair with."""
    per_draw, per_grads = _efficiency(qualities, grads)
    paired = ([_paired(versus[0], per_draw), _paired(versus[1], per_grads)] if versus
              else ["-", "-"])
    return [model, library, len(divergences), sum(failed), _median(per_draw),
            _median(per_grads), sum(divergences), sum(d > 0 for d in divergences),
            sum(q["max_rhat"] > RHAT_LIMIT for q in qualities if q), lockstep, *paired]


def _hjax_efficiency(run: HjaxRun) -> tuple[list, list] | None:
    return None if run.error else _efficiency(run.quality, run.grad_evals)


def _peer_quality_row(model: str, library: str, fits: list[Fit], hjax: HjaxRun) -> list:
    return _quality_row(model, library, [f.quality for f in fits], [f.grad_evals for f in fits],
                        [f.divergences for f in fits], [f.error is not None for f in fits],
                        versus=_hjax_efficiency(hjax))


def _hjax_quality_row(model: str, library: str, run: HjaxRun) -> list:
    return _quality_row(model, library, run.quality, run.grad_evals, run.divergences,
                        run.failed, run.attrs.get("lockstep_efficiency"))


def _failures(label: str, run) -> list[str]:
    return [f"{label} failed: {run.error}"] if run.error else []


# --- sbc -----------------------------------------------------------------------------------

def sbc(config: Config) -> dict:
    """SBC throughput (completed fits per minute) of hjax, NumPyro and Stan at each D, and
    posterior quality at `config.focus`."""
    s, n = config.sbc, max(config.sizes)
    throughput = Table(
        f"SBC throughput: completed fits per minute, {s.chains} chains x ({s.warmup} warmup + "
        f"{s.draws} draws)",
        ["model", "D", "hjax", "NumPyro", "Stan", "hjax / NumPyro", "hjax / Stan",
         "hjax compile s", "NumPyro compile s", "Stan compile s", "NumPyro chain_method"],
        notes=[
            f"NumPyro and Stan fit the first {n} datasets once each, one after another (as their "
            "users loop); their rate at D is the completed fits among the first D divided by "
            "the cumulative time of those D fits (failed fits count in the time, not as "
            "completed).",
            "hjax is called twice per D on the same D datasets: the rate uses the second call; "
            "compile = attr compile_time of the first call (near 0 once an earlier D compiled "
            "the same program).",
            "NumPyro: compiled once (jit_model_args=True); chain_method picked per model as the "
            "fastest over 2 datasets after a compiling fit; compile = that first fit - the "
            "median timed fit. Stan: compile = the first stan.build (or a cache hit).",
        ])
    quality = Table(f"SBC posterior quality at D = {config.focus}", QUALITY_COLUMNS,
                    notes=["Bulk ESS from arviz_stats.ess(method='bulk') on the constrained "
                           "parameters hjax reports, for every library; min over parameters, "
                           "divided by chains x draws; median over datasets.", QUALITY_NOTE])
    records = {}
    for problem in (models.varying_intercept(), models.crossed_bernoulli()):
        jax.clear_caches()
        log.info("sbc: %s, %d datasets", problem.name, n)
        data = models.simulate(problem, n)
        choice = choose_numpyro(problem, s, data, seed=100_000)
        method = choice.runner.chain_method
        log.info("  numpyro: %s chosen (%s)", method, ", ".join(
            f"{m} {statistics.mean(f.seconds for f in fits):.2f} s/fit"
            for m, fits in choice.timed.items()))
        numpyro_fits = _sweep("numpyro", choice.runner.fit, _numpyro_maker(problem, s, method),
                              data, n)
        stan, build = _stan(problem, s, data, config)
        stan_fits = _sweep("stan", stan.fit, _always(stan.fit), data, n)
        hjax = {}
        for d in config.sizes:
            hjax[d] = sample_twice(problem, take(data, slice(0, d)), s)
            log.info("  hjax D=%d: %.2f s (first call %.2f s)", d, hjax[d].seconds,
                     hjax[d].first_seconds)
            throughput.notes += _failures(f"{problem.name} hjax D={d}", hjax[d])
        for d in config.sizes:
            rates = (_hjax_rate(hjax[d], d), _peer_rate(numpyro_fits, d), _peer_rate(stan_fits, d))
            throughput.rows.append([problem.name, d, *rates, _ratio(rates[0], rates[1]),
                                    _ratio(rates[0], rates[2]), hjax[d].compile_seconds,
                                    choice.compile_seconds, _compile_cell(build), method])
        focus = config.focus
        quality.rows += [
            _hjax_quality_row(problem.name, "hjax", hjax[focus]),
            _peer_quality_row(problem.name, "NumPyro", numpyro_fits[:focus], hjax[focus]),
            _peer_quality_row(problem.name, "Stan", stan_fits[:focus], hjax[focus]),
        ]
        records[problem.name] = {
            "hjax": {str(d): run.record() for d, run in hjax.items()},
            "numpyro": {"chain_method": method, "compile_seconds": choice.compile_seconds,
                        "method_trials": {m: {"first": asdict(choice.first[m]),
                                              "timed": [asdict(f) for f in fits]}
                                          for m, fits in choice.timed.items()},
                        "fits": _fit_records(numpyro_fits)},
            "stan": {"build": build, "fits": _fit_records(stan_fits)},
        }
    return {"tables": [throughput, quality], "records": records}


# --- ddm -----------------------------------------------------------------------------------

def ddm(config: Config) -> dict:
    """SBC throughput and posterior quality on the hierarchical DDM: hjax's Wiener density
    against Stan's `wiener_lpdf` (NumPyro has no Wiener distribution)."""
    s, d = config.sbc, config.ddm_datasets
    problem = models.ddm()
    table = Table(
        f"Hierarchical DDM (10 participants x 60 trials): completed fits per minute, D = {d}, "
        f"{s.chains} chains x ({s.warmup} warmup + {s.draws} draws)",
        ["model", "D", "hjax", "Stan", "hjax / Stan", "hjax compile s", "Stan compile s"],
        notes=["Stan fits the D datasets one after another; hjax is called twice on them and "
               "the second call counts (compile = attr compile_time of the first)."])
    quality = Table(f"Hierarchical DDM posterior quality at D = {d}", QUALITY_COLUMNS,
                    notes=[QUALITY_NOTE])
    log.info("ddm: %d datasets", d)
    data = models.simulate(problem, d)
    stan, build = _stan(problem, s, data, config)
    stan_fits = _sweep("stan", stan.fit, _always(stan.fit), data, d)
    run = sample_twice(problem, data, s)
    table.notes += _failures("ddm hjax", run)
    rates = (_hjax_rate(run, d), _peer_rate(stan_fits, d))
    table.rows.append([problem.name, d, *rates, _ratio(*rates), run.compile_seconds,
                       _compile_cell(build)])
    quality.rows += [_hjax_quality_row(problem.name, "hjax", run),
                     _peer_quality_row(problem.name, "Stan", stan_fits, run)]
    records = {"hjax": run.record(), "stan": {"build": build, "fits": _fit_records(stan_fits)}}
    return {"tables": [table, quality], "records": {"ddm": records}}


# --- ess -----------------------------------------------------------------------------------

def ess(config: Config) -> dict:
    """Efficiency on two reference posteriors (eight schools, radon): bulk ESS per second and
    per 1000 gradient evaluations, warmup included in the gradient count."""
    s = config.ess
    table = Table(
        f"ESS on reference posteriors, {s.chains} chains x ({s.warmup} warmup + {s.draws} draws)",
        ["model", "library", "run s", "compile s", "grad evals", "min bulk ESS",
         "mean bulk ESS", "min ESS / s", "min ESS / 1000 grads", "divergences", "max R-hat"],
        notes=[
            "run s excludes compilation: hjax's second call; NumPyro's second timed fit of its "
            "fastest chain_method (warmup and sampling as two calls, to count warmup steps); "
            "Stan's fit after a first stan.build.",
            "grad evals = leapfrog steps of warmup and sampling, all chains (hjax attr "
            "grad_evals; NumPyro num_steps; Stan n_leapfrog__ with save_warmup=True).",
            "ESS over the constrained parameters (eight schools: mu, theta_sd (tau), theta; "
            "radon: b0, b_floor, b_uppm, a_sd, sigma, a).",
        ])
    records = {}
    for problem in (models.eight_schools(), models.radon()):
        log.info("ess: %s", problem.name)
        data = models.observed(problem)
        hjax = sample_twice(problem, data, s)
        table.notes += _failures(f"{problem.name} hjax", hjax)
        choice = choose_numpyro(problem, s, data, seed=1, count_warmup=True)
        numpyro_fit = choice.timed[choice.runner.chain_method][-1]
        stan, build = _stan(problem, s, data, config, count_warmup=True)
        stan_fit = stan.fit(take(data, 0), seed=1)
        entries = [
            ("hjax", hjax.seconds, hjax.compile_seconds, hjax.attrs.get("grad_evals", 0),
             hjax.quality[0] if hjax.quality else {}, sum(hjax.divergences), hjax.error),
            ("NumPyro", numpyro_fit.seconds, choice.compile_seconds, numpyro_fit.grad_evals,
             numpyro_fit.quality, numpyro_fit.divergences, numpyro_fit.error),
            ("Stan", stan_fit.seconds, _compile_cell(build), stan_fit.grad_evals,
             stan_fit.quality, stan_fit.divergences, stan_fit.error),
        ]
        for library, seconds, compile_s, grads, q, divergences, error in entries:
            low = q.get("min_ess_bulk", NAN)
            table.rows.append([problem.name, library, seconds, compile_s, grads, low,
                               q.get("mean_ess_bulk", NAN), _ratio(low, seconds),
                               _ratio(1000 * low, grads), divergences, q.get("max_rhat", NAN)])
            if error:
                table.notes.append(f"{problem.name} {library} failed: {error}")
        records[problem.name] = {
            "hjax": hjax.record(),
            "numpyro": {"chain_method": choice.runner.chain_method,
                        "compile_seconds": choice.compile_seconds,
                        "fits": {m: [asdict(f) for f in fits] for m, fits in choice.timed.items()}},
            "stan": {"build": build, "fit": asdict(stan_fit)},
        }
    return {"tables": [table], "records": records}


# --- floor ---------------------------------------------------------------------------------

def _seconds_per_iteration(loop, init, target: float) -> float:
    """Seconds per iteration of the jitted `loop(init, steps)`: the step count doubles (or
    scales) until one timed call lasts `target` seconds."""
    steps = 16
    jax.block_until_ready(loop(init, steps))  # compiles
    while True:
        start = time.perf_counter()
        jax.block_until_ready(loop(init, steps))
        elapsed = time.perf_counter() - start
        if elapsed >= target:
            return elapsed / steps
        steps = max(2 * steps, math.ceil(1.2 * steps * target / max(elapsed, 1e-6)))


def _fitted_density(problem: Problem, data: Data):
    """The value and gradient that `hj.sample` evaluates for the first dataset of `data` (the
    exact reduction of the model where it has one, with the levels whose index column is a
    regular pattern marked: `hjax.inference.run.sample.fitted`), and that dataset."""
    model, batch, _ = fitted(problem.model, take(data, slice(0, 1)))
    return model, {k: jnp.asarray(v) for k, v in take(batch, 0).items()}


def gradient_seconds(problem: Problem, data: Data, lanes: int, target: float) -> float:
    """Seconds per step of `lanes` vmapped value-and-gradient evaluations of the log density
    of the first dataset of the batch `data` (`_fitted_density`), timed for `target` seconds.

    A jitted `fori_loop` moves the positions each step by a tiny function of the gradient, so
    XLA can hoist nothing out of the loop; data are an argument, not a constant. That function
    is a clip, not a transcendental: on one lane a `tanh` of the gradient cost 30 % of the
    gradient, and the floor was that much too high."""
    model, data = _fitted_density(problem, data)
    value_and_grad = jax.vmap(jax.value_and_grad(model.logdensity), in_axes=(0, None))
    body = _gradient_step(lambda positions: value_and_grad(positions, data))

    @jax.jit
    def loop(positions, steps):
        return jax.lax.fori_loop(0, steps, body, (positions, jnp.zeros(())))

    positions = jax.vmap(model.init)(jax.random.split(jax.random.key(0), lanes))
    return _seconds_per_iteration(loop, positions, target)


def _gradient_step(value_and_grad):
    """A loop body that evaluates `value_and_grad` and moves the positions by a tiny clip of
    the gradient (see `gradient_seconds`), summing the values."""
    def body(_, carry):
        positions, total = carry
        value, grad = value_and_grad(positions)
        positions = jax.tree.map(lambda x, g: x + 1e-6 * jnp.clip(g, -1, 1), positions, grad)
        return positions, total + jnp.sum(value)

    return body


def step_seconds(problem: Problem, data: Data, target: float) -> dict[str, float]:
    """Seconds per step, on one lane, of the "gradient" (as `gradient_seconds`) and of a
    "leapfrog" step (velocity Verlet with a diagonal metric, and the energy), each timed
    alone in a jitted `fori_loop`, three times in turn; the least of the three is kept."""
    model, data = _fitted_density(problem, data)
    position, unravel = jax.flatten_util.ravel_pytree(model.init(jax.random.key(0)))
    value_and_grad = jax.value_and_grad(lambda x: model.logdensity(unravel(x), data))
    inverse_mass, step_size = jnp.ones_like(position), 1e-4  # small: the orbit stays finite

    def leapfrog(i, carry):
        x, p, grad, energy = carry
        p = p + step_size / 2 * grad
        x = x + step_size * inverse_mass * p
        value, grad = value_and_grad(x)
        p = p + step_size / 2 * grad
        return x, p, grad, -value + 0.5 * jnp.sum(inverse_mass * p * p)

    zero = jnp.zeros((), position.dtype)
    bodies = {"gradient": (_gradient_step(value_and_grad), (position, zero)),
              "leapfrog": (leapfrog, (position, jnp.zeros_like(position), position, zero))}
    loops = {name: (jax.jit(lambda init, steps, body=body: jax.lax.fori_loop(0, steps, body,
                                                                              init)), init)
             for name, (body, init) in bodies.items()}
    times = {name: [] for name in loops}
    for _ in range(3):
        for name, (loop, init) in loops.items():
            times[name].append(_seconds_per_iteration(loop, init, target))
    return {name: min(values) for name, values in times.items()}


def _lanes(attrs: dict) -> int:
    """Gradients one device evaluates per step, from a fit's attrs."""
    return attrs["lanes"] if "lanes" in attrs else attrs["chains"] * attrs["vectorize"]


def floor(config: Config) -> dict:
    """How close hjax's default run comes to the time of its executed gradient evaluations."""
    s, d = config.sbc, config.focus
    table = Table(
        f"Gradient floor of the hjax default at D = {d}, {s.chains} chains x ({s.warmup} + "
        f"{s.draws})",
        ["model", "devices", "lanes", "grad evals useful", "grad evals executed",
         "lockstep efficiency", "us per lane-step", "run s", "sampling s", "floor s",
         "floor / run", "floor / sampling"],
        notes=[
            "lanes: the value-and-gradients one device evaluates together (attr lanes of the "
            "default sampler; chains x vectorize for sampler='blackjax'). floor = (seconds per "
            "vmapped step of `lanes` gradients of dataset 0, timed alone in a jitted "
            "fori_loop) x (grad_evals_executed / lanes) / devices. run s: wall time of "
            "hj.sample; sampling s: its attr sampling_time (the rest is mostly the "
            "diagnostics its refit decisions need).",
        ])
    steps = Table(
        f"What one step costs, one lane, at D = {d}",
        ["model", "gradient us", "leapfrog us", "NUTS us (sampling)", "NUTS - gradient us",
         "gradient / leapfrog", "gradient / NUTS"],
        notes=[
            "gradient and leapfrog (velocity Verlet with a diagonal metric, and the energy) are "
            "timed alone on dataset 0 (`step_seconds`); NUTS us = sampling s x devices / (grad "
            "evals executed / lanes). NUTS - gradient is the sampler's own work per step (the "
            "leapfrog's arithmetic, the multinomial draw, the tree and its U-turn tests, "
            "adaptation, recording): floor / sampling = gradient / NUTS reaches 0.67 only "
            "with a gradient at least twice it. Rows only for runs on one lane.",
        ])
    records = {}
    for problem in (models.varying_intercept(), models.crossed_bernoulli()):
        log.info("floor: %s, D=%d", problem.name, d)
        data = models.simulate(problem, d)
        run = sample_twice(problem, data, s)
        if run.error:
            table.notes += _failures(problem.name, run)
            continue
        attrs = run.attrs
        lanes = _lanes(attrs)
        devices = attrs["devices"]
        per_step = gradient_seconds(problem, data, lanes, config.floor_seconds)
        rows = attrs["grad_evals_executed"] / lanes
        floor_seconds = per_step * rows / devices
        table.rows.append([problem.name, devices, lanes, attrs["grad_evals"],
                           attrs["grad_evals_executed"], attrs["lockstep_efficiency"],
                           1e6 * per_step / lanes, run.seconds, attrs["sampling_time"],
                           floor_seconds, floor_seconds / run.seconds,
                           floor_seconds / attrs["sampling_time"]])
        records[problem.name] = {"seconds_per_step": per_step, "lanes": lanes,
                                 "devices": devices, "floor_seconds": floor_seconds,
                                 "run": run.record()}
        if lanes == 1:
            rungs = step_seconds(problem, data, config.floor_seconds)
            nuts, gradient = attrs["sampling_time"] * devices / rows, rungs["gradient"]
            steps.rows.append([problem.name, 1e6 * gradient, 1e6 * rungs["leapfrog"],
                               1e6 * nuts, 1e6 * (nuts - gradient), gradient / rungs["leapfrog"],
                               gradient / nuts])
            records[problem.name]["step_seconds"] = {**rungs, "nuts": nuts}
    return {"tables": [table, steps], "records": records}


# --- variants ------------------------------------------------------------------------------

VARIANTS = (
    ("default", {}),
    ("devices=1", {"devices": 1}),
    ("lanes=4", {"lanes": 4}),  # the CPU default where the loop does not fit one kernel
    ("lanes=8", {"lanes": 8}),
    ('sampler="blackjax"', {"sampler": "blackjax"}),
    ('sampler="blackjax", vectorize=16', {"sampler": "blackjax", "vectorize": 16}),
    ("dense_mass=True", {"dense_mass": True}),
    ('init="pathfinder", warmup=200', {"init": "pathfinder", "warmup": 200}),
)


def variants(config: Config) -> dict:
    """hjax's options, and ChEES-HMC, on the varying-intercept model at `config.focus`."""
    s, d = config.variants, config.focus
    problem = models.varying_intercept()
    data = models.simulate(problem, d)
    table = Table(
        f"hjax variants: varying_intercept, D = {d}, {s.chains} chains x ({s.warmup} + "
        f"{s.draws}) unless stated",
        ["variant", "fits / min", "median min bulk ESS / draw", "divergences",
         "fits with divergences", f"share of fits with R-hat > {RHAT_LIMIT}",
         "lockstep efficiency", "compile s", "devices x lanes"],
        notes=["fits / min from the second of two calls; compile = attr compile_time of the "
               "first call (ChEES-HMC: first - second call).",
               "ChEES-HMC: BlackJAX chees_adaptation (diagonal mass matrix, Adam 0.05, initial "
               "step 0.1) then dynamic_hmc, chains vmapped, datasets by lax.map in one jit on "
               "one device; lockstep efficiency over its chains' integration steps."])
    records = {}
    for label, options in VARIANTS:
        log.info("variants: %s", label)
        run = sample_twice(problem, data, s, **options)
        table.notes += _failures(label, run)
        rhats = [q["max_rhat"] > RHAT_LIMIT for q in run.quality]
        per_draw = [q["min_ess_per_draw"] for q in run.quality]
        attrs = run.attrs
        table.rows.append([
            label, _hjax_rate(run, d), statistics.median(per_draw) if per_draw else NAN,
            sum(run.divergences), sum(x > 0 for x in run.divergences),
            sum(rhats) / len(rhats) if rhats else NAN, attrs.get("lockstep_efficiency"),
            run.compile_seconds if not run.error else NAN,
            f"{attrs['devices']} x {_lanes(attrs)}" if "devices" in attrs else None])
        records[label] = run.record()
    log.info("variants: ChEES-HMC")
    run = chees.sample_twice(problem, data, s)
    table.notes += _failures("ChEES-HMC", run)
    rhats = [q["max_rhat"] > RHAT_LIMIT for q in run.quality]
    table.rows.append([
        "ChEES-HMC (BlackJAX)", NAN if run.error else d * 60 / run.seconds,
        statistics.median(q["min_ess_per_draw"] for q in run.quality) if run.quality else NAN,
        sum(run.divergences), sum(x > 0 for x in run.divergences),
        sum(rhats) / len(rhats) if rhats else NAN, run.lockstep_efficiency,
        run.compile_seconds if not run.error else NAN, f"1 x {s.chains} (lax.map)"])
    records["chees"] = {**asdict(run), "compile_seconds": run.compile_seconds}
    return {"tables": [table], "records": records}


# --- compile -------------------------------------------------------------------------------

def compile_times(config: Config) -> dict:
    """Compile seconds of every shipped catalog model's default program (`compile_time` of a
    first `hj.sample` on 4 simulated datasets; the fit's own time beside it)."""
    s = config.variants
    table = Table(
        f"Compile time per shipped model: hj.sample defaults, 4 datasets, {s.chains} chains "
        f"x ({s.warmup} + {s.draws})",
        ["model", "unconstrained values", "rows", "reduction", "compile s", "sampling s"],
        notes=["compile s: attr compile_time of the first call in a fresh process state "
               "(jax.clear_caches before each model; the persistent cache is not used)."])
    records = {}
    for name, build in hj.catalog.SHIPPED.items():
        jax.clear_caches()
        # meta_analysis takes its studies' standard errors: the BCG trials' design.
        model, design = hj.catalog.bcg() if name == "meta_analysis" else build()
        design = {k: v for k, v in design.items() if k != "y"}
        problem = Problem(name, model, design, None, "", dict, ())
        data = models.simulate(problem, 4)
        try:
            result = hj.sample(model, data, key=jax.random.key(1), chains=s.chains,
                               warmup=s.warmup, draws=s.draws, progress=False, warn=False)
        except Exception as error:  # recorded, never dropped
            table.notes.append(f"{name} failed: {type(error).__name__}: {error}")
            continue
        attrs = result.posterior.attrs
        rows = max(np.shape(v)[1] for v in data.values() if np.ndim(v) > 1)
        size = jax.flatten_util.ravel_pytree(model.init(jax.random.key(0)))[0].size
        table.rows.append([name, size, rows, attrs["reduction"],
                           float(attrs["compile_time"]), float(attrs["sampling_time"])])
        records[name] = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
        log.info("compile: %s %.1f s", name, attrs["compile_time"])
    return {"tables": [table], "records": records}


SECTIONS = {"sbc": sbc, "ddm": ddm, "ess": ess, "floor": floor, "variants": variants,
            "compile": compile_times}
