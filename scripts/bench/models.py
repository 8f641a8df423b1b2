"""The benchmark's problems: one model written three times (hjax, NumPyro, Stan), and its data.

The hjax side is the shipped catalog model wherever there is one, so the benchmark measures
what users get. The NumPyro model and the Stan program are the same density, non-centered the
same way, with the same names for the values compared across libraries (`Problem.params`: the
constrained parameters hjax reports in `result.posterior`). Data are hjax's prepared columns
(0-based indices); the Stan converters shift indices to 1-based.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist

import hjax as hj

Data = dict[str, np.ndarray]


@dataclass(frozen=True)
class Problem:
    """A model in the three libraries; `design` holds the raw columns without `y`."""

    name: str
    model: hj.Model
    design: dict
    numpyro_model: Callable[[Data], None] | None
    stan_code: str
    stan_data: Callable[[Data], dict]
    params: tuple[str, ...]


# --- varying intercept ---------------------------------------------------------------------

VARYING_INTERCEPT_STAN = """
data { int<lower=1> N; int<lower=1> J; array[N] int<lower=1, upper=J> group; vector[N] y; }
parameters { real b0; real<lower=0> u_sd; vector[J] u_z; real<lower=0> sigma; }
transformed parameters { vector[J] u = u_sd * u_z; }
model {
  b0 ~ normal(0, 2); u_sd ~ normal(0, 1); u_z ~ std_normal(); sigma ~ normal(0, 1);
  y ~ normal(b0 + u[group], sigma);
}
"""


def varying_intercept(groups: int = 20, per_group: int = 10) -> Problem:
    """`hj.catalog.varying_intercept`: y ~ N(b0 + u[group], sigma), u = u_sd * u_z."""
    model, design = hj.catalog.varying_intercept(groups=groups, per_group=per_group)

    def numpyro_model(data):
        b0 = numpyro.sample("b0", dist.Normal(0.0, 2.0))
        u_sd = numpyro.sample("u_sd", dist.HalfNormal(1.0))
        with numpyro.plate("group", groups):
            u_z = numpyro.sample("u_z", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        u = numpyro.deterministic("u", u_sd * u_z)
        numpyro.sample("y", dist.Normal(b0 + u[data["group"]], sigma), obs=data["y"])

    def stan_data(data):
        return {"N": data["y"].size, "J": groups, "group": data["group"] + 1, "y": data["y"]}

    return Problem("varying_intercept", model, design, numpyro_model, VARYING_INTERCEPT_STAN,
                   stan_data, ("b0", "u_sd", "sigma", "u"))


# --- crossed Bernoulli ---------------------------------------------------------------------

CROSSED_BERNOULLI_STAN = """
data {
  int<lower=1> N; int<lower=1> P; int<lower=1> I;
  array[N] int<lower=1, upper=P> person; array[N] int<lower=1, upper=I> item;
  array[N] int<lower=0, upper=1> y;
}
parameters {
  real<lower=0> theta_sd; vector[P] theta_z; real<lower=0> b_sd; vector[I] b_z; real mu_b;
}
transformed parameters { vector[P] theta = theta_sd * theta_z; vector[I] b = mu_b + b_sd * b_z; }
model {
  theta_sd ~ normal(0, 1); theta_z ~ std_normal();
  b_sd ~ normal(0, 1); b_z ~ std_normal(); mu_b ~ normal(0, 1.5);
  y ~ bernoulli_logit(theta[person] + b[item]);
}
"""


def crossed_bernoulli(persons: int = 30, items: int = 10) -> Problem:
    """`hj.catalog.crossed_bernoulli`: logit P(y) = theta[person] + b[item],
    theta ~ N(0, theta_sd), b ~ N(mu_b, b_sd), both non-centered."""
    model, design = hj.catalog.crossed_bernoulli(persons=persons, items=items)

    def numpyro_model(data):
        theta_sd = numpyro.sample("theta_sd", dist.HalfNormal(1.0))
        with numpyro.plate("person", persons):
            theta_z = numpyro.sample("theta_z", dist.Normal(0.0, 1.0))
        b_sd = numpyro.sample("b_sd", dist.HalfNormal(1.0))
        with numpyro.plate("item", items):
            b_z = numpyro.sample("b_z", dist.Normal(0.0, 1.0))
        mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 1.5))
        theta = numpyro.deterministic("theta", theta_sd * theta_z)
        b = numpyro.deterministic("b", mu_b + b_sd * b_z)
        logits = theta[data["person"]] + b[data["item"]]
        numpyro.sample("y", dist.BernoulliLogits(logits), obs=data["y"])

    def stan_data(data):
        return {"N": data["y"].size, "P": persons, "I": items, "person": data["person"] + 1,
                "item": data["item"] + 1, "y": data["y"]}

    return Problem("crossed_bernoulli", model, design, numpyro_model, CROSSED_BERNOULLI_STAN,
                   stan_data, ("theta_sd", "b_sd", "mu_b", "theta", "b"))


# --- eight schools -------------------------------------------------------------------------

EIGHT_SCHOOLS_STAN = """
data { int<lower=1> J; vector[J] y; vector<lower=0>[J] sigma; }
parameters { real mu; real<lower=0> theta_sd; vector[J] theta_z; }
transformed parameters { vector[J] theta = mu + theta_sd * theta_z; }
model {
  mu ~ normal(0, 5); theta_sd ~ cauchy(0, 5); theta_z ~ std_normal();
  y ~ normal(theta, sigma);
}
"""


def eight_schools() -> Problem:
    """`hj.catalog.eight_schools`, non-centered: theta = mu + tau * z with tau (named
    `theta_sd`) ~ HalfCauchy(5), mu ~ N(0, 5); data from posteriordb (`hj.datasets`)."""
    data = hj.datasets.eight_schools()
    model, design = hj.catalog.eight_schools(sigma=tuple(data["sigma"]))
    schools = data["y"].size

    def numpyro_model(data):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        theta_sd = numpyro.sample("theta_sd", dist.HalfCauchy(5.0))
        with numpyro.plate("school", schools):
            theta_z = numpyro.sample("theta_z", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + theta_sd * theta_z)
        numpyro.sample("y", dist.Normal(theta[data["school"]], data["sigma"]), obs=data["y"])

    def stan_data(data):
        return {"J": schools, "y": data["y"], "sigma": data["sigma"]}

    design = {**design, "y": data["y"]}
    return Problem("eight_schools", model, design, numpyro_model, EIGHT_SCHOOLS_STAN,
                   stan_data, ("mu", "theta_sd", "theta"))


# --- radon ---------------------------------------------------------------------------------

RADON_STAN = """
data {
  int<lower=1> N; int<lower=1> J; array[N] int<lower=1, upper=J> county;
  vector[N] floor_measure; vector[N] log_uppm; vector[N] y;
}
parameters {
  real b0; real b_floor; real b_uppm; real<lower=0> a_sd; vector[J] a_z; real<lower=0> sigma;
}
transformed parameters { vector[J] a = a_sd * a_z; }
model {
  b0 ~ normal(0, 5); b_floor ~ normal(0, 5); b_uppm ~ normal(0, 5);
  a_sd ~ normal(0, 1); a_z ~ std_normal(); sigma ~ normal(0, 1);
  y ~ normal(b0 + b_floor * floor_measure + b_uppm * log_uppm + a[county], sigma);
}
"""


def radon() -> Problem:
    """Minnesota radon (posteriordb radon_mn: 919 homes, 85 counties): log radon ~
    N(b0 + b_floor floor + b_uppm log_uppm + a[county], sigma), a = a_sd * a_z; log_uppm is
    given per home; data from posteriordb (`hj.datasets`)."""
    raw = hj.datasets.radon()
    counties = int(raw["county"].max()) + 1
    model = hj.Model(
        hj.Gaussian(
            mu=hj.Fixed("b0", hj.Normal(0.0, 5.0))
            + hj.Fixed("b_floor", hj.Normal(0.0, 5.0), predictors="floor_measure")
            + hj.Fixed("b_uppm", hj.Normal(0.0, 5.0), predictors="log_uppm")
            + hj.Level("a", "county", scale=hj.HalfNormal(1.0)),
            sigma=hj.Fixed("sigma", hj.HalfNormal(1.0)),
        ),
        coords={"county": counties},
    )
    design = {"county": raw["county"], "floor_measure": raw["floor"],
              "log_uppm": raw["log_uppm"], "y": raw["log_radon"]}

    def numpyro_model(data):
        b0 = numpyro.sample("b0", dist.Normal(0.0, 5.0))
        b_floor = numpyro.sample("b_floor", dist.Normal(0.0, 5.0))
        b_uppm = numpyro.sample("b_uppm", dist.Normal(0.0, 5.0))
        a_sd = numpyro.sample("a_sd", dist.HalfNormal(1.0))
        with numpyro.plate("county", counties):
            a_z = numpyro.sample("a_z", dist.Normal(0.0, 1.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        a = numpyro.deterministic("a", a_sd * a_z)
        mu = (b0 + b_floor * data["floor_measure"] + b_uppm * data["log_uppm"]
              + a[data["county"]])
        numpyro.sample("y", dist.Normal(mu, sigma), obs=data["y"])

    def stan_data(data):
        return {"N": data["y"].size, "J": counties, "county": data["county"] + 1,
                "floor_measure": data["floor_measure"], "log_uppm": data["log_uppm"],
                "y": data["y"]}

    return Problem("radon", model, design, numpyro_model, RADON_STAN, stan_data,
                   ("b0", "b_floor", "b_uppm", "a_sd", "sigma", "a"))


# --- hierarchical drift diffusion ----------------------------------------------------------

DDM_STAN = """
data {
  int<lower=1> N; int<lower=1> J; array[N] int<lower=1, upper=J> participant;
  vector<lower=0>[N] rt; array[N] int<lower=0, upper=1> choice;
}
parameters {
  real v; real<lower=0> v_p_sd; vector[J] v_p_z;
  real log_a; real<lower=0> log_a_p_sd; vector[J] log_a_p_z;
  real log_t0; real<lower=0> log_t0_p_sd; vector[J] log_t0_p_z;
}
transformed parameters {
  vector[J] v_p = v_p_sd * v_p_z;
  vector[J] log_a_p = log_a_p_sd * log_a_p_z;
  vector[J] log_t0_p = log_t0_p_sd * log_t0_p_z;
}
model {
  v ~ normal(1, 1); v_p_sd ~ normal(0, 0.5); v_p_z ~ std_normal();
  log_a ~ normal(0.5, 0.2); log_a_p_sd ~ normal(0, 0.2); log_a_p_z ~ std_normal();
  log_t0 ~ normal(-1.4, 0.2); log_t0_p_sd ~ normal(0, 0.2); log_t0_p_z ~ std_normal();
  {
    vector[J] a = exp(log_a + log_a_p);
    vector[J] t0 = exp(log_t0 + log_t0_p);
    vector[J] drift = v + v_p;
    for (n in 1:N) {
      int j = participant[n];
      // Stan's wiener_lpdf is the upper boundary's density; the lower's mirrors w and v.
      if (choice[n] == 1) target += wiener_lpdf(rt[n] | a[j], t0[j], 0.5, drift[j]);
      else target += wiener_lpdf(rt[n] | a[j], t0[j], 0.5, -drift[j]);
    }
  }
}
"""


def ddm(participants: int = 10, trials: int = 60) -> Problem:
    """`hj.catalog.ddm`: Wiener(v, a, t0, w = 0.5) with v, log a and log t0 each a mean plus
    non-centered participant deviations; against Stan's `wiener_lpdf` (no NumPyro Wiener)."""
    model, design = hj.catalog.ddm(participants=participants, trials=trials)

    def stan_data(data):
        return {"N": data["rt"].size, "J": participants, "participant": data["participant"] + 1,
                "rt": data["rt"], "choice": data["choice"].astype(int)}

    return Problem("ddm", model, design, None, DDM_STAN, stan_data,
                   ("v", "log_a", "log_t0", "v_p_sd", "log_a_p_sd", "log_t0_p_sd", "v_p",
                    "log_a_p", "log_t0_p"))


# --- data ----------------------------------------------------------------------------------

def simulate(problem: Problem, n: int, seed: int = 0) -> Data:
    """`n` prior-predictive datasets, stacked: every column leads with a dataset axis.
    Dataset i comes from `fold_in(key, i)`, so a smaller `n` gives the first datasets of a
    larger one."""
    design = problem.model.prepare(problem.design, observed=False)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(seed), np.arange(n))
    _, data = jax.vmap(problem.model.simulate, in_axes=(0, None))(keys, design)
    return {k: np.asarray(v) for k, v in data.items()}


def observed(problem: Problem) -> Data:
    """The problem's own data (a reference dataset), prepared, as a batch of one."""
    data = problem.model.prepare(problem.design)
    return {k: np.asarray(v)[None] for k, v in data.items()}


def take(data: Data, index) -> Data:
    """Dataset `index` (an int) or a sub-batch (a slice) of a stacked batch."""
    return {k: v[index] for k, v in data.items()}
