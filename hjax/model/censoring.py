"""Censored observations: a value known only to lie below a limit, above one, or between two.

`hj.Censored(likelihood, lower=..., upper=..., interval=...)` wraps a likelihood that has a
CDF (`log_cdf`, for lower and interval limits) and/or a survival function (`log_survival`, for
upper ones): Gaussian and Poisson have both, the Wiener and LBA response-time models a
survival (the probability of no response by then); building one without what its limits
need is an error. The censored value is the likelihood's `censored_column` (default: its
first observed). Each limit is a data column with one value per row (-inf / inf: none on that
row). A row whose value is at or below its `lower` limit contributes log P(Y <= lower), one at
or above its `upper` limit log P(Y >= upper), and one with a finite `interval` end
log P(y <= Y <= end); the others their density. Where the likelihood names a `deadline_slot`
(RT models: t0), an upper limit is a response deadline: the trial ended without a response,
and a value past it is refused. The simulator applies the limits (type-I censoring), so SBC
and recovery studies of censored data work as for any model.

Example:
    >>> lik = hj.Censored(hj.Gaussian(mu=hj.Fixed("mu"), sigma=1.0), lower="lod")
    >>> model = hj.Model(lik, coords={})
    >>> data = model.prepare({"y": [0.0, 2.0, 0.0], "lod": [0.0, 0.0, -np.inf]})
    >>> lp = model.log_likelihood({"mu": jnp.array(1.0)}, data)  # log P(Y <= 0), then densities
    >>> [round(float(v), 3) for v in lp]
    [-1.841, -1.419, -1.419]
"""

# No `from __future__ import annotations`: equinox reads AbstractClassVar annotations at runtime.
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.likelihoods import AbstractLikelihood, AbstractWrappedLikelihood
from hjax.model.terms import OBS, Const, Need

__all__ = ["Censored"]

NEEDED = {"lower": "log_cdf", "upper": "log_survival", "interval": "log_cdf"}  # per limit


def _smallest(term) -> float:
    """The smallest value a term can take, where its support says (else 0)."""
    if isinstance(term, Const):
        return term.value
    support = term.support()
    return max(support.low, 0.0) if isinstance(support, C.Interval) else 0.0


def _log_diff_exp(a, b):
    """log(exp(a) - exp(b)) for a >= b, stably."""
    return a + jnp.log1p(-jnp.exp(jnp.minimum(b - a, 0.0)))


class Censored(AbstractWrappedLikelihood):
    """A likelihood whose observations may be censored (see the module).

    Args:
        likelihood: the observation model (with `log_cdf` / `log_survival`, as its limits need).
        lower: data column of left-censoring limits (value <= limit: censored).
        upper: data column of right-censoring limits (value >= limit: censored); for RT
            models, the response deadline.
        interval: data column of interval ends (finite: the value lies between the observed
            one and this end). Interval-censored data cannot be simulated.
    """

    lower: str | None = eqx.field(static=True, default=None)
    upper: str | None = eqx.field(static=True, default=None)
    interval: str | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        inner = self.likelihood
        if isinstance(inner, Censored) or not isinstance(inner, AbstractLikelihood):
            raise ModelError("hj.Censored wraps one likelihood (e.g. hj.Gaussian(...)).")
        if not (self.lower or self.upper or self.interval):
            raise ModelError("hj.Censored needs a limit column: lower=, upper= or interval=.")
        name, has = type(inner).__name__, inner.censorable()
        for arg, method in NEEDED.items():
            if getattr(self, arg) is not None and method not in has:
                raise ModelError(
                    f"hj.Censored({name}, {arg}={getattr(self, arg)!r}): {name} has no "
                    f"{method}, which {arg} limits need. Censor a likelihood that has it, or "
                    f"implement {method}(value, **slots) on {name}.")

    @property
    def value(self) -> str:
        """The argument of the censored value: the likelihood's `censored_column`, else its
        first observed."""
        return self.likelihood.censored_column or next(iter(self.likelihood.observed_keys()))

    def limits(self) -> dict[str, str]:
        """Argument name of `log_prob` -> data key of each limit column given."""
        named = {"lower": self.lower, "upper": self.upper, "interval": self.interval}
        return {f"limit_{arg}": key for arg, key in named.items() if key is not None}

    def data_keys(self):
        return super().data_keys() | self.limits()

    def needs(self):
        user = f"hj.Censored({type(self.likelihood).__name__})"
        return super().needs() + [Need(key, OBS, support=C.limits, user=user)
                                  for key in self.limits().values()]

    def log_prob(self, limit_lower=None, limit_upper=None, limit_interval=None, **kwargs):
        params = {k: v for k, v in kwargs.items() if k in self.likelihood.terms()}
        value = kwargs[self.value]
        # Every row's density (a censored row's recorded value, its limit, is a valid point);
        # each branch below is evaluated at the row's value where it is not taken, so its
        # gradient stays finite, and `where` picks each row's own.
        out = self.likelihood.log_prob(**kwargs)
        if limit_lower is not None:
            left = value <= limit_lower
            below = self.likelihood.log_cdf(jnp.where(left, limit_lower, value), **params)
            out = jnp.where(left, below, out)
        if limit_upper is not None:
            right = value >= limit_upper
            above = self.likelihood.log_survival(jnp.where(right, limit_upper, value), **params)
            out = jnp.where(right, above, out)
        if limit_interval is not None:
            within = jnp.isfinite(limit_interval) & (limit_interval > value)
            high = jnp.where(within, limit_interval, value + 1.0)
            mass = _log_diff_exp(self.likelihood.log_cdf(high, **params),
                                 self.likelihood.log_cdf(value, **params))
            out = jnp.where(within, mass, out)
        return out

    def sample(self, key, limit_lower=None, limit_upper=None, limit_interval=None, **params):
        if limit_interval is not None:
            raise ModelError("Interval-censored data cannot be simulated: the intervals are not "
                             "a model of how values are recorded. Simulate with lower=/upper=.")
        simulated = dict(self.likelihood.sample(key, **params))
        value = simulated[self.value]
        if limit_lower is not None:
            value = jnp.where(value <= limit_lower, limit_lower, value)
        if limit_upper is not None:
            value = jnp.where(value >= limit_upper, limit_upper, value)
        simulated[self.value] = value.astype(simulated[self.value].dtype)
        return simulated

    def check_columns(self, data):
        if self.lower and self.upper and self.lower in data and self.upper in data:
            crossed = np.flatnonzero(np.asarray(data[self.lower]) > np.asarray(data[self.upper]))
            if crossed.size:
                return (f"data['{self.lower}'] (lower limits) is above data['{self.upper}'] "
                        f"(upper limits) at rows {crossed[:5].tolist()}: no value lies in "
                        "between; swap the two columns or correct those rows")
        slot = self.likelihood.deadline_slot
        if self.upper and self.upper in data and slot is not None:
            problem = self._deadline_problem(slot, data)
            if problem:
                return problem
        return super().check_columns(data)

    def _deadline_problem(self, slot: str, data) -> str | None:
        """What is wrong with the deadlines (upper limits) of an RT model, or None."""
        deadline = np.asarray(data[self.upper])
        bound = self.likelihood.terms().get(slot)
        floor = 0.0 if bound is None else _smallest(bound)
        early = np.flatnonzero(deadline <= floor)
        if early.size:
            return (f"data['{self.upper}'] has response deadlines at or below the smallest "
                    f"non-decision time {slot} allows ({floor:g} s) at rows "
                    f"{early[:5].tolist()}: no decision can end before them")
        key = self.likelihood.observed_keys()[self.value]
        late = np.flatnonzero(np.asarray(data.get(key, -np.inf)) > deadline)
        if late.size:
            # Read as censored, such a row would lose its response silently.
            return (f"data['{key}'] is later than its deadline data['{self.upper}'] at rows "
                    f"{late[:5].tolist()}: a response after the deadline cannot be; "
                    f"correct those rows (a trial without a response has {key} equal to its "
                    "deadline) or raise their deadlines")
        return None

    def __str__(self):
        limits = ", ".join(f"{arg.removeprefix('limit_')}={key}"
                           for arg, key in self.limits().items())
        return f"{self.likelihood}\n  censored: {limits}"
