"""Variational warm starts: place chains and seed the mass matrix before a shorter warmup.

Both methods fit a Gaussian approximation q to one dataset's posterior (in unconstrained space),
draw each chain's starting point from q, and return q's marginal variances as the initial
inverse mass matrix. Chains then start near the typical set with a metric of the right scale,
so the early warmup windows (spent reaching the typical set and learning scales) can be cut.
As initialisations (`FitSettings.init`): `ADVI()` and `Pathfinder()`, each fitted from the
start that `InitUniform(radius)` finds for the first chain.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from blackjax.vi import pathfinder as bj_pathfinder
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from hjax.errors import ConfigError
from hjax.inference.run.init import RADIUS, AbstractInit, Radius, WarmStart, uniform_stages
from hjax.settings import WARM_START_WARMUP, option, register

__all__ = ["ADVI", "AbstractWarmStart", "Pathfinder", "WarmStart", "advi", "pathfinder",
           "warm_start"]


def _draws(key, mean, sd, unravel, chains):
    eps = jax.random.normal(key, (chains, mean.shape[0]), mean.dtype)
    return jax.vmap(unravel)(mean + sd * eps)


def advi(
    key: PRNGKeyArray,
    logdensity_fn: Callable[[dict[str, Array]], Array],
    position: dict[str, Array],
    chains: int,
    *,
    num_steps: int = 300,
    num_samples: int = 4,
    learning_rate: float = 0.1,
) -> WarmStart:
    """Mean-field ADVI (Kucukelbir et al. 2017) with Adam (cosine-decayed), from `position`.

    Maximizes the ELBO of q = N(mean, diag(sd^2)) with `num_samples` reparameterized draws per
    step. Steps whose gradient is not finite are skipped, so a stray draw into a region of zero
    density does not end the fit.

    Example:
        >>> prepared = model.prepare(data)
        >>> key = jax.random.key(0)
        >>> ws = advi(key, lambda p: model.logdensity(p, prepared), model.init(key), chains=4)
        >>> ws.positions["theta_z"].shape, ws.inverse_mass_matrix.shape  # a variance per value
        ((4, 8), (10,))
    """
    flat, unravel = ravel_pytree(position)
    key_fit, key_draw = jax.random.split(key)

    def loss(params, k):
        mean, log_sd = params
        eps = jax.random.normal(k, (num_samples, flat.shape[0]), flat.dtype)
        lp = jax.vmap(lambda x: logdensity_fn(unravel(x)))(mean + jnp.exp(log_sd) * eps)
        return -(jnp.mean(lp) + jnp.sum(log_sd))

    # A decaying rate: large steps to reach the optimum, small ones so the last iterate (what
    # is returned) is not dominated by the gradient noise of a few draws.
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.02))
    # A narrow start lets the mean move towards the mode before the width is learned.
    params = (flat, jnp.full_like(flat, jnp.log(0.1)))

    def step(carry, t):
        params, opt_state = carry
        grads = jax.grad(loss)(params, jax.random.fold_in(key_fit, t))
        finite = jnp.all(jnp.isfinite(grads[0])) & jnp.all(jnp.isfinite(grads[1]))
        updates, new_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        return (jax.tree.map(keep, new_params, params), jax.tree.map(keep, new_state,
                                                                      opt_state)), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(num_steps))
    mean, sd = params[0], jnp.exp(params[1])
    return WarmStart(_draws(key_draw, mean, sd, unravel, chains), sd**2,
                     jnp.asarray(num_steps * num_samples))


def pathfinder(
    key: PRNGKeyArray,
    logdensity_fn: Callable[[dict[str, Array]], Array],
    position: dict[str, Array],
    chains: int,
    *,
    maxiter: int = 30,
    num_samples: int = 50,
) -> WarmStart:
    """BlackJAX Pathfinder (Zhang et al. 2022) from `position`: L-BFGS, then the best Gaussian.

    The inverse mass matrix is the diagonal of the chosen L-BFGS inverse-Hessian estimate.
    `grad_evals` counts the L-BFGS iterations (at least one gradient each) plus the
    density-only ELBO evaluations, so it is a lower bound.

    Example:
        >>> def logdensity_fn(p):  # N(3, 1) in each of two values
        ...     return -0.5 * jnp.sum((p["x"] - 3.0) ** 2)
        >>> fit = jax.jit(lambda key: pathfinder(key, logdensity_fn, {"x": jnp.zeros(2)}, 4))
        >>> ws = fit(jax.random.key(0))  # compiled, as inside hj.sample
        >>> ws.positions["x"].shape, ws.inverse_mass_matrix.round(2)
        ((4, 2), Array([1., 1.], dtype=float32))
    """
    key_fit, key_draw = jax.random.split(key)
    state, info = bj_pathfinder.approximate(key_fit, logdensity_fn, position, num_samples,
                                            maxiter=maxiter)
    draws, _ = bj_pathfinder.sample(key_draw, state, chains)
    variances = state.alpha + jnp.sum((state.beta @ state.gamma) * state.beta, axis=1)
    iterations = jnp.sum(jnp.isfinite(info.path.elbo))
    return WarmStart(draws, variances, iterations * (1 + num_samples))


class AbstractWarmStart(AbstractInit):
    """An initialisation that fits a variational approximation per dataset, from the start
    `InitUniform(radius)` finds for its first chain, and places the chains by its draws
    (abstract); the warmup is then shorter by default."""

    radius: float = eqx.field(default=RADIUS, converter=option("radius", Radius))
    default_warmup: ClassVar[int] = WARM_START_WARMUP

    def stages(self, model, data):
        return uniform_stages(model, data, self.radius)

    @abc.abstractmethod
    def fit(self, key: PRNGKeyArray, logdensity_fn: Callable[[dict[str, Array]], Array],
            position: dict[str, Array], chains: int) -> WarmStart:
        """The approximation's draws for `chains` chains, from `position`."""

    def warm_start(self, key, logdensity_fn, position, chains):
        return self.fit(key, logdensity_fn, position, chains)


@register("init")
class ADVI(AbstractWarmStart):
    """Mean-field ADVI (`advi`) places the chains and seeds the mass matrix.

    Example:
        >>> hj.FitSettings(init=hj.ADVI()).warmup_iterations  # shorter after a warm start
        300
    """

    name: ClassVar[str] = "advi"

    def fit(self, key, logdensity_fn, position, chains):
        return advi(key, logdensity_fn, position, chains)


@register("init")
class Pathfinder(AbstractWarmStart):
    """BlackJAX Pathfinder (`pathfinder`) places the chains and seeds the mass matrix.

    Example:
        >>> hj.FitSettings(init="pathfinder", init_radius=1.0).init
        Pathfinder(radius=1.0)
    """

    name: ClassVar[str] = "pathfinder"

    def fit(self, key, logdensity_fn, position, chains):
        return pathfinder(key, logdensity_fn, position, chains)


def warm_start(
    method: str,
    key: PRNGKeyArray,
    logdensity_fn: Callable[[dict[str, Array]], Array],
    position: dict[str, Array],
    chains: int,
) -> WarmStart:
    """Run `method` ("advi" or "pathfinder": `ADVI`, `Pathfinder`) with its defaults.

    Example:
        >>> def logdensity_fn(p):
        ...     return -0.5 * jnp.sum((p["x"] - 3.0) ** 2)
        >>> ws = warm_start("advi", jax.random.key(0), logdensity_fn, {"x": jnp.zeros(2)}, 4)
        >>> ws.positions["x"].shape
        (4, 2)
        >>> warm_start("laplace", jax.random.key(0), logdensity_fn, {"x": jnp.zeros(2)}, 4)
        Traceback (most recent call last):
        ...
        hjax.errors.ConfigError: Expected init to be None or one of ('advi', 'pathfinder'); got ...
    """
    methods = {cls.name: cls for cls in (ADVI, Pathfinder)}
    if method not in methods:
        raise ConfigError(f"Expected init to be None or one of {tuple(methods)}; got "
                          f"{method!r}.")
    return methods[method]().fit(key, logdensity_fn, position, chains)
