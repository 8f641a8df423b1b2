"""Counts, group sizes and building blocks that used to be accepted silently are refused, before
anything compiles, with a message naming the column or argument and the fix."""

import jax
import numpy as np
import pytest

import hjax as hj


def _binomial(trials=None):
    likelihood = hj.Binomial(logit_p=hj.Fixed("b")) if trials is None else hj.Binomial(
        logit_p=hj.Fixed("b"), trials=trials)
    return hj.Model(likelihood, coords={})


# --- successes and trials --------------------------------------------------------------------
def test_binomial_successes_above_trials_refused_in_prepare():
    raw = {"y": [3, 12, 5, 7], "trials": [10, 10, 5, 5]}
    with pytest.raises(ValueError, match=r"data\['y'\] exceeds data\['trials'\] at rows \[1, 3\] "
                                         r"\(12 > 10, 7 > 5\).*not swapped"):
        _binomial().prepare(raw)


def test_binomial_successes_above_constant_trials_refused():
    with pytest.raises(ValueError, match=r"data\['y'\] exceeds trials = 10 at rows \[2\]"):
        _binomial(10).prepare({"y": [3, 10, 11]})


@pytest.mark.parametrize("bad", [2.5, 0, -4])
def test_binomial_trials_column_must_be_positive_whole_numbers(bad):
    raw = {"y": [1, 2, 0], "trials": [5, 5, bad]}
    with pytest.raises(ValueError, match=r"data\['trials'\] must be positive whole numbers for "
                                         rf"Binomial.trials; rows \[2\] have \[{bad}"):
        _binomial().prepare(raw)


def test_binomial_trials_checked_in_a_design_too():
    with pytest.raises(ValueError, match=r"data\['trials'\] must be positive whole numbers"):
        _binomial().prepare({"trials": [5, 2.5]}, observed=False)


@pytest.mark.parametrize("bad", [2.5, 0, -3])
def test_binomial_constant_trials_must_be_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match=r"Binomial.trials must be positive whole numbers, but the "
                                         rf"constant {bad:g} is outside.*whole number"):
        _binomial(bad)


def test_binomial_trials_as_a_parameter_refused():
    with pytest.raises(ValueError, match=r"Binomial.trials must be positive whole numbers, but "
                                         r"'n' has support positive. Counts are data"):
        _binomial(hj.Fixed("n", hj.HalfNormal(10.0)))


def test_binomial_good_counts_pass():
    data = _binomial().prepare({"y": [0, 10, 5], "trials": [10, 10, 5]})
    assert np.isfinite(_binomial().logdensity({"b": np.float32(0.3)}, data))


def _sdt():
    return hj.Model(hj.SDT(d_prime=hj.Fixed("d"), c=hj.Fixed("c")), coords={})


@pytest.mark.parametrize(("column", "trials"), [("hits", "n_signal"),
                                                ("false_alarms", "n_noise")])
def test_sdt_counts_above_their_trials_refused(column, trials):
    raw = {"hits": [3, 4], "false_alarms": [1, 2], "n_signal": [5, 5], "n_noise": [5, 5]}
    raw[column] = [3, 6]
    with pytest.raises(ValueError, match=rf"data\['{column}'\] exceeds data\['{trials}'\] at rows "
                                         r"\[1\] \(6 > 5\)"):
        _sdt().prepare(raw)


def test_sdt_trials_must_be_whole_numbers():
    raw = {"hits": [3, 4], "false_alarms": [1, 2], "n_signal": [5, 5.5], "n_noise": [5, 5]}
    with pytest.raises(ValueError, match=r"data\['n_signal'\] must be positive whole numbers for "
                                         r"SDT.n_signal; rows \[1\] have \[5.5\]"):
        _sdt().prepare(raw)


# --- coords ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("coords", "problem"), [
    (-3, r"coords\['g'\] is -3: a group needs at least one member"),
    (0, r"coords\['g'\] is 0: a group needs at least one member"),
    ([], r"coords\['g'\] has no labels"),
    (["a", "b", "a"], r"coords\['g'\] repeats labels \['a'\]"),
    (2.5, r"coords\['g'\] is 2.5 \(float\)"),
    (True, r"coords\['g'\] is True \(bool\)"),
    ("abc", r"coords\['g'\] is 'abc' \(str\)"),
    ({"a", "b"}, r"coords\['g'\] is .* \(set\)"),
])
def test_bad_coords_refused_at_construction(coords, problem):
    with pytest.raises(ValueError, match=problem + r".*coords takes, for each group, its size"):
        hj.Model(hj.Gaussian(mu=hj.Level("a", "g"), sigma=1.0), coords={"g": coords})


def test_numpy_sizes_and_labels_accepted():
    model = hj.Model(hj.Gaussian(mu=hj.Level("a", "g") + hj.Level("b", "h"), sigma=1.0),
                     coords={"g": np.int64(3), "h": np.array(["x", "y"])})
    assert model.sizes == {"g": 3, "h": 2} and model.coords["h"] == ("x", "y")


# --- building blocks -------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "problem"), [
    (lambda: hj.Normal(float("nan"), 1.0), r"Normal needs a finite loc; got loc=nan"),
    (lambda: hj.Uniform(0.0, float("inf")), r"Uniform needs a finite high; got high=inf"),
    (lambda: hj.HalfStudentT(float("inf"), 1.0), r"HalfStudentT needs a finite df"),
    (lambda: hj.LKJCholesky(2.5), r"LKJCholesky needs dim.*an integer >= 2; got dim=2.5"),
    (lambda: hj.Gaussian(mu=0.0, sigma=float("nan")), r"constant must be a finite number"),
    (lambda: hj.Gaussian(mu=True, sigma=1.0), r"Expected a Term or a number; got bool"),
    (lambda: hj.Gaussian(mu="x", sigma=1.0), r"got str 'x'. For a data column use hj.Data\('x'\)"),
    (lambda: hj.Sum([]), r"Sum needs at least one term"),
    (lambda: hj.Level("a", "g", scale=True), r"Level 'a': a fixed scale must be a finite number "
                                             r"> 0; got True"),
    (lambda: hj.Level("a", "g", scale=float("inf")), r"a fixed scale must be a finite number"),
    (lambda: hj.Level("a", "g", predictors=()), r"Level 'a': `predictors` must be distinct"),
    (lambda: hj.Level("a", "g", predictors=("1", "x", "x")), r"`predictors` must be distinct"),
    (lambda: hj.Fixed("b", 1.0), r"Fixed 'b': `prior` must be a hj prior.*got 1.0"),
    (lambda: hj.Fixed("b", hj.LKJCholesky(2)), r"LKJCholesky is a prior on correlations"),
    (lambda: hj.Fixed("b", predictors=()), r"Fixed 'b': `predictors` must be distinct"),
    (lambda: hj.Fixed("b", predictors=("x", "x")), r"`predictors` must be distinct"),
])
def test_bad_building_blocks_refused(make, problem):
    with pytest.raises((ValueError, TypeError), match=problem):
        make()


def test_fixed_predictors_as_a_list_are_a_coefficient_vector(grouped):
    # A list used to pass construction and prepare, then fail inside the traced log density.
    models = [hj.Model(hj.Gaussian(mu=hj.Fixed("b", predictors=names), sigma=1.0), coords={})
              for names in (["x", "z"], ("x", "z"))]
    raw = {"x": grouped["x"], "z": grouped["y"][::-1], "y": grouped["y"]}
    position = models[1].init(jax.random.key(0))
    lps = [m.logdensity(position, m.prepare(raw)) for m in models]
    assert np.isfinite(lps[0]) and lps[0] == lps[1]
