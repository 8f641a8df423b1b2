"""Inference: BlackJAX NUTS over many chains and many datasets in one compiled program."""

from hjax.inference.diagnostics import check, diagnose, summary
from hjax.inference.sample import sample

__all__ = ["check", "diagnose", "sample", "summary"]
