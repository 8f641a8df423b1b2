"""Robust fits of RT models, measured: starts, escalation, calibration (issue "Robust fits").

Runs, each with the study defaults (4 chains x (500 warmup + 500 draws), two refits of fits
that fail their diagnostics) unless a flag says otherwise, and prints per study: fits whose
chains did not all start, fits with stuck chains, the shares with divergences and with R-hat
above 1.01 before and after the refits, the fits still failing, and the uniformity test (all
fits, passing fits):

- ddm: SBC of the shipped hierarchical DDM (`hj.catalog.ddm`, 10 participants x 60 trials);
- lognormal: SBC of the README's custom model (its shifted lognormal, 20 participants x 30
  trials, run from the README's own code block);
- exgauss: SBC of an ex-Gaussian RT model whose density stays accurate in float32
  (`ex_gaussian`);
- exgauss_textbook: the same model with the density as a user writes it from its textbook
  form (`ex_gaussian_textbook`), which is rounding noise where tau is small: its stuck chains
  are found and refitted, and SBC over all fits flags it;
- lognormal_centered: the README's model with participant means centered around mu;
- wrong_t0: the DDM fitted with a wrong non-decision-time prior, which SBC must still flag
  after the refits;
- centered: the DDM with participants' log t0 centered, against the default non-centered
  form, without refits (the parameterisation's own effect; at 20 datasets the centered form
  diverged more: 0.75 of fits against 0.55);
- starts: each start of `hj.FitSettings.init` (uniform then prior draws, or prior draws) on
  the README's model, the ex-Gaussian and the DDM, without refits: which one leaves fewer
  fits with a stuck chain or a failed start, and at what cost.

    python scripts/robust_fits.py [--datasets 200] [--only ddm lognormal ...]
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import hjax as hj
from hjax.studies.report import escalation_summary

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_model(centered: bool = False):
    """The README's custom model and design, from its own code block; `centered`: participant
    means drawn around mu directly (mixes better when each participant's data pin it down)."""
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "def shifted_lognormal(" in b)
    names = {"hj": hj}
    exec(block, names)
    model, design = names["rt_model"], names["rt_design"]
    if centered:
        custom = model.likelihood
        mu = hj.Level("mu_p", "participant", loc=custom.terms()["mu"].terms[0],
                      scale=hj.HalfNormal(0.2), centered=True)
        params = custom.terms() | {"mu": mu}
        model = hj.Model(hj.Custom(custom.fn, params, sample=custom.sampler, observed=("rt",),
                                   supports=dict(custom.supports), bounds=dict(custom.bounds)),
                         coords=dict(model.group_coords))
    return model, design


def ex_gaussian(rt, mu, sigma, tau):
    """Ex-Gaussian log density, written to stay accurate in float32. With u = (rt - mu) / sigma,
    s = sigma / tau and z = u - s, it is -log(tau) + s * (s / 2 - u) + log_ndtr(z). Where z < 0
    the middle terms cancel as tau -> 0, so there it is computed as -log(tau) - u**2 / 2 +
    log(erfcx(-z / sqrt(2)) / 2), whose terms do not cancel."""
    u = (rt - mu) / sigma
    s = sigma / tau
    z = u - s
    below = jnp.minimum(z, 0.0)  # both branches finite everywhere
    left = -u**2 / 2 + jnp.log(jax.scipy.special.erfcx(-below / jnp.sqrt(2.0)) / 2)
    right = s * (s / 2 - u) + jax.scipy.special.log_ndtr(jnp.maximum(z, 0.0))
    return -jnp.log(tau) + jnp.where(z < 0, left, right)


def ex_gaussian_textbook(rt, mu, sigma, tau):
    """The ex-Gaussian log density as a user writes it from its textbook form: its terms of
    order sigma**2 / tau**2 cancel in float32 as tau -> 0, where its gradient is rounding
    noise and chains stick (`hj.diagnose` counts them)."""
    z = (rt - mu) / sigma - sigma / tau
    return (-jnp.log(tau) + (mu - rt) / tau + sigma**2 / (2 * tau**2)
            + jax.scipy.special.log_ndtr(z))


def sample_ex_gaussian(key, mu, sigma, tau):
    normal, exponential = jax.random.split(key)
    shape = jnp.shape(mu)
    return {"rt": mu + sigma * jax.random.normal(normal, shape)
            + tau * jax.random.exponential(exponential, shape)}


def ex_gaussian_model(participants=20, trials=30, density=ex_gaussian):
    """Ex-Gaussian RTs (seconds): a participant's normal mean around mu, sigma and tau shared."""
    model = hj.Model(
        hj.Custom(density,
                  params={"mu": hj.Fixed("mu", hj.Normal(0.4, 0.1))
                          + hj.Level("mu_p", "participant", scale=hj.HalfNormal(0.05)),
                          "sigma": hj.Fixed("sigma", hj.HalfNormal(0.1)),
                          "tau": hj.Fixed("tau", hj.HalfNormal(0.3))},
                  sample=sample_ex_gaussian, observed=("rt",),
                  supports={"sigma": hj.Positive(), "tau": hj.Positive()}),
        coords={"participant": participants})
    return model, {"participant": np.repeat(np.arange(participants), trials)}


def wrong_t0_model(participants=10, trials=60):
    """The shipped DDM, but with log t0 ~ Normal(-1.0, 0.1) instead of Normal(-1.4, 0.2).

    (A prior as wide as the right one, Normal(-1.0, 0.2), is not flagged at 40 datasets: 600
    trials pin t0 down, and the posterior hardly moves; SBC has no power against it.)"""
    right = hj.catalog.ddm(participants, trials)[0].likelihood
    t0 = hj.exp(hj.Fixed("log_t0", hj.Normal(-1.0, 0.1))
                + hj.Level("log_t0_p", "participant", scale=hj.HalfNormal(0.2)))
    return hj.Model(hj.Wiener(v=right.v, a=right.a, t0=t0), coords={"participant": participants})


def report(name: str, table, seconds: float) -> None:
    test = hj.uniformity_test(table, alpha=0.01)
    rejected = [str(v) for v in test.variable.values[test.rejected.values]]
    print(f"\n{name}: {table.sizes['dataset']} fits in {seconds:.0f} s; "
          f"fits with chains that never started: {int((table.init_failures > 0).sum())}")
    summary = escalation_summary(table)
    if summary is not None and table.sizes["attempt"] > 1:
        print(f"  refitted {summary['refitted']}, still failing {summary['still failing']}; "
              f"with a stuck chain {summary['stuck before']:.3f} -> {summary['stuck after']:.3f}, "
              f"divergent {summary['divergent before']:.3f} -> {summary['divergent after']:.3f}, "
              f"R-hat > {summary['R-hat limit']:g} {summary['R-hat above the limit before']:.3f} "
              f"-> {summary['R-hat above the limit after']:.3f}")
    else:
        print(f"  with a stuck chain {float((table.stuck_chains > 0).mean()):.3f}, divergent "
              f"{float((table.divergences > 0).mean()):.3f}, R-hat > 1.01 "
              f"{float((~(table.max_rhat <= 1.01)).mean()):.3f}, divergent transitions "
              f"{int(table.divergences.sum())}")
    print(f"  rejected (all fits, Holm 0.01): {rejected or 'none'}")
    if "passed" in table and 0 < int(table.passed.sum()) < table.sizes["dataset"]:
        passing = table.isel(dataset=table.passed.values)
        again = hj.uniformity_test(passing, alpha=0.01)
        print(f"  rejected ({passing.sizes['dataset']} passing fits): "
              f"{[str(v) for v in again.variable.values[again.rejected.values]] or 'none'}")


def run(name: str, args) -> None:
    out = Path(args.out) / name
    options = {"n_datasets": args.datasets, "key": args.seed, "batch_size": args.batch_size}
    if name == "ddm":
        model, design = hj.catalog.ddm(10, 60)
        studies = {"ddm": dict(model=model)}
    elif name == "lognormal":
        model, design = readme_model()
        studies = {"lognormal": dict(model=model)}
    elif name == "exgauss":
        model, design = ex_gaussian_model()
        studies = {"exgauss": dict(model=model)}
    elif name == "exgauss_textbook":
        model, design = ex_gaussian_model(density=ex_gaussian_textbook)
        studies = {"exgauss_textbook": dict(model=model)}
    elif name == "lognormal_centered":
        model, design = readme_model(centered=True)
        studies = {"lognormal_centered": dict(model=model)}
    elif name == "starts":
        none = {"escalation": {"attempts": 0}}
        models = {"README": readme_model(), "ex-Gaussian": ex_gaussian_model(),
                  "ex-Gaussian (textbook)": ex_gaussian_model(density=ex_gaussian_textbook),
                  "DDM": hj.catalog.ddm(10, 60)}
        for label, (model, design) in models.items():
            for init in (None, "prior"):
                start = time.perf_counter()
                where = f"starts_{label}_{init or 'uniform'}"
                table = hj.sbc(model, design, directory=out / where, init=init, **options, **none)
                report(f"{label}, init={init}", table, time.perf_counter() - start)
        return
    elif name == "wrong_t0":
        model, design = hj.catalog.ddm(10, 60)
        studies = {"wrong_t0": dict(model=model, fit_model=wrong_t0_model())}
    else:
        model, design = hj.catalog.ddm(10, 60)
        centered, _ = hj.catalog.ddm(10, 60, centered=("log_t0",))
        none = {"escalation": {"attempts": 0}}
        studies = {"non-centered log_t0": dict(model=model, **none),
                   "centered log_t0": dict(model=centered, **none)}
    for label, study in studies.items():
        start = time.perf_counter()
        table = hj.sbc(study.pop("model"), design, directory=out / label.replace(" ", "_"),
                       **options, **study)
        report(label, table, time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="hjax-results/robust-fits")
    parser.add_argument("--only", nargs="*", default=["ddm", "lognormal", "exgauss",
                                                      "exgauss_textbook", "lognormal_centered",
                                                      "wrong_t0", "centered", "starts"])
    args = parser.parse_args()
    print(f"backend {jax.default_backend()} x {jax.device_count()}; {args.datasets} datasets "
          "per study, 4 chains x (500 + 500), two refits")
    for name in args.only:
        run(name, args)


if __name__ == "__main__":
    main()
