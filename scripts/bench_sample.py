"""Benchmark: fits per second of hj.sample against NumPyro on a 20-group varying-intercept model.

    y_i ~ Normal(b0 + u[group_i], sigma),  u_g ~ Normal(0, u_sd),
    b0 ~ Normal(0, 5),  u_sd ~ HalfNormal(1),  sigma ~ HalfNormal(1)   (non-centered u)

For D = 1, 16, 64 simulated datasets, both fit every dataset with the same chains, warmup and
draws. Compilation is excluded from the rates (timed separately): hjax compiles one program for
all datasets; NumPyro runs with jit_model_args=True, so its compiled sampler is reused across
datasets, with the faster chain_method (vectorized or sequential) picked on two datasets. Both
fit the same datasets, so the ratio at each D compares like with like. `--batch-sizes` also
times hjax at several chunk widths (the CPU default in hjax.inference.batching comes from this).

Usage:
    .venv/bin/python scripts/bench_sample.py                # defaults: about 5 minutes, 2 cores
    .venv/bin/python scripts/bench_sample.py --warmup 1000 --draws 1000 --datasets 1,16,64,256
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import jax
import jax.numpy as jnp
import numpy as np

import hjax as hj
from hjax.inference.batching import default_batch_size

GROUPS, PER_GROUP = 20, 10


def hjax_model() -> hj.Model:
    return hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0", hj.Normal(0, 5)) + hj.Level("u", "group",
                                                                   scale=hj.HalfNormal(1.0)),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
        coords={"group": GROUPS},
    )


def simulate(model: hj.Model, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    group = np.repeat(np.arange(GROUPS), PER_GROUP)
    design = model.prepare({"group": group}, observed=False)
    keys = jax.random.split(jax.random.key(seed), n)
    _, data = jax.vmap(model.simulate, in_axes=(0, None))(keys, design)
    return {k: np.asarray(v) for k, v in data.items()}


def time_hjax(model, data, args, batch_size=None) -> tuple[float, float, float]:
    """(seconds for the first call, which compiles; seconds for a second call; mean grad evals
    per fit)."""
    settings = dict(chains=args.chains, warmup=args.warmup, draws=args.draws,
                    batch_size=batch_size, progress=False, warn=False)
    start = time.perf_counter()
    hj.sample(model, data, key=jax.random.key(1), **settings)
    first = time.perf_counter() - start
    start = time.perf_counter()
    result = hj.sample(model, data, key=jax.random.key(2), **settings)
    second = time.perf_counter() - start
    n = next(iter(data.values())).shape[0]
    return first, second, result.posterior.attrs["grad_evals"] / n


def numpyro_runner(args, chain_method: str):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    def model(group, y):
        b0 = numpyro.sample("b0", dist.Normal(0, 5))
        u_sd = numpyro.sample("u_sd", dist.HalfNormal(1.0))
        with numpyro.plate("groups", GROUPS):
            z = numpyro.sample("u_z", dist.Normal(0, 1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(b0 + u_sd * z[group], sigma), obs=y)

    # NumPyro 0.22 re-jits its sampling loop on every run when progress_bar=False (the loop
    # body is a fresh closure passed as a static argument), so the compiled-once path that
    # jit_model_args promises needs progress_bar=True; its output is discarded.
    mcmc = MCMC(NUTS(model), num_warmup=args.warmup, num_samples=args.draws,
                num_chains=args.chains, chain_method=chain_method, progress_bar=True,
                jit_model_args=True)

    def fit(key, data):
        with contextlib.redirect_stderr(io.StringIO()):
            mcmc.run(key, jnp.asarray(data["group"]), jnp.asarray(data["y"]))
        return jax.block_until_ready(mcmc.get_samples()["b0"])

    return fit


def time_numpyro(data, args, chain_method: str) -> tuple[float, np.ndarray]:
    """(seconds for a first fit, which compiles; seconds for each dataset's fit after it)."""
    fit = numpyro_runner(args, chain_method)
    n = next(iter(data.values())).shape[0]
    start = time.perf_counter()
    fit(jax.random.key(0), {k: v[0] for k, v in data.items()})
    first = time.perf_counter() - start
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        fit(jax.random.key(i + 1), {k: v[i] for k, v in data.items()})
        seconds.append(time.perf_counter() - start)
    return first, np.array(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--datasets", default="1,16,64")
    parser.add_argument("--batch-sizes", default="",
                        help="also time hjax at these chunk widths for the largest D, e.g. 1,4,16")
    args = parser.parse_args()
    sizes = [int(s) for s in args.datasets.split(",")]
    model = hjax_model()
    data = simulate(model, max(sizes))
    print(f"backend {jax.default_backend()}, {GROUPS} groups x {PER_GROUP} obs, "
          f"{args.chains} chains, {args.warmup} warmup + {args.draws} draws per chain")

    methods = {}
    for method in ("vectorized", "sequential"):
        methods[method] = time_numpyro({k: v[:2] for k, v in data.items()}, args, method)[1]
        print(f"numpyro chain_method={method}: {methods[method].mean():.3f} s per fit")
    best = min(methods, key=lambda m: methods[m].mean())
    compile_np, seconds_np = time_numpyro(data, args, best)
    print(f"numpyro ({best}): first fit (compiles) {compile_np:.1f} s, then "
          f"{seconds_np.mean():.3f} s per fit over {len(seconds_np)} datasets")

    print(f"\n{'D':>5} {'batch':>6} {'compile+run s':>14} {'run s':>8} {'fits/s':>8} "
          f"{'numpyro fits/s':>15} {'ratio':>7} {'grads/fit':>10}")
    for n in sizes:
        sub = {k: v[:n] for k, v in data.items()}
        width = default_batch_size(n)
        first, second, grads = time_hjax(model, sub, args)
        rate, rate_np = n / second, n / seconds_np[:n].sum()
        print(f"{n:>5} {width:>6} {first:>14.1f} {second:>8.2f} {rate:>8.2f} "
              f"{rate_np:>15.2f} {rate / rate_np:>7.1f} {grads:>10.0f}")

    if args.batch_sizes:
        n = max(sizes)
        print(f"\nhjax chunk width at D={n} (run time, compile excluded):")
        for width in (int(s) for s in args.batch_sizes.split(",")):
            first, second, _ = time_hjax(model, data, args, batch_size=width)
            print(f"  batch_size {width:>4}: {second:7.2f} s  ({n / second:6.2f} fits/s; "
                  f"first call {first:.1f} s)")


if __name__ == "__main__":
    main()
