"""Command line of the benchmark: which sections, at which sizes, written where.

Run it as `python -m scripts.bench` from the repository root (`make bench`): `__main__`
prepares JAX's devices and Stan's workers before this module imports anything that starts JAX.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import jax

from scripts.bench import machine, report, sections
from scripts.bench.peers import Settings

HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description="hjax vs NumPyro vs Stan: SBC throughput (and the DDM against Stan), ESS, "
                    "gradient floor, variants, compile time per shipped model.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: D = 1,2 and 4 chains x (50 + 50) everywhere")
    parser.add_argument("--datasets", default=None,
                        help="dataset counts D of the SBC sweep (default 1,16,64,256; quick 1,2)")
    parser.add_argument("--sections", default=",".join(sections.SECTIONS),
                        help=f"comma-separated subset of {','.join(sections.SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {HERE.relative_to(Path.cwd(), walk_up=True)};"
                             " with --quick a temporary folder, so the real results stay)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(sections.SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(sections.SECTIONS)}")
    default_sizes = "1,2" if args.quick else "1,16,64,256"
    args.datasets = tuple(int(x) for x in (args.datasets or default_sizes).split(","))
    if min(args.datasets) < 1:
        parser.error("--datasets must be positive integers")
    if args.out is None:
        args.out = Path("/tmp/hjax-bench-quick") if args.quick else HERE
    return args


def config(args: argparse.Namespace) -> sections.Config:
    """Full settings by default; `--quick` shrinks iterations and timing loops."""
    if args.quick:
        short = Settings(chains=4, warmup=50, draws=50)
        sbc = ess = variants = short
    else:
        sbc = variants = Settings(chains=4, warmup=500, draws=500)
        ess = Settings(chains=4, warmup=1000, draws=1000)
    focus = 64 if 64 in args.datasets else max(args.datasets)
    return sections.Config(sizes=args.datasets, focus=focus, ddm_datasets=2 if args.quick else 8,
                           sbc=sbc, ess=ess,
                           variants=variants, floor_seconds=0.2 if args.quick else 2.0,
                           logs=Path(os.environ.get("XDG_CACHE_HOME", HERE)))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    cfg = config(args)
    cfg.logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log = logging.getLogger("bench")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(relativeCreated)8.0f ms  %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    python = os.path.relpath(sys.executable)
    command = shlex.join([python, "-m", "scripts.bench", *(argv or sys.argv[1:])])
    info = machine.describe()
    log.info("%s on %s (%s cores), %s", command, info["cpu"], info["cpu cores (os.cpu_count)"],
             info["jax devices"])
    settings = {"sections": ", ".join(args.sections),
                "datasets D": ", ".join(map(str, cfg.sizes)), "quality/floor/variants at D":
                cfg.focus, "sbc, floor": _describe(cfg.sbc), "ess": _describe(cfg.ess),
                "variants": _describe(cfg.variants),
                "JAX CPU devices": f"{info['jax devices']}: one per core (hjax's default); "
                                   "NumPyro's parallel method needs one per chain",
                "Stan cache ($XDG_CACHE_HOME)": os.environ.get("XDG_CACHE_HOME")}
    results = {}
    for name in args.sections:
        # A fresh start per section: compiled programs of earlier ones are dropped (each holds
        # memory mappings; a process may hold vm.max_map_count of them, 65530 by default).
        jax.clear_caches()
        results[name] = sections.SECTIONS[name](cfg)
        for table in results[name]["tables"]:
            print("\n" + report.markdown_table(table), flush=True)
        # Written after every section, so a crash keeps what is done.
        paths = report.write(args.out, command, info, settings, results,
                             time.perf_counter() - start)
    log.info("wrote %s and %s (%.1f min)", *paths, (time.perf_counter() - start) / 60)


def _describe(s: Settings) -> str:
    return f"{s.chains} chains x ({s.warmup} warmup + {s.draws} draws)"
