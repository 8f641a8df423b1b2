"""Benchmark suite: hjax against NumPyro and Stan. Run `make bench` or `python -m scripts.bench`."""
