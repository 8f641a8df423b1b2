"""Settings and configs that would run a wrong study are refused before anything compiles,
naming the input and the fix (issue 38): a bool for a count, a seed past 32 bits, held values
outside their parameter's support or of no parameter, a builder that returns no model, an
empty or non-numeric grid, no datasets, settings given as a dict."""

import re

import jax
import numpy as np
import pytest
from click.testing import CliRunner

import hjax as hj
from hjax import config as cfg
from hjax.cli import main
from hjax.errors import ConfigError, DataError

MODEL, DESIGN = hj.catalog.eight_schools()


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: hj.FitSettings(draws=True), ConfigError,
     r"^FitSettings: draws: expected a number, not a boolean .*write the number \(got True\)"),
    (lambda: hj.StudySettings(max_rank=np.True_), ConfigError, r"max_rank: .* not a boolean"),
    (lambda: hj.Escalation(attempts=True), ConfigError, r"attempts: .* not a boolean"),
    (lambda: hj.FitSettings(init_radius=True), ConfigError, r"init_radius: .* not a boolean"),
    (lambda: hj.sample(MODEL, DESIGN, key=0, draws=True), ConfigError,
     r"^hj.sample: draws: expected a number, not a boolean"),
    (lambda: hj.sbc(MODEL, DESIGN, n_datasets=4, key=0, chains=True), ConfigError,
     r"^hj.sbc: chains: expected a number, not a boolean"),
    (lambda: hj.recover(MODEL, DESIGN, key=0, given={"mu": 0.0}, batch_size=False),
     ConfigError, r"^hj.recover: batch_size: expected a number, not a boolean"),
])
def test_a_bool_is_no_count(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_whole_numbers_still_count():
    assert hj.FitSettings(draws=np.int64(5), thin=2.0).draws == 5
    assert hj.StudySettings(chains=2).chains == 2


@pytest.mark.parametrize(("seed", "message"), [
    (2**32 + 3, r"seed 4294967299 must be below 2\*\*32 .* which are seed 3\. "
                r"Give a seed in \[0, 2\*\*32\)"),
    (-1, r"seed -1 must be 0 or more: jax.random.key\(-1\) is the key of seed 4294967295"),
])
@pytest.mark.parametrize("call", [
    lambda seed: hj.sample(MODEL, DESIGN, key=seed),
    lambda seed: hj.sbc(MODEL, DESIGN, n_datasets=4, key=np.int64(seed)),
    lambda seed: hj.recover(MODEL, DESIGN, key=seed, given={"mu": 0.0}),
])
def test_a_seed_jax_would_wrap_is_refused(call, seed, message):
    with pytest.raises(ConfigError, match=message):
        call(seed)


def test_the_largest_seed_is_its_own_key():
    assert hj.inference.nuts.keys.as_key(2**32 - 1).dtype == jax.random.key(0).dtype
    assert jax.random.key_data(hj.inference.nuts.keys.as_key(2**32 - 1)).tolist() == [0, 2**32 - 1]


@pytest.mark.parametrize(("options", "error", "message"), [
    (dict(given={"theta_sd": -1.0}), DataError,
     r"^hj.recover: theta_sd = -1 is outside the support of parameter 'theta_sd' \(positive\)"),
    (dict(grid={"theta_sd": [1.0, 0.0]}), DataError, r"theta_sd = 0 is outside the support"),
    (dict(given={"theta_sdd": 1.0}), DataError,
     r"\['theta_sdd'\] are not parameters of the model; hold some of \['mu', 'theta', "
     r"'theta_sd'\]"),
    (dict(given={"mu": float("nan")}), DataError, r"given\['mu'\] must be finite"),
    (dict(given={"mu": True}), DataError, r"given\['mu'\] must be a number"),
    (dict(grid={"mu": []}), DataError, r"grid\['mu'\] must be a number or a non-empty list"),
    (dict(grid={"mu": ["a", "b"]}), DataError, r"grid\['mu'\] must be a number or a non-empty"),
    (dict(given={"mu": 0.0}, grid={"mu": [1.0]}), DataError,
     r"\['mu'\] are both given and on the grid"),
    (dict(given={"mu": 0.0}, replicates=0), ConfigError,
     r"^hj.recover: replicates must be a whole number of at least 1; got int 0"),
])
def test_held_values_must_be_parameters_inside_their_support(options, error, message):
    with pytest.raises(error, match=message):
        hj.recover(MODEL, DESIGN, key=0, **options)


def test_simulate_refuses_a_value_outside_the_support():
    design = MODEL.prepare(DESIGN, observed=False)
    with pytest.raises(DataError, match=r"model.simulate: theta_sd = -1 is outside the support "
                                        r"of parameter 'theta_sd' \(positive\)"):
        MODEL.simulate(jax.random.key(0), design, given={"theta_sd": -1.0})
    with pytest.raises(DataError, match=r"\['theta_sdd'\] are not parameters of the model"):
        MODEL.simulate(jax.random.key(0), design, given={"theta_sdd": 1.0})


@pytest.mark.parametrize(("n_datasets", "message"), [
    (0, r"^hj.sbc: n_datasets must be a whole number of at least 1; got int 0"),
    (True, r"got bool True"),
    (2.5, r"got float 2.5"),
])
def test_sbc_needs_datasets(n_datasets, message):
    with pytest.raises(ConfigError, match=message):
        hj.sbc(MODEL, DESIGN, n_datasets=n_datasets, key=0)


def test_settings_may_be_a_dict_of_their_fields():
    settings = hj.settings.validated(hj.StudySettings, "hj.sbc", {"chains": 2}, draws=7)
    assert (settings.chains, settings.draws, settings.warmup) == (2, 7, 500)
    with pytest.raises(ConfigError, match=r"^hj.sbc: chains: Input should be greater than or "
                                          r"equal to 1 \(got 0\)"):
        hj.sbc(MODEL, DESIGN, n_datasets=4, key=0, settings={"chains": 0})
    with pytest.raises(ConfigError, match=r"^hj.sample: unknown settings \['chainz'\]"):
        hj.sample(MODEL, DESIGN, key=0, settings={"chainz": 2})
    with pytest.raises(ConfigError, match=r"^hj.recover: settings must be "
                                          r"hj.StudySettings\(...\) or a dict of its fields; "
                                          r"got str 'fast'"):
        hj.recover(MODEL, DESIGN, key=0, given={"mu": 0.0}, settings="fast")


# --- the same through YAML configs and the `hjax` command ---------------------------------

BUILDERS = '''
import hjax as hj

def raises(groups: int = 3):
    return {}["groups"]

def nothing():
    return None

def model_only():
    return hj.catalog.eight_schools()[0]
'''


def _config(tmp_path, text: str):
    path = tmp_path / "study.yaml"
    # No compilation cache: it would point this test process's JAX at tmp_path.
    path.write_text(f"output: {tmp_path / 'out'}\ncompile_cache: false\n{text}")
    return path


def _invoke(tmp_path, text: str, command: str = "sbc"):
    result = CliRunner().invoke(main, [command, str(_config(tmp_path, text))])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize(("text", "message"), [
    ("model: eight_schools\ndraws: yes\n",
     r"draws: expected a number, not a boolean \(YAML reads yes/no/on/off/true/false"),
    ("model: eight_schools\ndatasets: true\n", r"datasets: expected a number, not a boolean"),
    ("model: eight_schools\ncluster: {tasks: on}\n", r"cluster.tasks: expected a number"),
    ("model: eight_schools\nseed: 4294967299\n",
     r"seed: seed 4294967299 must be below 2\*\*32"),
    ("model: eight_schools\nseed: -1\n", r"seed: seed -1 must be 0 or more"),
    ("model: eight_schools\ndatasets: 0\n", r"datasets: Input should be greater than 0"),
    ("model: eight_schools\ngrid: {mu: []}\n",
     r"grid: mu must be a non-empty list of numbers to cross, e.g. \[0.5, 1.0\]; got \[\]"),
    ("model: eight_schools\ngrid: {mu: 1.0}\n", r"grid: mu must be a non-empty list"),
    ("model: eight_schools\ngrid: {mu: [a, b]}\n",
     r"grid: mu must be a number or a non-empty list of numbers; got \['a', 'b'\]"),
    ("model: eight_schools\ngiven: {mu: one}\n", r"given: mu must be a number"),
])
def test_bad_config_is_refused_at_load(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        cfg.load(_config(tmp_path, text))
    output = _invoke(tmp_path, text, command="recover")
    assert re.search(message, output), output


def test_yaml_whole_numbers_still_load(tmp_path):
    config = cfg.load(_config(tmp_path, "model: eight_schools\nchains: 2\ndraws: 300\n"
                                        "seed: 4294967295\ngrid: {mu: [0, 1.5]}\n"))
    assert (config.chains, config.draws, config.seed, config.grid) == (2, 300, 2**32 - 1,
                                                                       {"mu": [0, 1.5]})
    assert cfg.StudyConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(("text", "message"), [
    ("given: {theta_sd: -1}\n",
     r"^Error: hj.recover: theta_sd = -1 is outside the support of parameter 'theta_sd' "
     r"\(positive\); hold it at values inside it.$"),
    ("given: {theta_sdd: 1}\n", r"\['theta_sdd'\] are not parameters of the model"),
    ("grid: {theta_sd: [1, -2]}\n", r"theta_sd = -2 is outside the support"),
])
def test_cli_recover_refuses_held_values_before_fitting(tmp_path, text, message):
    output = _invoke(tmp_path, "model: eight_schools\n" + text, command="recover")
    assert re.search(message, output.splitlines()[-1]), output
    assert not (tmp_path / "out" / "batches").exists() or not any(
        (tmp_path / "out" / "batches").glob("*.nc"))


@pytest.mark.parametrize(("builder", "message"), [
    ("raises", r"^Error: Model builder 'bad_builders:raises' raised KeyError: 'groups' "
               r"\(.*bad_builders.py, line 5\), with args \{\}\.$"),
    ("nothing", r"^Error: Model builder 'bad_builders:nothing' returned None; it must return "
                r"\(model, design\): an hj.Model and a dict of design columns.$"),
    ("model_only", r"returned a Model; it must return \(model, design\)"),
])
def test_a_builder_that_fails_or_returns_no_design_is_named(tmp_path, monkeypatch, builder,
                                                            message):
    (tmp_path / "bad_builders.py").write_text(BUILDERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    output = _invoke(tmp_path, f"model: bad_builders:{builder}\ndatasets: 2\n")
    assert re.search(message, output.splitlines()[-1]), output


def test_a_fit_model_with_other_parameters_is_refused_before_anything_runs():
    model, design = hj.catalog.varying_intercept(groups=3, per_group=2)
    other, _ = hj.catalog.varying_slope(groups=3, per_group=2)
    with pytest.raises(hj.errors.ModelError, match="fit_model reports .* SBC compares the same"):
        hj.sbc(model, design, n_datasets=2, key=0, fit_model=other)
