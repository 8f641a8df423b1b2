"""Prior distributions with explicit support (numpyro's convention).

Each prior has `log_prob` (elementwise, normalised) and `sample(key, shape)`, and a `support`
that `hjax.model` checks against the slot it is put in (a scale needs a positive prior).
Densities come from `jax.scipy.stats`; the LKJ-Cholesky density and sampler are written here
because neither jax nor distrax has them (formulas as in Stan's manual and numpyro).
"""

# No `from __future__ import annotations`: equinox reads AbstractVar annotations at runtime.
import abc
import dataclasses
import math
import numbers
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import jax.scipy.stats as jss
from jaxtyping import Array, PRNGKeyArray

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.scalars import plain_fields


class AbstractPrior(eqx.Module):
    """A distribution over one parameter's values (elementwise unless stated).

    Subclasses declare `support` (a class attribute, or a property where it depends on the
    fields), name in `positive_fields` the fields that must be > 0 (every field must be
    finite), and implement `log_prob` and `sample`.

    Example:
        >>> hj.Normal(0.0, 5.0).log_prob(jnp.zeros(3)).shape
        (3,)
    """

    support: eqx.AbstractVar[C.AbstractConstraint]
    positive_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        plain_fields(self)  # np.log(0.15) as a loc is the number, not a traced array

    def __check_init__(self):
        name = type(self).__name__
        for field in self.positive_fields:
            value = getattr(self, field)
            if not value > 0:
                raise ModelError(f"{name} needs {field} > 0; got {field}={value}.")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value):
                raise ModelError(f"{name} needs a finite {field.name}; got {field.name}={value}.")

    @abc.abstractmethod
    def log_prob(self, x: Array) -> Array:
        """Log density at each value of `x` (normalised)."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...] = ()) -> Array:
        """Independent draws of the given shape."""

    def __str__(self):
        fields = ", ".join(f"{getattr(self, f.name):g}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"

    def described(self, default: "AbstractPrior") -> str:
        """The prior as `print(model)` shows it: marked when it is the block's default.

        Example:
            >>> hj.Normal(0.0, 1.0).described(default=hj.Normal(0.0, 1.0))
            'Normal(0, 1) (default)'
        """
        return f"{self} (default)" if self == default else str(self)


Prior = AbstractPrior  # its name before the Abstract* convention, kept as an alias


class AbstractSymmetric(AbstractPrior):
    """A family symmetric about `loc` (Normal, Student-t, Cauchy), full or folded at 0.

    The full form draws `loc + scale * z`, z from the family's standard member; the half form
    (`folded`, loc 0) draws `|scale * z|` and has twice the density on (0, inf). A family
    writes `_standard` and `_logpdf` once, and its half form reuses them.
    """

    loc: eqx.AbstractVar[float]
    scale: eqx.AbstractVar[float]
    folded: eqx.AbstractClassVar[bool]
    positive_fields = ("scale",)

    @abc.abstractmethod
    def _standard(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
        """Draws of the member with loc 0 and scale 1 (and this prior's shape parameters)."""

    @abc.abstractmethod
    def _logpdf(self, x: Array, loc: float) -> Array:
        """Log density of the member with this `loc` and this prior's scale."""

    @property
    def support(self):
        return C.positive if self.folded else C.real

    def log_prob(self, x):
        if self.folded:
            return math.log(2.0) + self._logpdf(x, self.loc)
        return self._logpdf(x, self.loc)

    def sample(self, key, shape=()):
        scaled = self.scale * self._standard(key, shape)
        return jnp.abs(scaled) if self.folded else self.loc + scaled


class Normal(AbstractSymmetric):
    """Normal(loc, scale).

    Example:
        >>> hj.Normal(0.0, 5.0)
        Normal(loc=0.0, scale=5.0)
    """

    loc: float = 0.0
    scale: float = 1.0
    folded = False

    def _standard(self, key, shape):
        return jax.random.normal(key, shape)

    def _logpdf(self, x, loc):
        return jss.norm.logpdf(x, loc, self.scale)


class HalfNormal(AbstractSymmetric):
    """|Normal(0, scale)| on (0, inf).

    Example:
        >>> hj.HalfNormal(1.0)
        HalfNormal(scale=1.0)
    """

    scale: float = 1.0
    loc = 0.0
    folded = True
    _standard, _logpdf = Normal._standard, Normal._logpdf


class StudentT(AbstractSymmetric):
    """Student-t(df, loc, scale).

    Example:
        >>> hj.StudentT(3.0, 0.0, 2.5)
        StudentT(df=3.0, loc=0.0, scale=2.5)
    """

    df: float = 3.0
    loc: float = 0.0
    scale: float = 1.0
    folded = False
    positive_fields = ("df", "scale")

    def _standard(self, key, shape):
        return jax.random.t(key, self.df, shape)

    def _logpdf(self, x, loc):
        return jss.t.logpdf(x, self.df, loc, self.scale)


class HalfStudentT(AbstractSymmetric):
    """|Student-t(df, 0, scale)| on (0, inf).

    Example:
        >>> hj.HalfStudentT(3.0, 1.0)
        HalfStudentT(df=3.0, scale=1.0)
    """

    df: float = 3.0
    scale: float = 1.0
    loc = 0.0
    folded = True
    positive_fields = ("df", "scale")
    _standard, _logpdf = StudentT._standard, StudentT._logpdf


class Cauchy(AbstractSymmetric):
    """Cauchy(loc, scale).

    Example:
        >>> hj.Cauchy(0.0, 2.5)
        Cauchy(loc=0.0, scale=2.5)
    """

    loc: float = 0.0
    scale: float = 1.0
    folded = False

    def _standard(self, key, shape):
        return jax.random.cauchy(key, shape)

    def _logpdf(self, x, loc):
        return jss.cauchy.logpdf(x, loc, self.scale)


class HalfCauchy(AbstractSymmetric):
    """|Cauchy(0, scale)| on (0, inf).

    Example:
        >>> hj.HalfCauchy(5.0)
        HalfCauchy(scale=5.0)
    """

    scale: float = 1.0
    loc = 0.0
    folded = True
    _standard, _logpdf = Cauchy._standard, Cauchy._logpdf


class Exponential(AbstractPrior):
    """Exponential(rate) on (0, inf).

    Example:
        >>> hj.Exponential(1.0)
        Exponential(rate=1.0)
    """

    rate: float = 1.0
    support = C.positive
    positive_fields = ("rate",)

    def log_prob(self, x):
        return jss.expon.logpdf(x, scale=1.0 / self.rate)

    def sample(self, key, shape=()):
        return jax.random.exponential(key, shape) / self.rate


class Gamma(AbstractPrior):
    """Gamma(shape, rate) on (0, inf).

    Example:
        >>> hj.Gamma(2.0, 1.0)
        Gamma(concentration=2.0, rate=1.0)
    """

    concentration: float = 1.0
    rate: float = 1.0
    support = C.positive
    positive_fields = ("concentration", "rate")

    def log_prob(self, x):
        return jss.gamma.logpdf(x, self.concentration, scale=1.0 / self.rate)

    def sample(self, key, shape=()):
        return jax.random.gamma(key, self.concentration, shape) / self.rate


class LogNormal(AbstractPrior):
    """exp(Normal(loc, scale)) on (0, inf).

    Example:
        >>> hj.LogNormal(0.0, 1.0)
        LogNormal(loc=0.0, scale=1.0)
    """

    loc: float = 0.0
    scale: float = 1.0
    support = C.positive
    positive_fields = ("scale",)

    def log_prob(self, x):
        return jss.norm.logpdf(jnp.log(x), self.loc, self.scale) - jnp.log(x)

    def sample(self, key, shape=()):
        return jnp.exp(self.loc + self.scale * jax.random.normal(key, shape))


class Beta(AbstractPrior):
    """Beta(a, b) on (0, 1).

    Example:
        >>> hj.Beta(2.0, 2.0)
        Beta(a=2.0, b=2.0)
    """

    a: float = 1.0
    b: float = 1.0
    support = C.unit_interval
    positive_fields = ("a", "b")

    def log_prob(self, x):
        return jss.beta.logpdf(x, self.a, self.b)

    def sample(self, key, shape=()):
        return jax.random.beta(key, self.a, self.b, shape)


class Uniform(AbstractPrior):
    """Uniform(low, high).

    Example:
        >>> hj.Uniform(0.1, 1.0)  # e.g. for a non-decision time
        Uniform(low=0.1, high=1.0)
    """

    low: float = 0.0
    high: float = 1.0

    def __check_init__(self):
        if not self.low < self.high:
            raise ModelError(f"Uniform needs low < high; got ({self.low}, {self.high}).")

    @property
    def support(self):
        return C.Interval(self.low, self.high)

    def log_prob(self, x):
        return jss.uniform.logpdf(x, self.low, self.high - self.low)

    def sample(self, key, shape=()):
        return jax.random.uniform(key, shape, minval=self.low, maxval=self.high)


class LKJCholesky(AbstractPrior):
    """LKJ(eta) prior on a correlation matrix, as a density over its Cholesky factor.

    The density is over the K(K-1)/2 strictly-lower entries of L (Stan's `lkj_corr_cholesky`),
    normalised. eta = 1 is uniform over correlation matrices; larger eta shrinks towards I.

    Example:
        >>> prior = hj.LKJCholesky(dim=2, eta=2.0)
        >>> L = jnp.array([[1.0, 0.0], [0.6, 0.8]])  # the Cholesky factor of correlation 0.6
        >>> bool(prior.log_prob(L) < prior.log_prob(jnp.eye(2)))  # eta > 1 favours none
        True
    """

    dim: int = eqx.field(static=True, default=2)
    eta: float = 1.0

    support = C.corr_cholesky
    positive_fields = ("eta",)

    def __check_init__(self):
        if isinstance(self.dim, bool) or not isinstance(self.dim, numbers.Integral) or self.dim < 2:
            raise ModelError(
                f"LKJCholesky needs dim, the number of correlated coefficients, to be an integer "
                f">= 2; got dim={self.dim!r}."
            )

    def _log_normalizer(self):
        # Lewandowski, Kurowicka & Joe (2009), p. 1999, as numpyro writes it.
        dm1 = self.dim - 1
        alpha = self.eta + 0.5 * dm1
        return (0.5 * dm1 * math.log(math.pi) + jsp.multigammaln(alpha - 0.5, dm1)
                - dm1 * jsp.gammaln(alpha))

    def log_prob(self, lower):
        k, eta = self.dim, self.eta
        diag = jnp.diagonal(lower, axis1=-2, axis2=-1)[..., 1:]
        order = jnp.arange(k - 1, 0, -1) - 1 + 2.0 * (eta - 1.0)
        # w.r.t. the strictly-lower entries of L: exponents K - i + 2 eta - 2 for i = 2..K.
        unnormalised = jnp.sum(order * jnp.log(diag), axis=-1)
        return unnormalised - self._log_normalizer()

    def sample(self, key, shape=()):
        # Onion method (Ghosh & Henderson 2003; numpyro's LKJCholesky sampler).
        k, eta = self.dim, self.eta
        key_beta, key_normal = jax.random.split(key)
        beta_conc = eta + 0.5 * (k - 2) - 0.5 * jnp.arange(k - 1)
        y = jax.random.beta(key_beta, 0.5 * jnp.arange(1, k), beta_conc, (*shape, k - 1))
        u = jax.random.normal(key_normal, (*shape, k - 1, k - 1))
        u = jnp.tril(u)
        u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
        w = jnp.sqrt(y)[..., None] * u
        lower_rows = jnp.concatenate([jnp.zeros((*shape, 1, k - 1)), w], axis=-2)
        lower = jnp.concatenate([lower_rows, jnp.zeros((*shape, k, 1))], axis=-1)
        diag = jnp.sqrt(jnp.clip(1.0 - jnp.sum(lower**2, axis=-1), 0.0, None))
        return lower + diag[..., None] * jnp.eye(k)

    def __str__(self):
        return f"LKJCholesky(dim={self.dim}, eta={self.eta:g})"
