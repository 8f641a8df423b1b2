"""Models, data and exact posteriors shared by the inference tests."""

import json
from pathlib import Path

import numpy as np

import hjax as hj

# posteriordb's reference posterior of eight schools (non-centered), as moments with their
# Monte Carlo standard errors (how they were computed: the file's "source").
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "eight_schools_reference.json"


def eight_schools_model() -> hj.Model:
    return hj.Model(
        hj.Gaussian(
            mu=hj.Level("theta", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
                        scale=hj.HalfCauchy(5.0)),
            sigma=hj.Data("sigma"),
        ),
        coords={"school": 8},
    )


# A conjugate two-level normal model: y_i ~ N(theta[g_i], sigma_i), theta_g ~ N(mu, TAU),
# mu ~ N(0, S0), with every variance known, so the posterior of (mu, theta) is Gaussian.
TAU, S0 = 2.0, 5.0


def conjugate_model(groups: int, cls: type[hj.Model] = hj.Model) -> hj.Model:
    return cls(
        hj.Gaussian(mu=hj.Level("theta", "g", loc=hj.Fixed("mu", hj.Normal(0, S0)), scale=TAU),
                    sigma=hj.Data("sigma")),
        coords={"g": groups},
    )


def conjugate_data(seed: int, groups: int = 3, per_group: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    theta = rng.normal(1.0, TAU, groups)
    sigma = rng.uniform(1.0, 3.0, g.size)
    return {"y": rng.normal(theta[g], sigma), "sigma": sigma, "g": g}


def conjugate_posterior(data: dict, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior mean and covariance of (mu, theta_1..G)."""
    y, sigma, g = (np.asarray(data[k]) for k in ("y", "sigma", "g"))
    precision = np.zeros((groups + 1, groups + 1))
    shift = np.zeros(groups + 1)
    precision[0, 0] = 1 / S0**2 + groups / TAU**2
    precision[0, 1:] = precision[1:, 0] = -1 / TAU**2
    for j in range(groups):
        w = 1 / sigma[g == j] ** 2
        precision[j + 1, j + 1] = 1 / TAU**2 + w.sum()
        shift[j + 1] = (w * y[g == j]).sum()
    cov = np.linalg.inv(precision)
    return cov @ shift, cov


def eight_schools_reference() -> dict[str, dict[str, np.ndarray]]:
    """Per variable (mu, theta_sd, theta), the reference's mean, sd, mcse_mean and mcse_sd."""
    variables = json.loads(REFERENCE.read_text())["variables"]
    return {name: {stat: np.asarray(value) for stat, value in moments.items()}
            for name, moments in variables.items()}


def z_scores(ours, ours_se, theirs, theirs_se=0.0):
    """|difference| in units of the combined Monte Carlo standard error."""
    return np.abs(np.asarray(ours) - theirs) / np.sqrt(np.asarray(ours_se) ** 2 + theirs_se**2)


N_DATASETS = 16
TRACES: list[str] = []


class CountingModel(hj.Model):
    """A model that records each time its log density is traced (run as Python)."""

    def logdensity(self, position, data):
        TRACES.append("logdensity")
        return super().logdensity(position, data)
