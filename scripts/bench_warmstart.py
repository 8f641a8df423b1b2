"""What a variational warm start saves: gradient evaluations and time to R-hat < 1.01.

For each init ("uniform": Stan's uniform(-2, 2); "advi"; "pathfinder") and each warmup length,
fit D simulated datasets of a model and record how many fits reached max R-hat < 1.01 over
all parameters, how many had divergences, gradient evaluations per fit (warm start + warmup +
draws) and run time per fit (compile excluded). Comparing the inits at the shortest warmup
where (almost) every fit reaches R-hat < 1.01 gives the cost of getting there.

Usage:
    .venv/bin/python scripts/bench_warmstart.py                       # about 8 minutes, 2 cores
    .venv/bin/python scripts/bench_warmstart.py --model eight_schools --warmups 50,100,200,1000
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import hjax as hj
from hjax.inference import diagnose

GROUPS, PER_GROUP = 20, 10


def varying_intercept() -> tuple[hj.Model, dict]:
    model = hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0", hj.Normal(0, 5)) + hj.Level("u", "group",
                                                                   scale=hj.HalfNormal(1.0)),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
        coords={"group": GROUPS},
    )
    return model, {"group": np.repeat(np.arange(GROUPS), PER_GROUP)}


def eight_schools() -> tuple[hj.Model, dict]:
    model = hj.Model(
        hj.Gaussian(mu=hj.Level("theta", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
                                scale=hj.HalfCauchy(5.0)),
                    sigma=hj.Data("sigma")),
        coords={"school": 8},
    )
    sigma = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    return model, {"school": np.arange(8), "sigma": sigma}


MODELS = {"varying_intercept": varying_intercept, "eight_schools": eight_schools}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="varying_intercept")
    parser.add_argument("--datasets", type=int, default=16)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmups", default="25,50,100,200,400")
    parser.add_argument("--inits", default="uniform,advi,pathfinder")
    args = parser.parse_args()
    model, raw_design = MODELS[args.model]()
    design = model.prepare(raw_design, observed=False)
    keys = jax.random.split(jax.random.key(0), args.datasets)
    _, data = jax.vmap(model.simulate, in_axes=(0, None))(keys, design)
    data = {k: np.asarray(v) for k, v in data.items()}
    print(f"{args.model}: {args.datasets} simulated datasets, {args.chains} chains, "
          f"{args.draws} draws")
    print(f"{'init':>10} {'warmup':>6} {'R-hat<1.01':>10} {'divergent':>9} {'grads/fit':>10} "
          f"{'of which init':>13} {'s/fit':>7}")
    for init in args.inits.split(","):
        for warmup in (int(w) for w in args.warmups.split(",")):
            settings = dict(chains=args.chains, warmup=warmup, draws=args.draws, warn=False,
                            init=None if init == "uniform" else init)
            hj.sample(model, data, key=jax.random.key(1), **settings)  # compile
            start = time.perf_counter()
            result = hj.sample(model, data, key=jax.random.key(2), **settings)
            seconds = (time.perf_counter() - start) / args.datasets
            diag = diagnose(result)
            converged = int((diag.max_rhat < 1.01).sum())
            divergent = int((diag.divergences > 0).sum())
            grads = result.posterior.attrs["grad_evals"] / args.datasets
            init_grads = float(result.fit_stats["warm_start_grad_evals"].mean())
            print(f"{init:>10} {warmup:>6} {converged:>7}/{args.datasets:<2} {divergent:>9} "
                  f"{grads:>10.0f} {init_grads:>13.0f} {seconds:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
