"""Likelihoods and simulators of cognitive models, as pure JAX functions."""

from hjax.cognitive.lba import lba_log_density, lba_log_survival, lba_sample
from hjax.cognitive.sdt import sdt_log_likelihood, sdt_sample
from hjax.cognitive.wiener import (
    wiener_log_density,
    wiener_log_density_with_lapse,
    wiener_log_survival,
    wiener_prob_upper,
    wiener_sample,
    wiener_sample_with_lapse,
)

__all__ = [
    "lba_log_density",
    "lba_log_survival",
    "lba_sample",
    "sdt_log_likelihood",
    "sdt_sample",
    "wiener_log_density",
    "wiener_log_density_with_lapse",
    "wiener_log_survival",
    "wiener_prob_upper",
    "wiener_sample",
    "wiener_sample_with_lapse",
]
