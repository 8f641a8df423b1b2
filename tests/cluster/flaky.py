"""A user's model whose data check fails on one array task while a marker file exists: a
node with a broken scratch disk, say. Importable by the Slurm tasks (PYTHONPATH)."""

import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jss
import numpy as np

import hjax as hj
from hjax.model import constraints as C
from hjax.model.terms import Term, as_term


class CheckedGaussian(hj.Likelihood):
    """y ~ Normal(mu, sigma); its host-side check of y raises on task `failing_task` while
    `marker` exists."""

    mu: Term = eqx.field(converter=as_term)
    sigma: Term = eqx.field(converter=as_term)
    marker: str = eqx.field(static=True)
    failing_task: str = eqx.field(static=True)
    y: str = eqx.field(static=True, default="y")
    parameters = {"mu": C.real, "sigma": C.positive}
    observed = ("y",)

    def log_prob(self, y, mu, sigma):
        return jss.norm.logpdf(y, mu, sigma)

    def sample(self, key, mu, sigma):
        return {"y": mu + sigma * jax.random.normal(key, jnp.shape(mu + sigma))}

    def check_observed(self, name, values):
        if (os.environ.get("SLURM_ARRAY_TASK_ID") == self.failing_task
                and Path(self.marker).exists()):
            raise OSError(f"scratch disk unavailable on task {self.failing_task}")
        return None


def build(groups: int = 4, per_group: int = 5, marker: str = "", failing_task: int = 1):
    model = hj.Model(
        CheckedGaussian(mu=hj.Fixed("b0", hj.Normal(0.0, 2.0)) + hj.Level("u", "group"),
                        sigma=hj.Fixed("sigma", hj.HalfNormal(1.0)), marker=marker,
                        failing_task=str(failing_task)),
        coords={"group": groups})
    return model, {"group": np.repeat(np.arange(groups), per_group)}
