"""Cognitive observation models as `hj.AbstractLikelihood`s: every parameter slot takes a term.

Thin wrappers over the pure functions of this package; they add the slot supports (so priors
and links are checked) and the host-side checks of observed data.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from hjax.cognitive.lba import lba_log_density, lba_log_survival, lba_sample
from hjax.cognitive.sdt import sdt_log_likelihood, sdt_sample
from hjax.cognitive.wiener import (
    wiener_log_density,
    wiener_log_density_with_lapse,
    wiener_log_survival,
    wiener_sample,
    wiener_sample_with_lapse,
)
from hjax.errors import ModelError
from hjax.model import constraints as C
from hjax.model.likelihoods import AbstractLikelihood, Below, count_excess
from hjax.model.terms import Const, Data, Term, as_term


def _term(**kwargs):
    return eqx.field(converter=as_term, **kwargs)


def _optional_term(value):
    return None if value is None else as_term(value)


def _mix(p_lapse, log_model, lapse_probability):
    """log((1 - p) exp(log_model) + p * lapse), with finite gradients where the model's part
    is -inf (an RT before t0, a contaminant's)."""
    finite = jnp.isfinite(log_model)
    model_part = jnp.where(finite, jnp.exp(jnp.where(finite, log_model, 0.0)), 0.0)
    return jnp.log((1 - p_lapse) * model_part + p_lapse * lapse_probability)


def _lowest(term: Term) -> float | None:
    """The smallest value a term can take, where it is known (constants, bounded priors)."""
    if isinstance(term, Const):
        return term.value
    support = term.support()
    return support.low if isinstance(support, C.Interval) else None


class Wiener(AbstractLikelihood):
    """Two-boundary drift diffusion (Wiener first-passage time) on (rt, choice).

    Convention (HDDM / Navarro & Fuss): `a` boundary separation, `w` relative start point in
    (0, 1), `v` drift towards the upper boundary, `t0` non-decision time, `sv` across-trial drift
    sd; `choice` 1 = upper, 0 = lower boundary. HSSM's a is half this `a`. With `p_lapse`, each
    trial is, with that probability, a contaminant: uniform RT on [0, `rt_max`] and a coin-flip
    choice (a mixture, so fast guesses below t0 keep a finite likelihood).

    Example:
        >>> ddm = hj.Wiener(v=hj.Fixed("v") + hj.Level("v_p", "participant"),
        ...                 a=hj.Fixed("a", hj.LogNormal(0.3, 0.3)),
        ...                 t0=hj.Fixed("t0", hj.Uniform(0.05, 0.5)))
        >>> print(ddm)
        Wiener likelihood on rt, choice
          v = v + v_p[participant]
          a = a
          t0 = t0
          w = 0.5
    """

    v: Term = _term()
    a: Term = _term()
    t0: Term = _term()
    w: Term = _term(default=0.5)
    sv: Term | None = eqx.field(default=None, converter=_optional_term)
    p_lapse: Term | None = eqx.field(default=None, converter=_optional_term)
    rt_max: float = eqx.field(static=True, default=5.0)
    rt: str = eqx.field(static=True, default="rt")
    choice: str = eqx.field(static=True, default="choice")

    parameters = {"v": C.real, "a": C.positive, "t0": C.positive, "w": C.unit_interval,
                  "sv": C.positive, "p_lapse": C.unit_interval}
    observed = ("rt", "choice")
    censored_column = "rt"
    deadline_slot = "t0"  # an upper limit is a deadline: no response can come after it

    def terms(self):
        return {name: getattr(self, name) for name in self.parameters
                if getattr(self, name) is not None}

    def log_prob(self, rt, choice, v, a, t0, w, sv=0.0, p_lapse=None):
        if p_lapse is None:
            return wiener_log_density(rt, choice, v, a, w, t0, sv)
        return wiener_log_density_with_lapse(rt, choice, v, a, w, t0, sv, p_lapse=p_lapse,
                                             rt_max=self.rt_max)

    def log_survival(self, value, v, a, t0, w, sv=0.0, p_lapse=None):
        """log P(no response by `value`), lapses included: a lapse's uniform RT on
        [0, rt_max] is later than `value` with probability (rt_max - value) / rt_max."""
        log_s = wiener_log_survival(value, v, a, w, t0, sv)
        if p_lapse is None:
            return log_s
        late = jnp.clip((self.rt_max - value) / self.rt_max, 0.0, 1.0)
        return jnp.log((1 - p_lapse) * jnp.exp(log_s) + p_lapse * late)

    def sample(self, key, v, a, t0, w, sv=0.0, p_lapse=None):
        shape = jnp.shape(v + a + t0 + w)
        if p_lapse is None:
            rt, choice = wiener_sample(key, v, a, w, t0, sv, shape)
        else:
            rt, choice = wiener_sample_with_lapse(key, v, a, w, t0, sv, p_lapse=p_lapse,
                                                  rt_max=self.rt_max, shape=shape)
        return {"rt": rt, "choice": choice.astype(jnp.int32)}

    def data_bounds(self):
        # With lapses a trial faster than t0 is a contaminant, not impossible.
        return {"t0": Below(self.rt)} if self.p_lapse is None else {}

    def check_observed(self, name, values):
        if name == self.choice:
            ok = np.all((values == 0) | (values == 1))
            return None if ok else "must be 0 (lower) or 1 (upper)"
        if np.any(values <= 0):
            return "must be positive response times in seconds"
        floor = _lowest(self.t0)
        if self.p_lapse is None and floor is not None and np.any(values <= floor):
            rows = np.flatnonzero(values <= floor)[:5].tolist()
            return (f"has {int((values <= floor).sum())} RTs at or below the smallest "
                    f"non-decision time t0 allows ({floor:g} s), e.g. rows {rows}: they have zero "
                    "likelihood. Remove fast guesses, lower t0's prior bound, or add p_lapse")
        if self.p_lapse is not None and np.any(values > self.rt_max):
            return f"has RTs above rt_max = {self.rt_max:g} s, outside the contaminant range"
        return None


class LBA(AbstractLikelihood):
    """Linear ballistic accumulator race (Brown & Heathcote 2008) on (rt, choice).

    One drift term per accumulator (`v=(v_match, v_mismatch)`); start points uniform on
    [0, `A`]; threshold `b = A + B` (`B` > 0 keeps b above A); drift sd `s`; non-decision time
    `t0`. `choice` is the winning accumulator's index. With `positive_drift` (default) the race
    is conditioned on at least one positive drift, in the density and in the simulator alike.
    With `p_lapse`, each trial is, with that probability, a contaminant: uniform RT on [0,
    `rt_max`] and a uniformly random choice (also in the survival of a censored trial).

    Example:
        >>> lba = hj.LBA(v=(hj.Fixed("v_match"), hj.Fixed("v_mis")),
        ...              A=hj.Fixed("A", hj.HalfNormal(1.0)), B=hj.Fixed("B", hj.HalfNormal(1.0)),
        ...              t0=hj.Fixed("t0", hj.Uniform(0.05, 0.4)))
        >>> print(lba)
        LBA likelihood on rt, choice
          v0 = v_match
          v1 = v_mis
          A = A
          B = B
          t0 = t0
          s = 1
    """

    drifts: tuple[Term, ...]
    A: Term = _term()
    B: Term = _term()
    t0: Term = _term()
    s: Term = _term(default=1.0)
    p_lapse: Term | None = eqx.field(default=None, converter=_optional_term)
    rt_max: float = eqx.field(static=True, default=5.0)
    positive_drift: bool = eqx.field(static=True, default=True)
    rt: str = eqx.field(static=True, default="rt")
    choice: str = eqx.field(static=True, default="choice")

    observed = ("rt", "choice")
    censored_column = "rt"
    deadline_slot = "t0"  # an upper limit is a deadline: no response can come after it

    def __init__(self, v, A, B, t0, s=1.0, *, p_lapse=None, rt_max=5.0, positive_drift=True,
                 rt="rt", choice="choice"):
        if len(v) < 2:
            raise ModelError(f"LBA needs one drift term per accumulator (>= 2); got {len(v)}.")
        self.drifts = tuple(as_term(term) for term in v)
        self.A, self.B, self.t0, self.s = (as_term(x) for x in (A, B, t0, s))
        self.p_lapse, self.rt_max = _optional_term(p_lapse), rt_max
        self.positive_drift, self.rt, self.choice = positive_drift, rt, choice

    @property
    def parameters(self):
        drifts = {f"v{i}": C.real for i in range(len(self.drifts))}
        return drifts | {"A": C.positive, "B": C.positive, "t0": C.positive, "s": C.positive,
                         "p_lapse": C.unit_interval}

    def terms(self):
        drifts = {f"v{i}": term for i, term in enumerate(self.drifts)}
        lapse = {} if self.p_lapse is None else {"p_lapse": self.p_lapse}
        return drifts | {"A": self.A, "B": self.B, "t0": self.t0, "s": self.s} | lapse

    def _race(self, params):
        drifts = jnp.broadcast_arrays(*(params[f"v{i}"] for i in range(len(self.drifts))))
        v = jnp.stack(drifts, axis=-1)
        A, B, s = (jnp.asarray(params[k])[..., None] for k in ("A", "B", "s"))
        return v, A, A + B, s

    def log_prob(self, rt, choice, **params):
        v, A, b, s = self._race(params)
        log_race = lba_log_density(rt, choice, v, A, b, params["t0"], s,
                                   positive_drift=self.positive_drift)
        if self.p_lapse is None:
            return log_race
        inside = (rt >= 0) & (rt <= self.rt_max)
        lapse = jnp.where(inside, 1.0 / (self.rt_max * len(self.drifts)), 0.0)
        return _mix(params["p_lapse"], log_race, lapse)

    def log_survival(self, value, **params):
        """log P(no response by `value`), lapses included."""
        v, A, b, s = self._race(params)
        log_race = lba_log_survival(value, v, A, b, params["t0"], s,
                                    positive_drift=self.positive_drift)
        if self.p_lapse is None:
            return log_race
        return _mix(params["p_lapse"], log_race,
                    jnp.clip((self.rt_max - value) / self.rt_max, 0.0, 1.0))

    def sample(self, key, **params):
        v, A, b, s = self._race(params)
        race_key, lapse_key = (key, None) if self.p_lapse is None else jax.random.split(key)
        rt, choice = lba_sample(race_key, v, A, b, params["t0"], s, v.shape[:-1],
                                positive_drift=self.positive_drift)
        if self.p_lapse is not None:
            k_which, k_rt, k_choice = jax.random.split(lapse_key, 3)
            lapse = jax.random.bernoulli(k_which, params["p_lapse"], rt.shape)
            rt = jnp.where(lapse, jax.random.uniform(k_rt, rt.shape, rt.dtype, 0.0,
                                                     self.rt_max), rt)
            choice = jnp.where(lapse, jax.random.randint(k_choice, rt.shape, 0,
                                                         len(self.drifts)), choice)
        return {"rt": rt, "choice": choice.astype(jnp.int32)}

    def data_bounds(self):
        # With lapses a trial faster than t0 is a contaminant, not impossible.
        return {"t0": Below(self.rt)} if self.p_lapse is None else {}

    def check_observed(self, name, values):
        n = len(self.drifts)
        if name == self.choice:
            ok = np.all((values >= 0) & (values < n) & (values == np.round(values)))
            return None if ok else f"must be accumulator indices 0..{n - 1}"
        if self.p_lapse is not None:
            outside = np.any(values < 0) or np.any(values > self.rt_max)
            return f"must be RTs in the lapse range [0, {self.rt_max:g}] s" if outside else None
        floor = _lowest(self.t0)
        if np.any(values <= 0) or (floor is not None and np.any(values <= floor)):
            return (f"must be positive RTs above the smallest non-decision time t0 allows "
                    f"({floor if floor is not None else 0:g} s)")
        return None


class SDT(AbstractLikelihood):
    """Equal-variance signal detection on hit and false-alarm counts per row.

    Hit rate Phi(d'/2 - c), false-alarm rate Phi(-d'/2 - c); `n_signal` / `n_noise` trials per
    row come from the data. Any of d' and c can be hierarchical, e.g. the seeds' brightness
    model d'_pi = alpha_p + gamma_i, gamma_i = zeta0 + zeta1 * brightness_i.

    Example:
        >>> alpha = hj.Level("alpha", "participant")
        >>> gamma = hj.Level("gamma", "item", loc=hj.Fixed("zeta0") + hj.Fixed(
        ...     "zeta1", predictors="brightness"))
        >>> print(hj.SDT(d_prime=hj.Crossed(alpha, gamma), c=hj.Fixed("c")))
        SDT likelihood on hits, false_alarms
          d_prime = alpha[participant] + gamma[item]
          c = c
          n_signal = data[n_signal]
          n_noise = data[n_noise]
    """

    d_prime: Term = _term()
    c: Term = _term()
    n_signal: Term = _term(default=Data("n_signal"))
    n_noise: Term = _term(default=Data("n_noise"))
    hits: str = eqx.field(static=True, default="hits")
    false_alarms: str = eqx.field(static=True, default="false_alarms")

    parameters = {"d_prime": C.real, "c": C.real, "n_signal": C.counts, "n_noise": C.counts}
    observed = ("hits", "false_alarms")

    def log_prob(self, hits, false_alarms, d_prime, c, n_signal, n_noise):
        return sdt_log_likelihood(hits, n_signal, false_alarms, n_noise, d_prime, c)

    def sample(self, key, d_prime, c, n_signal, n_noise):
        hits, false_alarms = sdt_sample(key, d_prime, c, n_signal, n_noise,
                                        jnp.shape(d_prime + c + n_signal + n_noise))
        return {"hits": hits, "false_alarms": false_alarms}

    def check_observed(self, name, values):
        if np.any(values < 0) or np.any(values != np.round(values)):
            return "must be non-negative whole-number counts"
        return None

    def check_columns(self, data):
        return (count_excess(self.hits, self.n_signal, data)
                or count_excess(self.false_alarms, self.n_noise, data))
