"""SBC of every shipped model's config (the acceptance check of issue "Studies").

Runs `hjax sbc` on each config with `--datasets` (default 200) and prints, per model, the
number of fits, the time, the uniformity-test verdict per parameter and the fit diagnostics.

    python scripts/sbc_shipped.py [--datasets 200] [--warmup 500] [--draws 500] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax

import hjax as hj
from hjax import config as cfg

CONFIGS = ["varying_intercept", "varying_slope", "crossed_bernoulli", "sdt_brightness"]
ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--out", default="hjax-results/sbc-shipped")
    parser.add_argument("--only", nargs="*", default=CONFIGS)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {args.datasets} datasets per model, 4 chains x "
          f"({args.warmup} warmup + {args.draws} draws)")
    for name in args.only:
        config = cfg.load(ROOT / "configs" / f"{name}.yaml", datasets=args.datasets,
                          warmup=args.warmup, draws=args.draws)
        model, design = cfg.build(config)
        start = time.perf_counter()
        table = hj.sbc(model, design, n_datasets=config.datasets, key=config.seed,
                       settings=config.settings(), directory=Path(args.out) / name / "batches")
        elapsed = time.perf_counter() - start
        test = hj.uniformity_test(table, alpha=config.alpha)
        hj.write_report(Path(args.out) / name, table, test=test, title=f"SBC: {name}")
        rejected = [str(v) for v in test.variable.values[test.rejected.values]]
        by_parameter = test.p_adjusted.groupby("parameter").min()
        print(f"\n{name}: {table.sizes['dataset']} fits x {table.sizes['variable']} scalars "
              f"in {elapsed:.0f} s; rejected at {config.alpha} (Holm): {rejected or 'none'}")
        print("  smallest adjusted p per parameter: " + ", ".join(
            f"{p}={v:.3g}" for p, v in zip(by_parameter.parameter.values, by_parameter.values,
                                           strict=True)))
        print(f"  fits with divergences: {int((table.divergences > 0).sum())}, "
              f"max R-hat {float(table.max_rhat.max()):.3f}, "
              f"min ESS bulk {float(table.min_ess_bulk.min()):.0f}, "
              f"init failures {int(table.init_failures.sum())}, "
              f"mean 95% coverage {float(table.covered_95.mean()):.3f}")
        print(f"  report: {Path(args.out) / name / 'report.md'}")


if __name__ == "__main__":
    main()
