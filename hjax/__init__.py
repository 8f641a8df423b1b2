"""hjax: hierarchical Bayesian models in JAX, fitted many at a time.

Example:
    >>> import hjax as hj
    >>> model = hj.Model(hj.Gaussian(mu=hj.Fixed("b0") + hj.Level("u", "school"),
    ...                              sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
    ...                  coords={"school": 8})
"""

from hjax import catalog
from hjax.cognitive.likelihoods import LBA, SDT, Wiener
from hjax.inference import check, diagnose, sample, summary
from hjax.model._data import encode
from hjax.model._term import Const, Data, Sum, Term, exp, inv_logit, softplus
from hjax.model.constraints import Constraint, CorrCholesky, Interval, Positive, Real
from hjax.model.fixed import Fixed
from hjax.model.level import Crossed, Level, Nested
from hjax.model.likelihoods import (
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
    Prior,
    Normal,
    StudentT,
    Uniform,
)
from hjax.studies.recover import recover
from hjax.studies.sbc import sbc
