"""Data are arguments: one trace of the log density serves every same-shaped dataset."""

import jax
import numpy as np

import hjax as hj


def test_vmapped_logdensity_traces_once_for_16_datasets(grouped):
    model = hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0") + hj.Level("a", "g"),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
        coords={"g": 6},
    )
    traces = []

    def counted(position, data):
        traces.append(1)  # runs at trace time only
        return model.logdensity(position, data)

    batched = jax.jit(jax.vmap(counted))
    design = model.prepare({"g": grouped["g"]}, observed=False)
    for seed in range(3):
        keys = jax.random.split(jax.random.key(seed), 16)
        _, datasets = jax.vmap(model.simulate, in_axes=(0, None))(keys, design)
        positions = jax.vmap(model.init)(keys)
        lp = batched(positions, datasets)
        assert lp.shape == (16,) and np.all(np.isfinite(lp))
    assert len(traces) == 1


def test_print_shows_likelihood_groups_and_priors():
    school = hj.Level("school_eff", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
                      scale=hj.HalfCauchy(5.0))
    model = hj.Model(hj.Gaussian(mu=hj.Nested("class_eff", "class", parent=school),
                                 sigma=hj.Data("sigma")), coords={"school": 3, "class": 6})
    text = str(model)
    for expected in ["Gaussian likelihood on y", "mu = class_eff[class in school]",
                     "sigma = data[sigma]", "school (3)", "class (6)",
                     "school_eff_sd  scalar   positive       ~ HalfCauchy(5)",
                     "non-centered Normal(school_eff[class_in_school], class_eff_sd)",
                     "mu             scalar   real           ~ Normal(0, 5)"]:
        assert expected in text, text
