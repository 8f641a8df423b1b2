"""Inference: BlackJAX NUTS over many chains and many datasets in one compiled program.

Importing it registers the samplers and initialisations that settings name (`"nuts"`,
`"blackjax"`; `"uniform"`, `"prior"`, `"advi"`, `"pathfinder"`).
"""

from hjax.inference.run.chunks import clear_caches, compiled_programs
from hjax.inference.run.init import AbstractInit, InitPrior, InitUniform
from hjax.inference.run.sample import sample
from hjax.inference.run.samplers import AbstractSampler, BlackJAXNUTS, LanesNUTS
from hjax.inference.run.warmstart import ADVI, Pathfinder
from hjax.inference.workflow.diagnostics import check, diagnose, summary

__all__ = ["ADVI", "AbstractInit", "AbstractSampler", "BlackJAXNUTS", "InitPrior", "InitUniform",
           "LanesNUTS", "Pathfinder", "check", "clear_caches", "compiled_programs", "diagnose",
           "sample", "summary"]
