"""The classic radon model on the Minnesota data: varying intercepts and varying floor slopes
by county, each around its own population mean (the model the term algebra must allow)."""

import numpy as np

import hjax as hj

# lme4's estimates for this model on these data (Gelman & Hill 2007, section 13.1):
# intercept mean 1.46 (se 0.05), floor slope mean -0.68 (se 0.09).
LMER = {"mu_alpha": (1.46, 0.05), "mu_beta": (-0.68, 0.09)}


def test_varying_intercepts_and_slopes_with_their_own_means_fit_the_radon_data():
    radon = hj.datasets.radon()
    data = {"y": radon["log_radon"], "floor": radon["floor"], "county": radon["county"]}
    counties = 85
    model = hj.Model(hj.Gaussian(
        mu=hj.Level("alpha", "county", loc=hj.Fixed("mu_alpha", hj.Normal(0, 5)))
        + hj.Level("beta", "county", loc=hj.Fixed("mu_beta", hj.Normal(0, 5)),
                   predictors=("floor",), scale=hj.HalfNormal(1.0)),
        sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))), coords={"county": counties})
    fit = hj.sample(model, data, key=0, chains=4, warmup=500, draws=500, warn=False)
    diagnostics = hj.diagnose(fit)
    assert int(diagnostics.init_failures) == 0 and float(diagnostics.max_rhat) < 1.05
    summary = hj.summary(fit, var_names=["mu_alpha", "mu_beta"])
    for name, (estimate, se) in LMER.items():
        mean, sd = summary.loc[name, "mean"], summary.loc[name, "sd"]
        # The posterior and lme4's estimate agree to within their uncertainties.
        assert abs(mean - estimate) < 2 * np.hypot(sd, se), (name, mean, sd)
    assert fit.posterior["alpha"].dims == ("chain", "draw", "county")
