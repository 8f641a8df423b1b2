"""A predictor with missing values, imputed by a model the user names (never dropped).

`hj.Imputed("x", loc=..., scale=..., group="x_missing")` stands for the column `x` in a
predictor (`hj.Fixed("b") * hj.Imputed(...)`). Every row's x is modelled as Normal(loc, scale)
(terms: a mean and an sd with their own parameters, or data); where x is observed that is a
likelihood for loc and scale, where it is missing (NaN) the value is a parameter, reported as
`<key>_imputed` (dim `group`: one per missing row, in row order; `coords[group]` is their
number). Simulation draws the missing values, so a recovery study scores them.

Example:
    >>> x = hj.Imputed("x", loc=hj.Fixed("x_mu"), scale=hj.Fixed("x_sd", hj.HalfNormal(1.0)),
    ...                group="x_missing")
    >>> model = hj.Model(hj.Gaussian(mu=hj.Fixed("b") * x, sigma=1.0), coords={"x_missing": 2})
    >>> data = model.prepare({"y": [0.1, 0.5, 0.9, 1.2], "x": [1.0, np.nan, 2.0, np.nan]})
    >>> data["x_missing_slot"]
    Array([2, 0, 2, 1], dtype=int32)
"""

# No `from __future__ import annotations`: equinox reads field annotations at runtime.
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jss

from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.data import slot_key
from hjax.model.terms import Need, ParamSpec, Term, as_term, key_for

__all__ = ["Imputed"]


class Imputed(Term):
    """A data column whose missing values are imputed by Normal(loc, scale) (see the module)."""

    key: str = eqx.field(static=True)
    loc: Term = eqx.field(converter=lambda v: as_term(v))
    scale: Term = eqx.field(converter=lambda v: as_term(v))
    group: str = eqx.field(static=True)

    def __check_init__(self):
        if not C.positive.contains(self.scale.support()) and not (
                hasattr(self.scale, "value") and self.scale.value > 0):
            raise ModelError(f"Imputed '{self.key}': the scale must be positive; got "
                             f"'{self.scale}' with support {self.scale.support()}.")

    def children(self):
        return (self.loc, self.scale)

    def is_covariate(self):
        return True  # `b * x~imputed` is a slope, as `b * data[x]` is

    @property
    def name(self) -> str:
        return f"{self.key}_imputed"

    def param_specs(self, sizes):
        return {self.name: ParamSpec((sizes[self.group],), C.real, (self.group,),
                                     prior=f"Normal({self.loc}, {self.scale}), imputed")}

    def __call__(self, p, data):
        slots = data[slot_key(self.key)]
        values = p[self.name]
        missing = slots < values.shape[0]
        return jnp.where(missing, values[jnp.minimum(slots, values.shape[0] - 1)],
                         data[self.key])

    def log_prior(self, p, data):
        # Observed and missing rows alike: the imputation model's density of every x.
        return jnp.sum(jss.norm.logpdf(self(p, data), self.loc(p, data), self.scale(p, data)))

    def sample_prior(self, key, data, sizes, given):
        draws = super().sample_prior(key, data, sizes, given)
        if self.name in given:
            return draws | {self.name: jnp.broadcast_to(given[self.name], (sizes[self.group],))}
        slots = data[slot_key(self.key)]
        rows = jnp.nonzero(slots < sizes[self.group], size=sizes[self.group])[0]
        loc = jnp.broadcast_to(self.loc(draws, data), slots.shape)[rows]
        scale = jnp.broadcast_to(self.scale(draws, data), slots.shape)[rows]
        noise = jax.random.normal(key_for(key, self.name), (sizes[self.group],))
        return draws | {self.name: loc + scale * noise}

    def needs(self, context):
        user = f"Imputed '{self.key}'"
        return [Need(self.key, context, user=user, missing=self.group),
                *super().needs(context)]

    def __str__(self):
        return f"{self.key}~imputed"
