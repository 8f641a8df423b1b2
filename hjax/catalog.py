"""Shipped models, each with a default design: what configs name and the quickstart runs.

A builder takes design sizes and returns `(model, design)`, the design being raw columns
without the observed ones. A user's own builder with the same shape can be named in a config
as "package.module:function".

Example:
    >>> model, design = hj.catalog.varying_intercept(groups=20, per_group=10)
    >>> {name: column.shape for name, column in design.items()}  # no y: simulated or observed
    {'group': (200,)}
"""

from __future__ import annotations

import numpy as np

from hjax.cognitive.likelihoods import SDT, Wiener
from hjax.errors import ModelError
from hjax.model.fixed import Fixed
from hjax.model.level import Crossed, Level
from hjax.model.likelihoods import BernoulliLogit, Gaussian
from hjax.model.model import Model
from hjax.model.priors import HalfCauchy, HalfNormal, LKJCholesky, Normal
from hjax.model.terms import Data, exp


def _groups(groups: int, per_group: int | list[int]) -> np.ndarray:
    """Group index per observation; `per_group` a size for all or one size per group."""
    sizes = np.broadcast_to(np.asarray(per_group), (groups,))
    return np.repeat(np.arange(groups), sizes)


def varying_intercept(groups: int = 20, per_group: int | list[int] = 10):
    """y ~ N(b0 + u[group], sigma), u ~ N(0, u_sd): the partial-pooling workhorse.

    `per_group` is one size for all groups or one per group (unequal sizes show shrinkage)."""
    model = Model(
        Gaussian(mu=Fixed("b0", Normal(0.0, 2.0)) + Level("u", "group", scale=HalfNormal(1.0)),
                 sigma=Fixed("sigma", HalfNormal(1.0))),
        coords={"group": groups},
    )
    return model, {"group": _groups(groups, per_group)}


def varying_slope(groups: int = 20, per_group: int = 10, seed: int = 0):
    """Correlated varying intercepts and slopes: y ~ N(b0 + b1 x + u0[g] + u1[g] x, sigma)."""
    model = Model(
        Gaussian(
            mu=Fixed("b0", Normal(0.0, 2.0)) + Fixed("b1", Normal(0.0, 1.0), predictors="x")
            + Level("u", "group", predictors=("1", "x"), scale=HalfNormal(1.0),
                    corr=LKJCholesky(2, 2.0)),
            sigma=Fixed("sigma", HalfNormal(1.0)),
        ),
        coords={"group": groups},
    )
    x = np.random.default_rng(seed).normal(size=groups * per_group)
    return model, {"group": _groups(groups, per_group), "x": x}


def crossed_bernoulli(persons: int = 30, items: int = 10):
    """Person x item Bernoulli (Rasch-like IRT): logit P(y) = theta[person] + b[item]."""
    model = Model(
        BernoulliLogit(Crossed(
            Level("theta", "person", scale=HalfNormal(1.0)),
            Level("b", "item", loc=Fixed("mu_b", Normal(0.0, 1.5)), scale=HalfNormal(1.0)),
        )),
        coords={"person": persons, "item": items},
    )
    person, item = np.meshgrid(np.arange(persons), np.arange(items), indexing="ij")
    return model, {"person": person.ravel(), "item": item.ravel()}


def irt_2pl(persons: int = 50, items: int = 10):
    """Two-parameter logistic IRT: logit P(y_pi = 1) = a_i (theta_p - b_i), abilities
    theta ~ N(0, 1), difficulties b_i around mu_b, discriminations a_i = exp(log_a_i) > 0
    (reported as `a`) around exp(mu_log_a). Every person answers every item.

    Example:
        >>> model, design = hj.catalog.irt_2pl(persons=4, items=3)
        >>> print(model.likelihood)
        BernoulliLogit likelihood on y
          logit_p = a * (theta[person] - b[item])
    """
    a = exp(Level("log_a", "item", loc=Fixed("mu_log_a", Normal(0.0, 0.5)),
                  scale=HalfNormal(0.5)), name="a")
    theta = Level("theta", "person", scale=1.0)
    b = Level("b", "item", loc=Fixed("mu_b", Normal(0.0, 1.0)), scale=HalfNormal(1.0))
    model = Model(BernoulliLogit(a * (theta - b)), coords={"person": persons, "item": items})
    person, item = np.meshgrid(np.arange(persons), np.arange(items), indexing="ij")
    return model, {"person": person.ravel(), "item": item.ravel()}


def eight_schools(sigma: tuple[float, ...] = (15, 10, 16, 11, 9, 11, 10, 18)):
    """Rubin's eight schools, non-centered: y_j ~ N(theta_j, sigma_j), theta ~ N(mu, tau)."""
    model = Model(
        Gaussian(mu=Level("theta", "school", loc=Fixed("mu", Normal(0.0, 5.0)),
                          scale=HalfCauchy(5.0)),
                 sigma=Data("sigma")),
        coords={"school": len(sigma)},
    )
    return model, {"school": np.arange(len(sigma)), "sigma": np.asarray(sigma, float)}


def meta_analysis(se, moderators: dict | None = None, tau: float = 0.5):
    """Random-effects meta-analysis with known standard errors: y_j ~ N(theta_j, se_j),
    theta_j ~ N(mu + sum_m b_m x_mj, tau) over studies j, with study-level moderators x_m
    (one value per study) and tau ~ HalfCauchy(`tau`).

    Example:
        >>> model, design = hj.catalog.meta_analysis([0.2, 0.3, 0.1], {"dose": [1.0, 2, 3]})
        >>> print(model.likelihood)
        Gaussian likelihood on y
          mu = theta[study]
          sigma = data[se]
    """
    se = np.asarray(se, dtype=float)
    loc = Fixed("mu", Normal(0.0, 2.0))
    for name in moderators or {}:
        loc = loc + Fixed(f"b_{name}", Normal(0.0, 1.0), predictors=name)
    model = Model(Gaussian(mu=Level("theta", "study", loc=loc, scale=HalfCauchy(tau)),
                           sigma=Data("se")), coords={"study": len(se)})
    design = {"study": np.arange(len(se)), "se": se}
    return model, design | {name: np.asarray(x, float) for name, x in (moderators or {}).items()}


# BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg): vaccinated and control arms'
# tuberculosis cases and non-cases, and each trial's absolute latitude.
BCG = {
    "tpos": [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27],
    "tneg": [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886],
    "cpos": [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29],
    "cneg": [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825],
    "latitude": [44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33],
}


def bcg(moderator: bool = True):
    """The BCG vaccine meta-analysis: log risk ratios of 13 trials with their standard
    errors, and absolute latitude as a moderator. Returns (model, data), data with `y`.

    Example:
        >>> model, data = hj.catalog.bcg()
        >>> round(float(data["y"][0]), 4), round(float(data["se"][0]) ** 2, 4)
        (-0.8893, 0.3256)
    """
    t, c = (np.asarray(BCG[k + "pos"], float) for k in "tc")
    tn, cn = (np.asarray(BCG[k + "neg"], float) for k in "tc")
    y = np.log((t / (t + tn)) / (c / (c + cn)))
    se = np.sqrt(1 / t - 1 / (t + tn) + 1 / c - 1 / (c + cn))
    moderators = {"latitude": BCG["latitude"]} if moderator else None
    model, design = meta_analysis(se, moderators)
    return model, design | {"y": y}


def ddm(participants: int = 20, trials: int = 100, centered: tuple[str, ...] = ()):
    """Hierarchical drift diffusion: v, log a and log t0 each a group mean plus participant
    deviations; unbiased start (w = 0.5). Convention: `hj.Wiener` (a = boundary separation).

    `centered` names the parameters ("v", "log_a", "log_t0") whose participant values are
    sampled centered on their mean (`v_p ~ N(v, v_p_sd)`, reported as the values themselves)
    instead of as non-centered deviations, the form for data that pin each participant's value
    down. At 10 participants x 60 trials the default is the better one: centered log t0 gave
    divergences in 0.75 of 20 fits (723 transitions) against 0.55 (29), and R-hat > 1.01 in
    0.60 against 0.20 (`scripts/robust_fits.py --only centered`)."""
    unknown = set(centered) - {"v", "log_a", "log_t0"}
    if unknown:
        raise ModelError(f"ddm: centered takes 'v', 'log_a', 'log_t0'; got {sorted(unknown)}.")

    def varying(name, mean, sd):
        if name in centered:
            return Level(f"{name}_p", "participant", loc=Fixed(name, mean),
                         scale=HalfNormal(sd), centered=True)
        return Fixed(name, mean) + Level(f"{name}_p", "participant", scale=HalfNormal(sd))

    model = Model(
        Wiener(v=varying("v", Normal(1.0, 1.0), 0.5),
               a=exp(varying("log_a", Normal(0.5, 0.2), 0.2)),
               t0=exp(varying("log_t0", Normal(-1.4, 0.2), 0.2))),
        coords={"participant": participants},
    )
    return model, {"participant": _groups(participants, trials)}


def sdt_brightness(participants: int = 20, items: int = 8, trials: int = 40, seed: int = 0):
    """The seeds' signal-detection model, identified: d'_pi = alpha_p + gamma_i with
    gamma_i = zeta0 + zeta1 * brightness_i + item noise and zero-mean alpha_p; one criterion."""
    gamma = Level("gamma", "item", loc=Fixed("zeta0", Normal(1.0, 0.5))
                  + Fixed("zeta1", Normal(0.0, 0.5), predictors="brightness"),
                  scale=HalfNormal(0.3))
    model = Model(
        SDT(d_prime=Crossed(Level("alpha", "participant", scale=HalfNormal(0.5)), gamma),
            c=Fixed("c", Normal(0.0, 0.5))),
        coords={"participant": participants, "item": items},
    )
    person, item = (a.ravel() for a in np.meshgrid(np.arange(participants), np.arange(items),
                                                   indexing="ij"))
    brightness = np.random.default_rng(seed).uniform(-1.0, 1.0, items)
    counts = np.full(person.size, trials)
    return model, {"participant": person, "item": item, "brightness": brightness,
                   "n_signal": counts, "n_noise": counts}


SHIPPED = {
    "ddm": ddm,
    "meta_analysis": meta_analysis,
    "irt_2pl": irt_2pl,
    "sdt_brightness": sdt_brightness,
    "eight_schools": eight_schools,
    "varying_intercept": varying_intercept,
    "varying_slope": varying_slope,
    "crossed_bernoulli": crossed_bernoulli,
}
