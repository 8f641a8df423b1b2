"""SBC end to end: a correct model passes, a deliberately wrong one is flagged."""

import jax

import hjax as hj

SETTINGS = dict(n_datasets=96, chains=2, warmup=150, draws=200, batch_size=48, max_rank=39)


def _model(sigma):
    return hj.Model(hj.Gaussian(mu=hj.Fixed("b0", hj.Normal(0.0, 1.0)), sigma=sigma), coords={})


def _rejected(table):
    test = hj.uniformity_test(table, alpha=0.01)
    return [str(v) for v in test.variable.values[test.rejected.values]]


def test_correct_model_is_calibrated_and_wrong_likelihood_scale_is_flagged():
    truth_model = _model(1.0)
    design = {"y": [0.0] * 5}  # a placeholder: only the number of observations matters
    key = jax.random.key(11)
    good = hj.sbc(truth_model, design, key=key, **SETTINGS)
    assert _rejected(good) == []
    # Fitting with half the true noise sd makes posteriors overconfident: ranks pile at 0 and L.
    wrong = hj.sbc(truth_model, design, key=key, fit_model=_model(0.5), **SETTINGS)
    assert _rejected(wrong) == ["b0"]
    # Escalation (on by default in studies) refitted some fits and did not hide the error,
    # which the fits that pass their diagnostics show too.
    assert int((wrong["attempts"] > 1).sum()) > 0
    assert _rejected(wrong.isel(dataset=wrong["passed"].values)) == ["b0"]
