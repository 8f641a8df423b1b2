"""The GPU figures in one command: SBC throughput of the 20-group varying-intercept model on
1,000 datasets and of the hierarchical DDM on 200, each with compile time apart, lockstep
efficiency and device memory (issue "Performance, second round").

Run by scripts/gpu_check.sh on a machine with an NVIDIA GPU; `--quick` shrinks it to a
smoke test that runs anywhere (the CPU included).

    python scripts/gpu_check.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import hjax as hj


def _memory() -> dict:
    stats = jax.devices()[0].memory_stats() or {}
    return {k: stats[k] / 2**30 for k in ("peak_bytes_in_use", "bytes_limit") if k in stats}


def study(name: str, model, design, n_datasets: int, settings: dict) -> dict:
    """One SBC in one batch (one program), timed: the first batch compiles."""
    start = time.perf_counter()
    table = hj.sbc(model, design, n_datasets=n_datasets, key=0, batch_size=n_datasets,
                   escalation={"attempts": 0}, **settings)
    seconds = time.perf_counter() - start
    fit = hj.sample(model, {k: np.repeat(np.asarray(v)[None], 2, 0) for k, v in
                            model.simulate(jax.random.key(1), model.prepare(
                                design, observed=False))[1].items()},
                    key=2, warn=False, **settings)
    rejected = hj.uniformity_test(table, alpha=0.01)
    row = {
        "study": name, "datasets": n_datasets, "seconds": seconds,
        "fits_per_minute": 60 * n_datasets / seconds,
        "lockstep_efficiency_2_datasets": fit.posterior.attrs["lockstep_efficiency"],
        "compile_seconds_2_datasets": fit.posterior.attrs["compile_time"],
        "rejected": [str(v) for v in rejected.variable.values[rejected.rejected.values]],
        "fits_with_divergences": int((table.divergences > 0).sum()),
        "memory_gib": _memory(),
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: 8 datasets each")
    parser.add_argument("--out", default="hjax-results/gpu-check")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()}", flush=True)
    settings = {"chains": 4, "warmup": 500, "draws": 500}
    if args.quick:
        settings = {"chains": 2, "warmup": 100, "draws": 100, "max_rank": 19}
    n_vi, n_ddm = (8, 8) if args.quick else (1000, 200)
    rows = [study("varying_intercept (20 x 10)", *hj.catalog.varying_intercept(20, 10), n_vi,
                  settings),
            study("ddm (20 participants x 100 trials)", *hj.catalog.ddm(20, 100), n_ddm,
                  settings)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps({
        "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "settings": settings, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
