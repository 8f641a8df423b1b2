"""hjax: hierarchical Bayesian models in JAX, fitted many at a time.

Example:
    >>> import hjax as hj
    >>> model = hj.Model(hj.Gaussian(mu=hj.Fixed("b0") + hj.Level("u", "school"),
    ...                              sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
    ...                  coords={"school": 8})
    >>> model.param_dims  # what a fit reports, with its dims
    {'b0': (), 'u_sd': (), 'sigma': (), 'u': ('school',)}
"""

# Before anything else can start JAX: its CPU devices are fixed at its first operation.
from hjax.devices import configure_at_import

configure_at_import()

from hjax import catalog, datasets, errors
from hjax.cognitive.likelihoods import LBA, SDT, Wiener
from hjax.inference import check, diagnose, sample, summary
from hjax.inference.checks import plot_loo_pit, plot_ppc
from hjax.inference.predictive import (
    loo,
    loo_per_dataset,
    posterior_predictive,
    prior_predictive,
    prior_sensitivity,
)
from hjax.model.censoring import Censored
from hjax.model.constraints import Constraint, CorrCholesky, Interval, Positive, Real
from hjax.model.data import encode
from hjax.model.fixed import Fixed
from hjax.model.formula import formula
from hjax.model.imputed import Imputed
from hjax.model.level import Crossed, Level, Nested
from hjax.model.likelihoods import (
    Above,
    Below,
    BernoulliLogit,
    Binomial,
    Custom,
    Gaussian,
    Likelihood,
    Poisson,
)
from hjax.model.model import Model
from hjax.model.priors import (
    Beta,
    Cauchy,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    LKJCholesky,
    LogNormal,
    Normal,
    Prior,
    StudentT,
    Uniform,
)
from hjax.model.terms import (
    Const,
    Data,
    Deterministic,
    Neg,
    Product,
    Quotient,
    Sum,
    Term,
    exp,
    inv_logit,
    softplus,
)
from hjax.settings import Escalation, FitSettings, StudySettings
from hjax.studies.calibration import uniformity_test
from hjax.studies.metrics import recovery_metrics, shrinkage
from hjax.studies.plots import plot_ecdf_diff, plot_rank_hist, plot_recovery, plot_shrinkage
from hjax.studies.recover import recover
from hjax.studies.report import write_report
from hjax.studies.sbc import sbc

__all__ = [
    # model
    "Model", "Fixed", "Level", "Nested", "Crossed", "Data", "Const", "Sum", "Term", "Neg",
    "Product", "Quotient", "Deterministic", "Imputed",
    "exp", "inv_logit", "softplus", "encode", "formula",
    # likelihoods
    "Likelihood", "Gaussian", "BernoulliLogit", "Binomial", "Poisson", "Custom", "Below", "Above",
    "Censored",
    "Wiener", "LBA", "SDT",
    # priors and constraints
    "Prior", "Normal", "StudentT", "Cauchy", "HalfNormal", "HalfCauchy", "HalfStudentT",
    "Exponential", "Gamma", "LogNormal", "Beta", "Uniform", "LKJCholesky",
    "Constraint", "Real", "Positive", "Interval", "CorrCholesky",
    # inference
    "sample", "summary", "diagnose", "check", "FitSettings", "StudySettings",
    "posterior_predictive", "prior_predictive", "loo", "loo_per_dataset", "prior_sensitivity",
    "plot_ppc", "plot_loo_pit",
    "Escalation",
    # studies
    "sbc", "recover", "uniformity_test", "recovery_metrics", "shrinkage", "write_report",
    "plot_ecdf_diff", "plot_rank_hist", "plot_recovery", "plot_shrinkage", "catalog",
    # data
    "datasets", "errors",
]
