"""Time the Wiener log density (and its gradient) per 1e6 trials, jitted and warm.

Optionally times a published implementation in the same run: HDDM's Cython
``wfpt.wiener_logp_array`` (PyPI ``hddm-wfpt``), which must live in its own interpreter so that
it never enters the project's environment, e.g.

    python3 -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install hddm-wfpt
    .venv/bin/python scripts/bench_wiener.py --peer-python /tmp/peer-venv/bin/python

HDDM computes no gradients, so the ratio is for the log density alone. Both sides get the same
per-trial parameters (sv = 0) and the same data, and the script reports how far they agree.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from hjax.cognitive import wiener_log_density, wiener_sample

PEER_CODE = """
import json, sys, time
import numpy as np
import wfpt
d = np.load(sys.argv[1])
x = np.where(d["choice"] == 1, d["rt"], -d["rt"]).astype(np.float64)
zeros = np.zeros_like(x)
args = (x, d["v"], zeros, d["a"], d["w"], zeros, d["t0"], zeros, 1e-8)
wfpt.wiener_logp_array(*args)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    logp = wfpt.wiener_logp_array(*args)
    times.append(time.perf_counter() - start)
np.save(sys.argv[2], logp[:10_000])
print(json.dumps({"seconds": float(np.median(times))}))
"""


def _median_seconds(fn, repeats):
    jax.block_until_ready(fn())  # compile and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _run_peer(peer_python, data, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        data_path, out_path = os.path.join(tmp, "data.npz"), os.path.join(tmp, "logp.npy")
        np.savez(data_path, **data)
        proc = subprocess.run(
            [peer_python, "-c", PEER_CODE, data_path, out_path, str(repeats)],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            return None, proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"], np.load(out_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="trials")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--x64", action="store_true", help="float64 instead of float32")
    parser.add_argument("--peer-python", default=os.environ.get("HJAX_PEER_PYTHON",
                                                                "/tmp/peer-venv/bin/python"))
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)  # a script, not the library: allowed here
    dtype = jnp.float64 if args.x64 else jnp.float32

    keys = jax.random.split(jax.random.key(0), 6)
    n = args.n
    v = jax.random.uniform(keys[0], (n,), dtype, -2.0, 2.0)
    a = jax.random.uniform(keys[1], (n,), dtype, 0.8, 2.5)
    w = jax.random.uniform(keys[2], (n,), dtype, 0.3, 0.7)
    t0 = jax.random.uniform(keys[3], (n,), dtype, 0.1, 0.4)
    sv = jnp.zeros(n, dtype)

    sample = jax.jit(lambda k: wiener_sample(k, v, a, w, t0, sv))
    sample_s = _median_seconds(lambda: sample(keys[4]), max(1, args.repeats // 2))
    rt, choice = sample(keys[4])

    density = jax.jit(wiener_log_density)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda v, a, w, t0, sv: jnp.sum(wiener_log_density(rt, choice, v, a, w, t0, sv)),
        argnums=range(5),
    ))
    dens_s = _median_seconds(lambda: density(rt, choice, v, a, w, t0, sv), args.repeats)
    grad_s = _median_seconds(lambda: value_and_grad(v, a, w, t0, sv), args.repeats)

    per = 1e6 / n
    print(f"backend {jax.default_backend()} ({jax.device_count()} device), {jnp.dtype(dtype).name},"
          f" n={n}, median of {args.repeats}")
    print(f"hjax log density          : {dens_s * per:8.4f} s per 1e6 trials")
    print(f"hjax log density + grad(5): {grad_s * per:8.4f} s per 1e6 trials")
    print(f"hjax exact sampler        : {sample_s * per:8.4f} s per 1e6 trials")

    if not os.path.exists(args.peer_python):
        print(f"peer: no interpreter at {args.peer_python}; install hddm-wfpt in a separate "
              "venv and pass --peer-python to compare")
        return
    data = {k: np.asarray(x, np.float64) for k, x in
            dict(rt=rt, v=v, a=a, w=w, t0=t0).items()}
    data["choice"] = np.asarray(choice)
    peer_s, peer_logp = _run_peer(args.peer_python, data, args.repeats)
    if peer_s is None:
        print(f"peer: hddm-wfpt not usable from {args.peer_python}: {peer_logp[0]}")
        return
    ours = np.asarray(density(rt, choice, v, a, w, t0, sv))[: len(peer_logp)]
    print(f"peer HDDM wfpt log density: {peer_s * per:8.4f} s per 1e6 trials "
          f"(ratio peer/hjax = {peer_s / dens_s:.2f})")
    print(f"agreement on {len(peer_logp)} trials: max |diff| = "
          f"{np.max(np.abs(ours - peer_logp)):.2e} (HDDM err=1e-8)")


if __name__ == "__main__":
    main()
