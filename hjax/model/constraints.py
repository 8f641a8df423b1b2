"""Supports of parameters and the bijectors that map unconstrained reals onto them.

The sampler only ever sees unconstrained values; `Constraint.bijector()` gives the map from
that space onto the support, and `hjax.model.model` adds its log-Jacobian in one place.
Scalar maps come from distrax; the correlation-Cholesky map is written here because distrax
has none (it follows Stan's reference manual, "Cholesky factors of correlation matrices").
"""

from __future__ import annotations

import math

import distrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class Constraint(eqx.Module):
    """The support of a parameter; knows its bijector and its unconstrained shape."""

    def bijector(self) -> distrax.Bijector:
        raise NotImplementedError

    def unconstrained_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def contains(self, other: Constraint) -> bool:
        """Whether every value in `other`'s support lies in this support."""
        return other == self

    def check(self, values) -> np.ndarray:
        """Elementwise: whether each (host, numpy) value lies in the support."""
        return np.isfinite(values)


class Real(Constraint):
    """The real line."""

    def bijector(self):
        return distrax.Lambda(
            forward=lambda x: x,
            inverse=lambda y: y,
            forward_log_det_jacobian=jnp.zeros_like,
            event_ndims_in=0,
        )

    def contains(self, other):
        return isinstance(other, Real | Positive | Interval)

    def __str__(self):
        return "real"


class Positive(Constraint):
    """(0, inf), reached by exp as in Stan."""

    def bijector(self):
        return distrax.Lambda(
            forward=jnp.exp,
            inverse=jnp.log,
            forward_log_det_jacobian=lambda x: x,
            event_ndims_in=0,
        )

    def contains(self, other):
        return isinstance(other, Positive) or (isinstance(other, Interval) and other.low >= 0)

    def check(self, values):
        return np.isfinite(values) & (values > 0)

    def __str__(self):
        return "positive"


class Interval(Constraint):
    """(low, high), reached by a scaled logistic sigmoid."""

    low: float = 0.0
    high: float = 1.0

    def __check_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Interval needs low < high; got ({self.low}, {self.high}).")

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


class CorrCholesky(Constraint):
    """Lower-triangular Cholesky factors of K x K correlation matrices."""

    def bijector(self):
        return CorrCholeskyBijector()

    def unconstrained_shape(self, shape):
        k = shape[-1]
        return (*shape[:-2], k * (k - 1) // 2)

    def __str__(self):
        return "corr_cholesky"


real = Real()
positive = Positive()
unit_interval = Interval(0.0, 1.0)
corr_cholesky = CorrCholesky()


def _dim_from_free(n_free: int) -> int:
    k = int(round((1 + math.sqrt(1 + 8 * n_free)) / 2))
    if k * (k - 1) // 2 != n_free:
        raise ValueError(f"Expected K*(K-1)/2 free values for a K x K factor; got {n_free}.")
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
        tanh_logdet = jnp.sum(2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x)))
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
