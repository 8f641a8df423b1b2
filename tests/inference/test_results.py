"""The DataTree a fit returns: names, dims and coords from the model; warmup; progress."""

import jax
import numpy as np

import hjax as hj
from hjax.inference import sample

SCHOOLS = ["A", "B", "C", "D"]


def test_datatree_groups_coords_warmup_and_progress(capsys):
    model = hj.Model(
        hj.Gaussian(mu=hj.Level("theta", "school", loc=hj.Fixed("mu", hj.Normal(0, 5)),
                                scale=hj.HalfNormal(5.0)),
                    sigma=hj.Data("sigma")),
        coords={"school": SCHOOLS},
    )
    data = {"y": np.array([3.0, -1.0, 2.0, 0.5]), "sigma": np.ones(4), "school": SCHOOLS}
    result = sample(model, data, key=jax.random.key(0), chains=2, warmup=40, draws=30,
                    save_warmup=True, progress=True, warn=False)
    assert set(result.children) >= {"posterior", "sample_stats", "observed_data",
                                     "constant_data", "warmup_posterior",
                                     "warmup_sample_stats", "fit_stats"}
    post = result.posterior
    assert set(post.data_vars) == {"mu", "theta", "theta_sd"}  # z is not reported
    assert post["theta"].dims == ("chain", "draw", "school")
    assert list(post["theta"].school.values) == SCHOOLS
    assert post.sizes == {"chain": 2, "draw": 30, "school": 4}
    assert result.warmup_posterior.sizes["draw"] == 40
    stats = result.sample_stats
    assert set(stats.data_vars) == {"lp", "diverging", "tree_depth", "n_steps", "energy",
                                    "acceptance_rate", "step_size", "nan_log_density"}
    # After warmup the step size is fixed per chain; during warmup it moves.
    assert bool((stats["step_size"] == stats["step_size"].isel(draw=0)).all())
    assert np.all(result.warmup_sample_stats["step_size"].std("draw").values > 0)
    np.testing.assert_array_equal(result.constant_data["school"].values, np.arange(4))
    assert post.attrs["grad_evals"] == int(stats["n_steps"].sum()
                                           + result.warmup_sample_stats["n_steps"].sum())
    assert "hjax NUTS" in capsys.readouterr().err


def test_index_column_named_like_a_group_with_group_level_data():
    # data["item"] indexes items while data["brightness"] has one value per item.
    model = hj.Model(hj.Gaussian(mu=hj.Level("g", "item", loc=hj.Fixed("b", predictors="br")),
                                 sigma=1.0), coords={"item": ["a", "b"]})
    data = {"item": np.array([0, 1, 1]), "br": np.array([0.5, -0.5]), "y": np.zeros(3)}
    tree = hj.sample(model, data, key=jax.random.key(0), chains=1, warmup=20, draws=10,
                     warn=False)
    assert tree.constant_data["item_index"].values.tolist() == [0, 1, 1]
    assert tree.constant_data["br"].dims == ("item",)
