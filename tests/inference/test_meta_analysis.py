"""Meta-analysis with known standard errors: the BCG vaccine trials against metafor's REML
estimates (Viechtbauer 2010), with and without the latitude moderator."""

import numpy as np

import hjax as hj

# metafor::rma(yi, vi, data = dat.bcg): mu -0.7145 (se 0.1798); with mods = ~ ablat:
# intercept 0.2515 (se 0.2491), slope -0.0291 (se 0.0072).
REML = {False: {"mu": (-0.7145, 0.1798)},
        True: {"mu": (0.2515, 0.2491), "b_latitude": (-0.0291, 0.0072)}}


def test_bcg_posteriors_agree_with_reml():
    for moderator, reference in REML.items():
        model, data = hj.catalog.bcg(moderator=moderator)
        fit = hj.sample(model, data, key=0, chains=4, warmup=1000, draws=1000, warn=False)
        assert int(hj.diagnose(fit).divergences) < 10
        summary = hj.summary(fit, var_names=list(reference))
        for name, (estimate, se) in reference.items():
            mean, sd = summary.loc[name, "mean"], summary.loc[name, "sd"]
            assert abs(mean - estimate) < 2 * np.hypot(sd, se), (moderator, name, mean, sd)
