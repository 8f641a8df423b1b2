"""Censored data, measured (issue "Bayesian workflow"): SBC of censored Gaussian, Wiener and
LBA models (deadlines censoring about 10-20 % of trials), and a recovery study in which the
censored likelihood is unbiased where deleting the censored trials is not.

    python scripts/censoring.py [--datasets 200] [--replicates 40] [--only gaussian ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

import hjax as hj

TRIALS = 200


def gaussian():
    """y ~ N(mu + u_g, sigma), values above 1.2 recorded as 1.2 (right-censored)."""
    model = hj.Model(hj.Censored(hj.Gaussian(
        mu=hj.Fixed("mu", hj.Normal(0.0, 0.5)) + hj.Level("u", "g", scale=hj.HalfNormal(0.5)),
        sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))), upper="cap"), coords={"g": 10})
    return model, {"g": np.repeat(np.arange(10), 20), "cap": np.full(200, 1.2)}


def wiener():
    """A DDM whose trials end at a 1.1 s deadline."""
    model = hj.Model(hj.Censored(hj.Wiener(
        v=hj.Fixed("v", hj.Normal(1.0, 0.5)), a=hj.exp(hj.Fixed("log_a", hj.Normal(0.4, 0.15))),
        t0=hj.exp(hj.Fixed("log_t0", hj.Normal(-1.4, 0.15)))), upper="deadline"), coords={})
    return model, {"deadline": np.full(TRIALS, 1.1)}


def lba():
    """A two-accumulator LBA whose trials end at a 1.2 s deadline."""
    model = hj.Model(hj.Censored(hj.LBA(
        v=(hj.Fixed("v_match", hj.Normal(1.5, 0.3)), hj.Fixed("v_mis", hj.Normal(0.7, 0.3))),
        A=hj.exp(hj.Fixed("log_A", hj.Normal(-0.7, 0.2))),
        B=hj.exp(hj.Fixed("log_B", hj.Normal(-0.5, 0.2))),
        t0=hj.exp(hj.Fixed("log_t0", hj.Normal(-1.6, 0.2)))), upper="deadline"), coords={})
    return model, {"deadline": np.full(TRIALS, 1.2)}


def sbc(name, build, args):
    model, design = build()
    start = time.perf_counter()
    table = hj.sbc(model, design, n_datasets=args.datasets, key=11, batch_size=50,
                   directory=Path(args.out) / name)
    seconds = time.perf_counter() - start
    _, sim = jax.vmap(model.simulate, in_axes=(0, None))(
        jax.random.split(jax.random.key(0), 200), model.prepare(design, observed=False))
    value, limit = ("rt", "deadline") if "deadline" in design else ("y", "cap")
    censored = float(np.mean(np.asarray(sim[value]) >= design[limit][0]))
    test = hj.uniformity_test(table, alpha=0.01)
    rejected = [str(v) for v in test.variable.values[test.rejected.values]]
    print(f"\n{name}: {table.sizes['dataset']} fits in {seconds:.0f} s; censored share of "
          f"trials {censored:.3f}; rejected (Holm 0.01): {rejected or 'none'} (smallest "
          f"adjusted p {float(test.p_adjusted.min()):.3g}); fits with divergences "
          f"{int((table.divergences > 0).sum())}, still failing {int((~table.passed).sum())}")


def recovery(args):
    """The same simulated data fitted with the censored likelihood and after deleting the
    censored trials (as missing rows of an uncensored model); beside them, as the baseline a
    posterior mean's bias has without any deadline, the same trials before censoring."""
    censored, design = wiener()
    given = {"v": 1.0, "log_a": np.log(1.6), "log_t0": np.log(0.25)}
    prepared = censored.prepare(design, observed=False)
    keys = jax.random.split(jax.random.key(5), args.replicates)
    _, data = jax.vmap(lambda k: censored.simulate(k, prepared, given=given))(keys)
    data = {k: np.asarray(v) for k, v in data.items()}
    late = data["rt"] >= design["deadline"][0]
    uncensored = hj.Model(censored.likelihood.likelihood, coords={})
    placeholder = {"rt": np.zeros(TRIALS)}  # fixes the number of trials
    _, full = jax.vmap(lambda k: uncensored.simulate(k, placeholder, given=given))(keys)
    full = {k: np.asarray(v) for k, v in full.items()}
    # The deadline only clips: the same key draws the same trials.
    assert np.array_equal(full["rt"][~late], data["rt"][~late])
    deleted = hj.Model(censored.likelihood.likelihood, coords={}, missing=True)
    truncated = {"rt": np.where(late, np.nan, data["rt"]), "choice": data["choice"]}
    print(f"\nrecovery: {args.replicates} datasets of {TRIALS} trials, {late.mean():.3f} past "
          "the deadline; posterior mean - truth, mean over datasets (its standard error):")
    for label, model, columns in (("no deadline (baseline)", uncensored, full),
                                  ("censored likelihood", censored, data),
                                  ("censored trials deleted", deleted, truncated)):
        fit = hj.sample(model, columns, key=1, chains=4, warmup=500, draws=500, warn=False)
        for name, truth in given.items():
            error = fit.posterior[name].mean(("chain", "draw")).values - truth
            print(f"  {label:24s} {name:7s} bias {error.mean():+.4f} "
                  f"({error.std(ddof=1) / np.sqrt(error.size):.4f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--replicates", type=int, default=40)
    parser.add_argument("--out", default="hjax-results/censoring")
    parser.add_argument("--only", nargs="*", default=["gaussian", "wiener", "lba", "recovery"])
    args = parser.parse_args()
    for name in args.only:
        if name == "recovery":
            recovery(args)
        else:
            sbc(name, {"gaussian": gaussian, "wiener": wiener, "lba": lba}[name], args)


if __name__ == "__main__":
    main()
