"""hjax: hierarchical Bayesian models in JAX, fitted many at a time.

`import hjax` sets JAX's CPU device count, before JAX starts: one device per available core
(`HJAX_CPU_DEVICES=n` before Python starts chooses n), so that fits spread over the cores. A
count chosen before the import (`XLA_FLAGS=--xla_force_host_platform_device_count=n`,
`jax.config.update("jax_num_cpu_devices", n)`) is kept, and so are the devices of a JAX that
has already run (`hjax.devices`).

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
from hjax.formula import Family, formula, register_family, registered_families
from hjax.inference import (
    ADVI,
    BlackJAXNUTS,
    InitPrior,
    InitUniform,
    LanesNUTS,
    Pathfinder,
    check,
    clear_caches,
    diagnose,
    sample,
    summary,
)
from hjax.inference.workflow.checks import plot_loo_pit, plot_ppc
from hjax.inference.workflow.predictive import (
    loo,
    loo_per_dataset,
    posterior_predictive,
    prior_predictive,
    prior_sensitivity,
)
from hjax.model.censoring import Censored
from hjax.model.constraints import (
    AbstractConstraint,
    AbstractSupport,
    Constraint,
    CorrCholesky,
    Interval,
    Positive,
    Real,
)
from hjax.model.data import encode
from hjax.model.fixed import Fixed
from hjax.model.imputed import Imputed
from hjax.model.level import Crossed, Level, Nested
from hjax.model.likelihoods import (
    Above,
    AbstractLikelihood,
    AbstractWrappedLikelihood,
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
    AbstractPrior,
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
    AbstractTerm,
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
    "Product", "Quotient", "Deterministic", "Imputed", "AbstractTerm",
    "exp", "inv_logit", "softplus", "encode", "formula",
    "Family", "register_family", "registered_families",
    # likelihoods
    "Likelihood", "Gaussian", "BernoulliLogit", "Binomial", "Poisson", "Custom", "Below", "Above",
    "Censored", "AbstractLikelihood", "AbstractWrappedLikelihood",
    "Wiener", "LBA", "SDT",
    # priors and constraints
    "Prior", "Normal", "StudentT", "Cauchy", "HalfNormal", "HalfCauchy", "HalfStudentT",
    "Exponential", "Gamma", "LogNormal", "Beta", "Uniform", "LKJCholesky",
    "Constraint", "Real", "Positive", "Interval", "CorrCholesky",
    "AbstractPrior", "AbstractConstraint", "AbstractSupport",
    # inference
    "sample", "summary", "diagnose", "check", "FitSettings", "StudySettings",
    "LanesNUTS", "BlackJAXNUTS", "InitUniform", "InitPrior", "ADVI", "Pathfinder",
    "clear_caches",
    "posterior_predictive", "prior_predictive", "loo", "loo_per_dataset", "prior_sensitivity",
    "plot_ppc", "plot_loo_pit",
    "Escalation",
    # studies
    "sbc", "recover", "uniformity_test", "recovery_metrics", "shrinkage", "write_report",
    "plot_ecdf_diff", "plot_rank_hist", "plot_recovery", "plot_shrinkage", "catalog",
    # data
    "datasets", "errors",
]
