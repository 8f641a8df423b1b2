"""One settings object: validated once, with errors naming the setting; runtime settings
(warmup, target_accept, init_radius) reuse the compiled program; compile time apart."""

import jax
import numpy as np
import pytest
from inference_helpers import TRACES, CountingModel, conjugate_data, conjugate_model

import hjax as hj
from hjax.settings import FitSettings, StudySettings, validated

FAST = dict(chains=2, warmup=30, draws=20, warn=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"chains": 2.5}, r"chains: Input should be a valid integer.*got 2.5"),
    ({"chains": 0}, r"chains: Input should be greater than or equal to 1"),
    ({"draws": "many"}, r"draws: Input should be a valid integer"),
    ({"target_accept": 1.0}, r"target_accept: Input should be less than 1"),
    ({"sampler": "hmc"}, r"sampler: Input should be 'nuts' or 'blackjax'"),
    ({"init": "zero"}, r"init: Input should be 'uniform', 'prior', 'advi' or 'pathfinder'"),
    ({"lanes": 0}, r"lanes: Input should be greater than or equal to 1"),
    ({"sampler": "blackjax", "lanes": 4}, r"lanes applies to sampler='nuts'"),
    ({"vectorize": 4}, r"vectorize applies to sampler='blackjax'"),
    ({"chainz": 4}, r"unknown settings \['chainz'\]; the settings are \[.*'chains'"),
])
def test_bad_settings_are_named_before_anything_runs(options, message):
    model = conjugate_model(3)
    with pytest.raises(ValueError, match=r"^hj.sample: " + message):
        hj.sample(model, conjugate_data(0), key=0, **options)


def test_samplers_and_initialisations_are_objects_named_as_before():
    """Names, flat options and objects give the same settings; settings record each as its
    name and options, which read back to the same object."""
    assert FitSettings(sampler="blackjax", vectorize=4) == FitSettings(
        sampler=hj.BlackJAXNUTS(vectorize=4)) == FitSettings(
        sampler={"name": "blackjax", "vectorize": 4})
    assert FitSettings(lanes=4).sampler == hj.LanesNUTS(lanes=4)
    assert FitSettings(init=None).init == FitSettings().init == hj.InitUniform(radius=2.0)
    assert FitSettings(init="advi", init_radius=1.0).init == hj.ADVI(radius=1.0)
    assert FitSettings(init="prior").init == hj.InitPrior()
    # Settings before objects recorded init_radius beside every init: ignored without a radius.
    assert FitSettings(init="prior", init_radius=2.0).init == hj.InitPrior()
    settings = StudySettings(init=hj.Pathfinder(radius=0.5), lanes=3)
    dumped = settings.model_dump()
    assert dumped["sampler"] == {"name": "nuts", "lanes": 3}
    assert dumped["init"] == {"name": "pathfinder", "radius": 0.5}
    assert StudySettings.model_validate(dumped) == settings
    assert hash(StudySettings.model_validate(dumped)) == hash(settings)
    # Options given flat override those of the base settings' objects.
    assert validated(FitSettings, "test", settings, lanes=5).sampler == hj.LanesNUTS(lanes=5)
    with pytest.raises(hj.errors.ConfigError, match=r"radius: Input should be greater than 0"):
        hj.InitUniform(radius=0.0)


def test_study_settings_share_the_fit_fields_with_study_defaults():
    study = StudySettings(chains=2)
    assert (study.warmup, study.draws, study.batch_size, study.max_rank) == (500, 500, 16, 99)
    assert FitSettings().warmup_iterations == 1000
    assert FitSettings(init="pathfinder").warmup_iterations == 300
    # A study's settings serve a fit; options override them.
    fit = validated(FitSettings, "test", study, draws=7)
    assert (fit.chains, fit.warmup, fit.draws, fit.batch_size) == (2, 500, 7, 16)
    with pytest.raises(ValueError, match=r"hj.sbc: max_rank: Input should be greater"):
        validated(StudySettings, "hj.sbc", max_rank=0)


def test_key_may_be_an_int_seed_and_anything_else_is_named():
    model, data = conjugate_model(3), conjugate_data(0)
    by_seed = hj.sample(model, data, key=3, **FAST)
    by_key = hj.sample(model, data, key=jax.random.key(3), **FAST)
    np.testing.assert_array_equal(by_seed.posterior["mu"], by_key.posterior["mu"])
    with pytest.raises(hj.errors.ConfigError, match=r"key must be a PRNG key such as "
                                                    r"jax.random.key\(0\), or an int seed; "
                                                    r"got str"):
        hj.sample(model, data, key="3", **FAST)


def test_runtime_settings_reuse_the_program_and_compile_time_is_apart():
    """A second fit with other warmup, target_accept, init_radius or thin traces and compiles
    nothing (compile_time 0); the first fit's compile time is reported apart."""
    model = conjugate_model(3, CountingModel)
    data = [conjugate_data(seed) for seed in range(2)]
    first = hj.sample(model, data, key=0, **FAST)
    start = len(TRACES)
    again = hj.sample(model, data, key=1, **{**FAST, "warmup": 45}, target_accept=0.9,
                      init_radius=1.0, thin=3)
    assert len(TRACES) == start
    attrs = first.posterior.attrs
    assert attrs["compile_time"] > 0 and attrs["sampling_time"] > 0
    assert again.posterior.attrs["compile_time"] == 0.0
    assert again.posterior.attrs["warmup"] == 45
    assert again.posterior.attrs["target_accept"] == 0.9
    assert again.posterior.attrs["thin"] == 3
    # thin is a runtime value too: unthinned, a draw stands for a third of the leapfrog steps.
    plain = hj.sample(model, data, key=1, **{**FAST, "warmup": 45}, target_accept=0.9,
                      init_radius=1.0)
    assert plain.posterior.attrs["compile_time"] == 0.0
    steps = [float(fit.sample_stats.n_steps.mean()) for fit in (plain, again)]
    assert 2 < steps[1] / steps[0] < 4.5, steps
    # The warmup really is a runtime value: with none, the step size is never adapted.
    unadapted = hj.sample(model, data, key=1, **{**FAST, "warmup": 0})
    assert unadapted.posterior.attrs["compile_time"] == 0.0
    assert np.all(unadapted.fit_stats.step_size.values == 1.0)
    assert np.all(first.fit_stats.step_size.values != 1.0)
    # draws shape the output: another value compiles another program.
    other = hj.sample(model, data, key=1, **{**FAST, "draws": 21})
    assert other.posterior.attrs["compile_time"] > 0


def test_compiled_programs_are_bounded_and_cleared(monkeypatch):
    """The programs kept for reuse are the most recently used `MAX_PROGRAMS`;
    `hj.clear_caches()` drops them all."""
    from hjax.inference import compiled_programs
    from hjax.inference.run import chunks

    monkeypatch.setattr(chunks, "MAX_PROGRAMS", 1)
    hj.clear_caches()
    model = conjugate_model(3)
    hj.sample(model, conjugate_data(0), key=0, **FAST)
    first = compiled_programs()
    hj.sample(model, conjugate_data(0), key=0, **{**FAST, "chains": 3})  # another program
    assert len(compiled_programs()) == 1 and compiled_programs()[0] is not first[0]
    hj.clear_caches()
    assert compiled_programs() == []
