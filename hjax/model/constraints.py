"""Supports of parameters and data, and the bijectors that map unconstrained reals onto them.

The sampler only ever sees unconstrained values; `AbstractConstraint.bijector()` gives the map
from that space onto the support, and `hjax.model.model` adds its log-Jacobian in one place.
Scalar maps come from distrax; the correlation-Cholesky map is written here because distrax
has none (it follows Stan's reference manual, "Cholesky factors of correlation matrices").
An `AbstractSupport` without a bijector (`counts`) is for slots that only data can fill.
"""

from __future__ import annotations

import abc
import math

import distrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from hjax.errors import ModelError
from hjax.model.log1p_exp import log1p_exp
from hjax.model.scalars import plain_fields

SLOT_ADVICE = ("Give it a prior with that support (e.g. hj.HalfNormal for a positive scale) or "
               "wrap a linear predictor in a link (hj.exp, hj.inv_logit).")


class AbstractSupport(eqx.Module):
    """A set of values a likelihood slot accepts or a data column may hold.

    Example:
        >>> counts.check(np.array([3.0, 2.5]))  # the Support of a Binomial's trials
        array([ True, False])
    """

    def contains(self, other: AbstractSupport) -> bool:
        """Whether every value in `other`'s support lies in this support."""
        return other == self

    def check(self, values) -> np.ndarray:
        """Elementwise: whether each (host, numpy) value lies in the support."""
        return np.isfinite(values)

    def advice(self) -> str:
        """How to fill a slot with this support, for the error when a term cannot."""
        return SLOT_ADVICE

    @abc.abstractmethod
    def __str__(self) -> str:
        """The support in words, as error messages show it ("positive")."""


Support = AbstractSupport  # its name before the Abstract* convention, kept as an alias


class AbstractConstraint(AbstractSupport):
    """The support of a parameter: also knows its bijector and its unconstrained shape.

    Example:
        >>> y, log_det = hj.Positive().bijector().forward_and_log_det(jnp.array([0.0, 1.0]))
        >>> y.round(2), log_det  # y = exp(x), log |dy/dx| = x
        (Array([1.  , 2.72], dtype=float32), Array([0., 1.], dtype=float32))
    """

    @abc.abstractmethod
    def bijector(self) -> distrax.Bijector:
        """The map from unconstrained reals onto the support."""

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


Constraint = AbstractConstraint  # its name before the Abstract* convention, kept as an alias


class Real(AbstractConstraint):
    """The real line.

    Example:
        >>> hj.Real().contains(hj.Positive())  # a positive value is a real one
        True
    """

    def bijector(self):
        return distrax.Lambda(
            forward=lambda x: x,
            inverse=lambda y: y,
            forward_log_det_jacobian=jnp.zeros_like,
            event_ndims_in=0,
        )

    def contains(self, other):
        return isinstance(other, Real | Positive | Interval | Counts)

    def __str__(self):
        return "real"


class Positive(AbstractConstraint):
    """(0, inf), reached by exp as in Stan.

    Example:
        >>> hj.Positive().check(np.array([1.0, 0.0]))
        array([ True, False])
    """

    def bijector(self):
        return distrax.Lambda(
            forward=jnp.exp,
            inverse=jnp.log,
            forward_log_det_jacobian=lambda x: x,
            event_ndims_in=0,
        )

    def contains(self, other):
        return (isinstance(other, Positive | Counts)
                or (isinstance(other, Interval) and other.low >= 0))

    def check(self, values):
        return np.isfinite(values) & (values > 0)

    def __str__(self):
        return "positive"


class Interval(AbstractConstraint):
    """(low, high), reached by a scaled logistic sigmoid.

    Example:
        >>> y = hj.Interval(0.1, 2.0).bijector().forward(jnp.array([-10.0, 0.0, 10.0]))
        >>> [round(float(v), 2) for v in y]
        [0.1, 1.05, 2.0]
    """

    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        plain_fields(self)

    def __check_init__(self):
        if not self.low < self.high:
            raise ModelError(f"Interval needs low < high; got ({self.low}, {self.high}).")

    def bijector(self):
        return distrax.Chain(
            [distrax.ScalarAffine(shift=self.low, scale=self.high - self.low), distrax.Sigmoid()]
        )

    def contains(self, other):
        return isinstance(other, Interval) and self.low <= other.low and other.high <= self.high

    def check(self, values):
        return (values > self.low) & (values < self.high)

    def __str__(self):
        return f"interval({self.low:g}, {self.high:g})"


class CorrCholesky(AbstractConstraint):
    """Lower-triangular Cholesky factors of K x K correlation matrices.

    Example:
        >>> hj.CorrCholesky().unconstrained_shape((3, 3))  # K(K-1)/2 free values
        (3,)
    """

    def bijector(self):
        return CorrCholeskyBijector()

    def unconstrained_shape(self, shape):
        k = shape[-1]
        return (*shape[:-2], k * (k - 1) // 2)

    def __str__(self):
        return "corr_cholesky"


class Counts(AbstractSupport):
    """Positive whole numbers (trials of a Binomial, trials per SDT row): data, never sampled.

    Example:
        >>> lik = hj.Binomial(logit_p=hj.Fixed("b"), trials=hj.Data("n"))
        >>> hj.Model(lik, coords={}).prepare({"y": np.array([1, 2]), "n": np.array([5, 2.5])})
        Traceback (most recent call last):
        ...
        hjax.errors.DataError: data['n'] must be positive whole numbers for Binomial.trials; ...
    """

    def check(self, values):
        values = np.asarray(values)
        with np.errstate(invalid="ignore"):
            return np.isfinite(values) & (values > 0) & (values == np.round(values))

    def advice(self):
        return "Counts are data: pass a column (hj.Data('n')) or a whole number (e.g. 10)."

    def __str__(self):
        return "positive whole numbers"


class Limits(AbstractSupport):
    """Censoring limits, one per row: any number, or -inf / inf for a row without one.

    Example:
        >>> Limits().check(np.array([0.5, np.inf, np.nan]))
        array([ True,  True, False])
    """

    def check(self, values):
        return ~np.isnan(np.asarray(values, dtype=float))

    def __str__(self):
        return "a number or +-inf"


real = Real()
limits = Limits()
positive = Positive()
unit_interval = Interval(0.0, 1.0)
corr_cholesky = CorrCholesky()
counts = Counts()


def _dim_from_free(n_free: int) -> int:
    k = int(round((1 + math.sqrt(1 + 8 * n_free)) / 2))
    if k * (k - 1) // 2 != n_free:
        raise ModelError(f"Expected K*(K-1)/2 free values for a K x K factor; got {n_free}.")
    return k


class CorrCholeskyBijector(distrax.Bijector):
    """R^{K(K-1)/2} -> Cholesky factor of a correlation matrix (Stan's transform).

    tanh maps each free value to a canonical partial correlation z_ij in (-1, 1); row i of L is
    then built by stick breaking so that it has unit norm.

    Example:
        >>> L, logdet = CorrCholeskyBijector().forward_and_log_det(jnp.zeros(3))
        >>> L.shape
        (3, 3)
    """

    def __init__(self):
        super().__init__(event_ndims_in=1, event_ndims_out=2)

    def forward_and_log_det(self, x):
        k = _dim_from_free(x.shape[-1])
        z = jnp.tanh(x)
        rows, cols = jnp.tril_indices(k, -1)
        z_mat = jnp.zeros((k, k), x.dtype).at[rows, cols].set(z)
        # Stick breaking along each row: L_ij = z_ij * sqrt(1 - sum_{l<j} L_il^2).
        remaining = jnp.cumprod(1.0 - z_mat**2, axis=-1)
        remaining_before = jnp.concatenate([jnp.ones((k, 1), x.dtype), remaining[:, :-1]], -1)
        diag = jnp.eye(k, dtype=x.dtype)
        lower = (z_mat + diag) * jnp.sqrt(jnp.where(jnp.tril(jnp.ones((k, k)), 0) > 0,
                                                     remaining_before, 1.0))
        # dz/dx = 1 - tanh^2 = 4 / (e^x + e^-x)^2, written stably.
        tanh_logdet = jnp.sum(2.0 * (math.log(2.0) - x - log1p_exp(-2.0 * x)))
        stick_logdet = 0.5 * jnp.sum(jnp.log(remaining_before[rows, cols]))
        return lower, tanh_logdet + stick_logdet

    def inverse_and_log_det(self, y):
        k = y.shape[-1]
        rows, cols = jnp.tril_indices(k, -1)
        remaining_before = 1.0 - jnp.cumsum(y**2, axis=-1) + y**2
        z = y[rows, cols] / jnp.sqrt(remaining_before[rows, cols])
        x = jnp.arctanh(z)
        _, logdet = self.forward_and_log_det(x)
        return x, -logdet
