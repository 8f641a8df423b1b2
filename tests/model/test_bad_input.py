"""Every bad input is refused before compiling, with a message naming the problem and the fix."""

import jax
import numpy as np
import pytest

import hjax as hj


@pytest.fixture
def model():
    return hj.Model(
        hj.Gaussian(mu=hj.Fixed("b0") + hj.Fixed("bx", predictors="x") + hj.Level("a", "g"),
                    sigma=hj.Fixed("sigma", hj.HalfNormal(1.0))),
        coords={"g": ["A", "B", "C"]},
    )


@pytest.fixture
def raw():
    return {"g": np.array([0, 1, 2, 0, 1, 2]), "x": np.linspace(-1, 1, 6),
            "y": np.array([0.1, 0.5, -0.3, 1.2, 0.0, 0.4])}


def _with(raw, **changes):
    return {**raw, **changes}


def test_good_data_pass(model, raw):
    assert set(model.prepare(raw)) == {"g", "x", "y"}


@pytest.mark.parametrize("column", ["y", "x"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(model, raw, column, bad):
    values = raw[column].copy()
    values[3] = bad
    with pytest.raises(ValueError, match=rf"data\['{column}'\] has 1 NaN/inf values at rows \[3\]"
                                         r".*Drop or impute"):
        model.prepare(_with(raw, **{column: values}))


def test_index_out_of_range(model, raw):
    with pytest.raises(ValueError, match=r"data\['g'\] has indices outside 0..2 .* rows \[5\], "
                                         r"values \[3\].*0-based.*hj.encode"):
        model.prepare(_with(raw, g=np.array([0, 1, 2, 0, 1, 3])))


def test_negative_index(model, raw):
    with pytest.raises(ValueError, match=r"indices outside 0..2.*values \[-1\]"):
        model.prepare(_with(raw, g=np.array([0, 1, 2, -1, 1, 2])))


def test_unknown_label(model, raw):
    with pytest.raises(ValueError, match=r"labels not in coords\['g'\]: \['D'\]"):
        model.prepare(_with(raw, g=np.array(["A", "B", "C", "D", "A", "B"])))


def test_labels_are_mapped_through_coords(model, raw):
    data = model.prepare(_with(raw, g=np.array(["C", "B", "A", "A", "B", "C"])))
    assert data["g"].tolist() == [2, 1, 0, 0, 1, 2]


def test_empty_group(model, raw):
    with pytest.raises(ValueError, match=r"Group 'g' has no observations for 1 of its 3 labels: "
                                         r"\['C'\].*drop unused labels"):
        model.prepare(_with(raw, g=np.array([0, 1, 0, 0, 1, 1])))


def test_mismatched_lengths(model, raw):
    with pytest.raises(ValueError, match=r"Per-observation columns differ in length: .*'x': 5"):
        model.prepare(_with(raw, x=raw["x"][:5]))


def test_missing_predictor(model, raw):
    del raw["x"]
    with pytest.raises(ValueError, match=r"data has no 'x', needed by Fixed 'bx'"):
        model.prepare(raw)


def test_group_level_predictor_wrong_length():
    model = hj.Model(hj.Gaussian(mu=hj.Level("a", "g", loc=hj.Fixed("b", predictors="z")),
                                 sigma=1.0), coords={"g": 3})
    with pytest.raises(ValueError, match=r"data\['z'\] has 2 values but group 'g' has 3: it "
                                         r"needs one value per g"):
        model.prepare({"g": [0, 1, 2], "y": [0.0, 1.0, 2.0], "z": [1.0, 2.0]})


def test_prior_on_wrong_support_for_scale():
    with pytest.raises(ValueError, match=r"Level 'a': the scale prior must have positive support;"
                                         r" got Normal\(0, 1\) \(real\). Use e.g. hj.HalfNormal"):
        hj.Level("a", "g", scale=hj.Normal(0.0, 1.0))


def test_prior_on_wrong_support_for_likelihood_slot():
    with pytest.raises(ValueError, match=r"Gaussian.sigma must be positive, but 'sigma' has "
                                         r"support real.*HalfNormal.*hj.exp"):
        hj.Model(hj.Gaussian(mu=0.0, sigma=hj.Fixed("sigma", hj.Normal(1.0, 1.0))), coords={})


def test_data_outside_slot_support():
    model = hj.Model(hj.Gaussian(mu=0.0, sigma=hj.Data("se")), coords={})
    with pytest.raises(ValueError, match=r"data\['se'\] must be positive for Gaussian.sigma"):
        model.prepare({"y": [1.0, 2.0], "se": [1.0, -2.0]})


def test_observed_outside_likelihood_support():
    model = hj.Model(hj.BernoulliLogit(hj.Fixed("b")), coords={})
    with pytest.raises(ValueError, match=r"data\['y'\] \(observed\) must be 0 or 1"):
        model.prepare({"y": [0, 1, 2]})


def test_group_missing_from_coords():
    with pytest.raises(ValueError, match=r"Groups \['item'\] are used by the model but not in "
                                         r"`coords`"):
        hj.Model(hj.Gaussian(mu=hj.Level("a", "item"), sigma=1.0), coords={})


def test_non_identified_crossed_means_refused():
    alpha = hj.Level("alpha", "p", loc=hj.Fixed("mu"))
    gamma = hj.Level("gamma", "i", loc=hj.Fixed("zeta0") + hj.Fixed("zeta1", predictors="b"))
    with pytest.raises(ValueError, match=r"Crossed: levels \['alpha', 'gamma'\] each have a "
                                         r"population mean.*only their sum is identified"):
        hj.Crossed(alpha, gamma)
    # On purpose, it builds: both means are parameters and the density is finite (only their
    # sum is identified, which is the point of refusing it by default).
    model = hj.Model(hj.BernoulliLogit(hj.Crossed(alpha, gamma, identify=False)),
                     coords={"p": 3, "i": 2})
    assert {"mu", "zeta0", "zeta1", "alpha", "gamma"} <= set(model.param_dims)
    data = model.prepare({"p": [0, 1, 2, 0, 1, 2], "i": [0, 0, 0, 1, 1, 1], "b": [-0.5, 0.5],
                          "y": [1, 0, 1, 1, 0, 0]})
    position = model.init(jax.random.key(0))
    assert {"mu", "zeta0"} <= set(model.constrain(position, data))
    assert np.isfinite(model.logdensity(position, data))


def test_two_intercepts_in_one_sum_refused():
    with pytest.raises(ValueError, match=r"'b0' and 'a\[g\]' each carry an intercept"):
        hj.Fixed("b0") + hj.Level("a", "g", loc=hj.Fixed("mu"))


def test_duplicate_parameter_names_refused():
    with pytest.raises(ValueError, match=r"parameter named 'b'"):
        hj.Model(hj.Gaussian(mu=hj.Fixed("b"), sigma=hj.Fixed("b", hj.HalfNormal(1.0))),
                 coords={})


def test_class_in_two_schools_is_not_nested():
    school = hj.Level("s", "school", loc=hj.Fixed("mu"))
    model = hj.Model(hj.Gaussian(mu=hj.Nested("c", "class", parent=school), sigma=1.0),
                     coords={"class": 2, "school": 2})
    raw = {"class": [0, 0, 1, 1], "school": [0, 1, 1, 1], "y": [0.0, 1.0, 2.0, 3.0]}
    with pytest.raises(ValueError, match=r"'class' 0 appears in more than one 'school'.*unique"):
        model.prepare(raw)


def test_encode_factorizes_labels():
    data, coords = hj.encode({"p": ["b", "a", "b"], "y": [1.0, 2.0, 3.0]}, ["p"])
    assert coords == {"p": ("a", "b")} and data["p"].tolist() == [1, 0, 1]
