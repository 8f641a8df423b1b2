"""The formula families of the model layer's likelihoods: gaussian, bernoulli, binomial,
poisson. Importing this module registers them (`hjax.formula` does).

Default priors follow Bambi: the Gaussian's are scaled by the response (intercept ~ Normal(mean
y, 2.5 sd y), sigma ~ HalfStudentT(4, sd y), log sigma's intercept ~ Normal(log sd y, 1) when
sigma has a formula of its own); the others' are on the logit or log scale, with sd y = 1.

Example:
    >>> GAUSSIAN.default_priors(Moments(0.0, 1.0))
    {'sigma_Intercept': Normal(loc=0.0, scale=1.0)}
"""

import numpy as np

from hjax.model.family import Family, Moments, register_family
from hjax.model.likelihoods import BernoulliLogit, Binomial, Gaussian, Poisson
from hjax.model.priors import Normal
from hjax.model.terms import Data, exp

__all__ = ["BERNOULLI", "BINOMIAL", "GAUSSIAN", "POISSON"]


def _gaussian_priors(moments: Moments) -> dict:
    return {"sigma_Intercept": Normal(float(np.log(moments.sd)), 1.0)}


GAUSSIAN = register_family(Family(
    "gaussian", main="mu", links={"sigma": exp}, required=("sigma",), scalars=("sigma",),
    priors=_gaussian_priors, data_scale=True,
    build=lambda slots, response, options: Gaussian(mu=slots["mu"], sigma=slots["sigma"],
                                                    y=response)))
BERNOULLI = register_family(Family(
    "bernoulli", main="logit_p",
    build=lambda slots, response, options: BernoulliLogit(slots["logit_p"], y=response)))
BINOMIAL = register_family(Family(
    "binomial", main="logit_p", options={"trials": None},
    build=lambda slots, response, options: Binomial(
        slots["logit_p"], trials=Data(options["trials"]), y=response)))
POISSON = register_family(Family(
    "poisson", main="log_rate",
    build=lambda slots, response, options: Poisson(slots["log_rate"], y=response)))
