"""Observation models. Each parameter slot takes a term, so any parameter can be hierarchical.

A likelihood states what it can do in its own class: censorable (`log_cdf` / `log_survival`,
for `hj.Censored`) and reducible (sufficient statistics per cell, for the exact reduction of
`hjax.model.reduction`); wrappers of a likelihood subclass `AbstractWrappedLikelihood`.
"""

# No `from __future__ import annotations`: equinox reads AbstractClassVar annotations at runtime.
import abc
from collections.abc import Callable, Mapping
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import jax.scipy.stats as jss
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from scipy.special import gammaln

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.log1p_exp import log1p_exp
from hjax.model.preview import preview
from hjax.model.terms import Const, Data, Term, as_term


def _term_field(**kwargs):
    return eqx.field(converter=as_term, **kwargs)


class Below(NamedTuple):
    """A bound the data put on a parameter slot, row by row: the slot's value must stay below
    `data[key]` (a non-decision time below each response time). Starts that break it have
    zero likelihood; the start search moves them inside with room `margin` (a fraction of the
    data's value).

    Example:
        >>> hj.Below("rt", margin=0.0).excess(jnp.array([0.25, 0.75]), jnp.array([0.5, 0.5]))
        Array([0.  , 0.25], dtype=float32)
    """

    key: str
    margin: float = 0.1

    def excess(self, value: Array, data: Array) -> Array:
        """How far each value is above the bound less its margin (0 where inside)."""
        return jax.nn.relu(value - (data - self.margin * jnp.abs(data)))


class Above(NamedTuple):
    """The mirror of `Below`: the slot's value must stay above `data[key]`, row by row.

    Example:
        >>> hj.Above("floor").excess(jnp.array([1.0]), jnp.array([2.0]))
        Array([1.2], dtype=float32)
    """

    key: str
    margin: float = 0.1

    def excess(self, value: Array, data: Array) -> Array:
        """How far each value is below the bound plus its margin (0 where inside)."""
        return jax.nn.relu(data + self.margin * jnp.abs(data) - value)


class Cells(NamedTuple):
    """The cells of an exact reduction: each row's cell (`index`) and their number (`count`).

    Example:
        >>> cells = Cells(np.array([0, 1, 0]), 2)
        >>> cells.sum(np.array([1.0, 2.0, 4.0])), cells.size()
        (array([5., 2.]), array([2., 1.]))
    """

    index: np.ndarray
    count: int

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The sum of `values` (one per row) over each cell's rows."""
        return np.bincount(self.index, weights=values, minlength=self.count)

    def size(self) -> np.ndarray:
        """The number of rows in each cell (float64)."""
        return self.sum(np.ones(len(self.index)))


class AbstractLikelihood(eqx.Module):
    """Base of observation models (`hj.Likelihood`).

    Subclasses declare `parameters` (slot name -> required support) and `observed` (names of the
    fields holding data keys), and implement `log_prob(**observed, **parameters)` (one value per
    observation) and `sample(key, **parameters)`. Host-side checks of the data they read go in
    `check_observed` (one column) and `check_columns` (several together). Two protocols are
    optional, each declared in the likelihood's own class (nothing elsewhere lists classes, so
    a new likelihood's own file is all it takes, plus its export):

    - censorable: implement `log_cdf` (lower and interval limits) and/or `log_survival` (upper
      ones); `censored_column` names the observed field censored (default: the first) and
      `deadline_slot` the slot an upper limit must exceed (RT models: "t0"; the limit is then
      a deadline, and a value past it is refused). `hj.Censored` checks this when built.
    - reducible: name `statistics` and implement `cell_statistics` (their values per cell, on
      the host), `reduced_log_prob` (a cell's log density from them) and set
      `statistics_description`; `hj.sample` then fits rows that share their slots as cells.

    Example:
        >>> lik = hj.Gaussian(mu=hj.Fixed("b0"), sigma=1.0)
        >>> lik.observed_keys(), sorted(lik.censorable()), lik.statistics
        ({'y': 'y'}, ['log_cdf', 'log_survival'], ('n', 'mean', 'ss'))
    """

    parameters: eqx.AbstractClassVar[dict[str, C.Support]]
    observed: eqx.AbstractClassVar[tuple[str, ...]]
    censored_column: ClassVar[str | None] = None
    deadline_slot: ClassVar[str | None] = None
    statistics: ClassVar[tuple[str, ...]] = ()
    statistics_description: ClassVar[str] = ""

    def terms(self) -> dict[str, Term]:
        return {name: getattr(self, name) for name in self.parameters}

    def slot_supports(self) -> dict[str, C.Support]:
        """Required support of each filled parameter slot."""
        return {name: self.parameters[name] for name in self.terms()}

    def observed_keys(self) -> dict[str, str]:
        """Argument name of `log_prob` -> key in the data."""
        return {name: getattr(self, name) for name in self.observed}

    @abc.abstractmethod
    def log_prob(self, **kwargs) -> Array:
        """Log density of each observation given the slots' values."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, **params) -> dict[str, Array]:
        """Observed arrays drawn given the slots' values, keyed as `log_prob`'s arguments."""

    def check_observed(self, name: str, values: np.ndarray) -> str | None:
        """Describe what is wrong with observed values (host check), or None."""
        return None

    def data_keys(self) -> dict[str, str]:
        """Argument name -> data key of the columns `log_prob` and `sample` read beside the
        observed ones (e.g. censoring limits)."""
        return {}

    def needs(self) -> list:
        """The `Need`s of those columns."""
        return []

    def log_cdf(self, value: Array, **params) -> Array:
        """log P(Y <= value) per row, for censoring (a likelihood that has it)."""
        raise NotImplementedError(f"{type(self).__name__} has no CDF: it cannot be censored.")

    def log_survival(self, value: Array, **params) -> Array:
        """log P(Y >= value) per row (for RT models: P(no response by `value`))."""
        raise NotImplementedError(f"{type(self).__name__} has no survival function: it "
                                  "cannot be censored.")

    def censorable(self) -> frozenset[str]:
        """Which of `log_cdf` and `log_survival` the likelihood implements."""
        return frozenset(name for name in ("log_cdf", "log_survival")
                         if getattr(type(self), name) is not getattr(AbstractLikelihood, name))

    def cell_statistics(self, y: np.ndarray, cells: Cells,
                        rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The `statistics` of each cell of one dataset's observed column `y` (float64, host);
        `rows` holds the other columns, row by row (e.g. Binomial's trials)."""
        raise NotImplementedError(f"{type(self).__name__} has no sufficient statistics.")

    def reduced_log_prob(self, stats: Mapping[str, Array], **params) -> Array:
        """The log density of each cell's rows, from its `stats` and the slots' values."""
        raise NotImplementedError(f"{type(self).__name__} has no sufficient statistics.")

    def data_bounds(self) -> dict[str, Below | Above]:
        """Bounds the data put on parameter slots (slot -> `Below` / `Above`): where broken, an
        observation has zero likelihood. The start search keeps chains inside them."""
        return {}

    def check_columns(self, data: Mapping[str, np.ndarray]) -> str | None:
        """Describe what is wrong across host columns (e.g. more successes than trials), or None.

        `model.prepare` calls it once every column passed its own checks."""
        return None

    def __str__(self):
        obs = ", ".join(self.observed_keys().values())
        lines = [f"{type(self).__name__} likelihood on {obs}"]
        lines += [f"  {name} = {term}" for name, term in self.terms().items()]
        return "\n".join(lines)


Likelihood = AbstractLikelihood  # the name before the `Abstract*` bases


class AbstractWrappedLikelihood(AbstractLikelihood):
    """Base of likelihoods that wrap another (`hj.Censored`, a reduced likelihood), as
    diffrax's `AbstractWrappedSolver`: it forwards the slots, observed columns, supports, data
    bounds, extra columns and data checks to `likelihood`, so a wrapper overrides only what it
    changes. It forwards neither protocol: a wrapper is censorable or reducible only by its own
    methods.

    Example:
        >>> lik = hj.Censored(hj.Gaussian(mu=hj.Fixed("b0"), sigma=1.0), lower="lod")
        >>> lik.slot_supports() == lik.likelihood.slot_supports(), lik.statistics
        (True, ())
    """

    likelihood: AbstractLikelihood

    @property
    def parameters(self):
        return self.likelihood.parameters

    @property
    def observed(self):
        return self.likelihood.observed

    def terms(self):
        return self.likelihood.terms()

    def slot_supports(self):
        return self.likelihood.slot_supports()

    def observed_keys(self):
        return self.likelihood.observed_keys()

    def data_keys(self):
        return self.likelihood.data_keys()

    def needs(self):
        return self.likelihood.needs()

    def data_bounds(self):
        return self.likelihood.data_bounds()

    def check_observed(self, name, values):
        return self.likelihood.check_observed(name, values)

    def check_columns(self, data):
        return self.likelihood.check_columns(data)


def _count_problem(values) -> str | None:
    if np.any(values < 0) or np.any(values != np.round(values)):
        return "must be non-negative whole numbers"
    return None


def count_excess(key: str, trials: Term, data: Mapping[str, np.ndarray]) -> str | None:
    """The error for rows where the counts in `data[key]` exceed their `trials`, or None.

    Example:
        >>> count_excess("y", hj.Data("n"), {"y": np.array([3.0, 9.0]), "n": np.array([5, 8])})
        "data['y'] exceeds data['n'] at rows [1] (9 > 8): a count cannot exceed ..."
    """
    if key not in data:
        return None
    if isinstance(trials, Const):
        limit, name = np.asarray(trials.value), f"trials = {trials.value:g}"
    elif isinstance(trials, Data) and trials.key in data:
        limit, name = data[trials.key], f"data['{trials.key}']"
    else:
        return None
    counts = data[key]
    limit = np.broadcast_to(limit, counts.shape)
    rows = np.flatnonzero(counts > limit)
    if not rows.size:
        return None
    shown = ", ".join(f"{counts[i]:g} > {limit[i]:g}" for i in rows[:5])
    return (f"data['{key}'] exceeds {name} at rows {preview(rows)} ({shown}): a count cannot "
            "exceed its number of trials. Check that the columns are not swapped and that they "
            "line up row by row.")


class Gaussian(AbstractLikelihood):
    """y ~ Normal(mu, sigma) (named Gaussian, as in brms, to keep `hj.Normal` for the prior).

    Example:
        >>> mu = hj.Fixed("b0") + hj.Level("alpha", "participant")
        >>> print(hj.Gaussian(mu=mu, sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))))
        Gaussian likelihood on y
          mu = b0 + alpha[participant]
          sigma = sigma
    """

    mu: Term = _term_field()
    sigma: Term = _term_field()
    y: str = eqx.field(static=True, default="y")

    parameters = {"mu": C.real, "sigma": C.positive}
    observed = ("y",)
    statistics = ("n", "mean", "ss")
    statistics_description = "n, mean, sum of squares"

    def log_prob(self, y, mu, sigma):
        return jss.norm.logpdf(y, mu, sigma)

    def cell_statistics(self, y, cells, rows):
        n = cells.size()
        mean = cells.sum(y) / n
        return {"n": n, "mean": mean, "ss": cells.sum((y - mean[cells.index]) ** 2)}

    def reduced_log_prob(self, stats, mu, sigma):
        n = stats["n"]
        return (-n * (jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi))
                - (stats["ss"] + n * (stats["mean"] - mu) ** 2) / (2 * sigma**2))

    def log_cdf(self, value, mu, sigma):
        return jss.norm.logcdf(value, mu, sigma)

    def log_survival(self, value, mu, sigma):
        return jss.norm.logcdf(-value, -mu, sigma)

    def sample(self, key, mu, sigma):
        return {"y": mu + sigma * jax.random.normal(key, jnp.shape(mu + sigma))}


class BernoulliLogit(AbstractLikelihood):
    """y in {0, 1} with P(y = 1) = logistic(logit_p).

    Example:
        >>> print(hj.BernoulliLogit(hj.Fixed("b0") + hj.Level("u", "group")))
        BernoulliLogit likelihood on y
          logit_p = b0 + u[group]
    """

    logit_p: Term = _term_field()
    y: str = eqx.field(static=True, default="y")

    parameters = {"logit_p": C.real}
    observed = ("y",)
    statistics = ("n", "sum")
    statistics_description = "n, number of ones"

    def log_prob(self, y, logit_p):
        # = y log(sigmoid(x)) + (1 - y) log(sigmoid(-x)), with one softplus instead of two.
        return y * logit_p - log1p_exp(logit_p)

    def cell_statistics(self, y, cells, rows):
        return {"n": cells.size(), "sum": cells.sum(y)}

    def reduced_log_prob(self, stats, logit_p):
        return stats["sum"] * logit_p - stats["n"] * log1p_exp(logit_p)

    def sample(self, key, logit_p):
        return {"y": jax.random.bernoulli(key, jax.nn.sigmoid(logit_p)).astype(jnp.int32)}

    def check_observed(self, name, values):
        return None if np.all((values == 0) | (values == 1)) else "must be 0 or 1"


class Binomial(AbstractLikelihood):
    """y successes in `trials` with logit-probability `logit_p`; trials are data or a whole number.

    Example:
        >>> lik = hj.Binomial(logit_p=hj.Level("h", "hospital", loc=hj.Fixed("mu")),
        ...                   trials=hj.Data("n"))
        >>> print(lik)
        Binomial likelihood on y
          logit_p = h[hospital]
          trials = data[n]
    """

    logit_p: Term = _term_field()
    trials: Term = _term_field(default=Data("trials"))
    y: str = eqx.field(static=True, default="y")

    parameters = {"logit_p": C.real, "trials": C.counts}
    observed = ("y",)
    statistics = ("n", "sum", "log_choose")
    statistics_description = "successes, sum of log binomial coefficients"

    def log_prob(self, y, logit_p, trials):
        log_choose = jsp.gammaln(trials + 1) - jsp.gammaln(y + 1) - jsp.gammaln(trials - y + 1)
        return log_choose + y * logit_p - trials * log1p_exp(logit_p)

    def cell_statistics(self, y, cells, rows):
        # The slots are alike within a cell, trials included: its rows' trials are one number.
        trials = np.broadcast_to(np.asarray(self.trials({}, rows), dtype=float), y.shape)
        log_choose = gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)
        return {"n": cells.size(), "sum": cells.sum(y), "log_choose": cells.sum(log_choose)}

    def reduced_log_prob(self, stats, logit_p, trials):
        return (stats["log_choose"] + stats["sum"] * logit_p
                - stats["n"] * trials * log1p_exp(logit_p))

    def sample(self, key, logit_p, trials):
        shape = jnp.shape(logit_p + trials)
        n = jnp.broadcast_to(trials, shape)
        draws = jax.random.binomial(key, n, jax.nn.sigmoid(logit_p), shape)
        return {"y": draws.astype(jnp.int32)}

    def check_observed(self, name, values):
        return _count_problem(values)

    def check_columns(self, data):
        return count_excess(self.y, self.trials, data)


class Poisson(AbstractLikelihood):
    """Counts y ~ Poisson(exp(log_rate)).

    Example:
        >>> print(hj.Poisson(log_rate=hj.Fixed("b0") + hj.Level("u", "group")))
        Poisson likelihood on y
          log_rate = b0 + u[group]
    """

    log_rate: Term = _term_field()
    y: str = eqx.field(static=True, default="y")

    parameters = {"log_rate": C.real}
    observed = ("y",)
    statistics = ("n", "sum", "log_factorial")
    statistics_description = "n, sum, sum of log factorials"

    def log_prob(self, y, log_rate):
        return y * log_rate - jnp.exp(log_rate) - jsp.gammaln(y + 1)

    def cell_statistics(self, y, cells, rows):
        return {"n": cells.size(), "sum": cells.sum(y), "log_factorial": cells.sum(gammaln(y + 1))}

    def reduced_log_prob(self, stats, log_rate):
        return stats["sum"] * log_rate - stats["n"] * jnp.exp(log_rate) - stats["log_factorial"]

    def log_cdf(self, value, log_rate):
        # P(Y <= k) = Q(k + 1, rate), the regularized upper incomplete gamma function; floored
        # at the smallest normal float, so that an underflow gives no NaN gradient.
        q = jsp.gammaincc(jnp.floor(value) + 1.0, jnp.exp(log_rate))
        return jnp.log(jnp.maximum(q, jnp.finfo(q.dtype).tiny))

    def log_survival(self, value, log_rate):
        # P(Y >= k) = P(k, rate), the regularized lower one (1 for k <= 0).
        k = jnp.ceil(value)
        p = jsp.gammainc(jnp.maximum(k, 1.0), jnp.exp(log_rate))
        return jnp.where(k > 0, jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny)), 0.0)

    def sample(self, key, log_rate):
        return {"y": jax.random.poisson(key, jnp.exp(log_rate)).astype(jnp.int32)}

    def check_observed(self, name, values):
        return _count_problem(values)


class Custom(AbstractLikelihood):
    """A user-supplied observation model: any pure JAX log density.

    `log_prob(**observed, **params)` returns one log density per observation; `sample(key,
    **params)` (optional, needed by `simulate`) returns a dict of observed arrays. `params` maps
    each parameter to a term, so any of them can be hierarchical; `supports` states a
    parameter's support (default real) so that priors and links are checked; `bounds` states
    the bounds the data put on a parameter (`{"shift": hj.Below("rt")}`: a shift below every
    response time), which the start search respects.

    Example:
        >>> def gumbel_lpdf(y, loc, scale):
        ...     z = (y - loc) / scale
        ...     return -jnp.log(scale) - z - jnp.exp(-z)
        >>> lik = hj.Custom(gumbel_lpdf,
        ...                 params={"loc": hj.Fixed("b0") + hj.Level("u", "group"), "scale": 1.0})
        >>> print(lik)
        Custom likelihood gumbel_lpdf on y
          loc = b0 + u[group]
          scale = 1
    """

    fn: Callable[..., Float[Array, " n"]] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    slots: tuple[Term, ...]
    sampler: Callable[..., dict[str, Array]] | None = eqx.field(static=True, default=None)
    keys: tuple[str, ...] = eqx.field(static=True, default=("y",))
    supports: tuple[tuple[str, C.Support], ...] = eqx.field(static=True, default=())
    bounds: tuple[tuple[str, Below | Above], ...] = eqx.field(static=True, default=())

    def __init__(self, log_prob, params, *, sample=None, observed=("y",), supports=None,
                 bounds=None):
        self.fn = log_prob
        self.names = tuple(params)
        self.slots = tuple(as_term(term) for term in params.values())
        self.sampler = sample
        self.keys = (observed,) if isinstance(observed, str) else tuple(observed)
        self.supports = tuple((supports or {}).items())
        self.bounds = tuple((bounds or {}).items())

    def __check_init__(self):
        for name, bound in self.bounds:
            if name not in self.names or not isinstance(bound, Below | Above):
                raise ModelError(f"Custom bounds: {name!r} -> {bound!r}; expected a parameter "
                                 f"of {list(self.names)} -> hj.Below(key) or hj.Above(key).")

    def data_bounds(self):
        return dict(self.bounds)

    @property
    def parameters(self):
        given = dict(self.supports)
        return {name: given.get(name, C.real) for name in self.names}

    @property
    def observed(self):
        return self.keys

    def terms(self):
        return dict(zip(self.names, self.slots, strict=True))

    def observed_keys(self):
        return {key: key for key in self.keys}

    def log_prob(self, **kwargs):
        out = self.fn(**kwargs)
        rows = jnp.shape(kwargs[self.keys[0]])[:1]
        if jnp.shape(out) != rows:
            # Summed over rows, another shape is silently wrong: (n, 2) counts each row twice,
            # (n - 1,) drops one. Shapes are static, so this is raised while tracing.
            raise ModelError(
                f"Custom likelihood '{getattr(self.fn, '__name__', 'fn')}' returned log "
                f"densities of shape {jnp.shape(out)} for {rows[0]} rows "
                f"of '{self.keys[0]}'; it must return one value per row, shape {rows}: sum over "
                "any other axis inside log_prob, and keep every row.")
        return out

    def sample(self, key, **params):
        if self.sampler is None:
            raise ModelError(
                f"Custom likelihood '{getattr(self.fn, '__name__', 'fn')}' has no `sample`; pass "
                "sample=... to simulate data from it."
            )
        return self.sampler(key, **params)

    def __str__(self):
        lines = [f"Custom likelihood {getattr(self.fn, '__name__', '')} on {', '.join(self.keys)}"]
        lines += [f"  {name} = {term}" for name, term in self.terms().items()]
        return "\n".join(lines)


def slot_problem(term: Term, required: C.Support) -> str | None:
    """Why `term` cannot fill a slot with support `required`, or None if it can."""
    if isinstance(term, Const):
        ok = bool(required.check(np.asarray(term.value)))
        return None if ok else f"the constant {term.value:g} is outside {required}"
    support = term.support()
    if isinstance(term, Data) or required.contains(support):
        return None
    return f"'{term}' has support {support}"
