"""Starting points: retries until finite, and a report naming the culprit when it gives up."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hjax as hj
from hjax.inference import sample
from hjax.inference.run.init import Stage, explain_nonfinite, init_position, move_inside


def _draw(key):
    return {"a": jax.random.uniform(key, (), minval=-2, maxval=2),
            "b": jax.random.uniform(jax.random.fold_in(key, 1), (3,), minval=-2, maxval=2)}


def _half_space(position):
    # -inf for a > 1: a quarter of uniform(-2, 2) draws are rejected.
    return jnp.where(position["a"] > 1.0, -jnp.inf, -0.5 * jnp.sum(position["b"] ** 2))


def test_init_retries_until_finite():
    results = jax.vmap(lambda k: init_position(k, _draw, _half_space))(
        jax.random.split(jax.random.key(0), 64))
    assert bool(jnp.all(results.ok))
    assert bool(jnp.all(results.position["a"] <= 1.0))
    assert int(results.tries.max()) > 1  # some first draws were rejected and retried
    assert int(results.tries.min()) == 1


def test_init_gives_up_after_max_tries():
    result = init_position(jax.random.key(0), _draw, lambda p: -jnp.inf * p["a"] ** 2,
                           max_tries=7)
    assert not bool(result.ok)
    assert int(result.tries) == 7


def test_bounded_stage_descends_only_on_its_own_tries():
    """Under vmap every chain's loop runs while one chain still searches: the descent towards
    the bounds must step only on the tries of its stage (it stepped on every try when it was
    a branch of a `switch`)."""
    evaluated = []

    def violation(position):  # > 0 at every draw, so an active descent takes all its steps
        jax.debug.callback(lambda a: evaluated.append(np.size(a)), position["a"])
        return (position["a"] + 3.0) ** 2

    def search(density):
        evaluated.clear()
        results = jax.jit(jax.vmap(lambda k: init_position(
            k, [Stage(_draw, 20), Stage(_draw, 5, violation)], density)))(
            jax.random.split(jax.random.key(0), 16))
        jax.effects_barrier()
        return results, sum(evaluated)

    # A quarter of the draws are rejected: every chain starts within its 20 uniform tries,
    # and the violation is evaluated once per try (where the descent starts), never stepped.
    results, evaluations = search(_half_space)
    assert bool(results.ok.all()) and int(results.tries.max()) > 1
    assert evaluations == 16 * int(results.tries.max())
    # A density finite only where a < -2.5, which uniform(-2, 2) draws never reach: the
    # descent's stage finds it, stepping.
    results, evaluations = search(lambda p: jnp.where(p["a"] < -2.5, 0.0, -jnp.inf))
    assert bool(results.ok.all()) and int(results.tries.min()) == 21
    assert evaluations > 16 * 25


def _switch_branches(jaxpr) -> list[int]:
    """The number of branches of every `cond` (a `lax.switch`) in `jaxpr`, nested included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            found.append(len(eqn.params["branches"]))
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple) else (value,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    found += _switch_branches(getattr(sub, "jaxpr", sub))
    return found


def test_a_draw_shared_by_stages_is_one_branch():
    """Prior draws, then prior draws moved inside the bounds: one draw, one branch to compile
    (a second copy cost the hierarchical DDM's program about 2 CPU seconds of compile), the same
    starts as with a branch per stage."""
    def new_prior():
        def prior(key):
            return {"a": jax.random.normal(key) - 2.0, "b": jax.random.normal(key, (3,))}
        return prior

    def density(p):  # finite only where a < -2.5: never for uniform(-2, 2), often not prior
        return jnp.where(p["a"] < -2.5, -0.5 * jnp.sum(p["b"] ** 2), -jnp.inf)

    def violation(p):
        return jax.nn.relu(p["a"] + 2.5) ** 2

    def search(first_prior, second_prior):
        stages = [Stage(_draw, 3), Stage(first_prior, 3), Stage(second_prior, 3, violation)]
        key = jax.random.key(1)
        branches = _switch_branches(jax.make_jaxpr(
            lambda k: init_position(k, stages, density))(key).jaxpr)
        results = jax.jit(jax.vmap(lambda k: init_position(k, stages, density)))(
            jax.random.split(key, 32))
        return results, branches

    prior = new_prior()
    shared, branches = search(prior, prior)
    assert branches == [2]
    assert int(shared.tries.max()) > 6 and bool(shared.ok.all())  # the last stage was used
    # Two functions drawing the same numbers: three branches, the same starts (up to
    # rounding: the branches compile into other fusions).
    apart, branches = search(new_prior(), new_prior())
    assert branches == [3]
    np.testing.assert_array_equal(shared.tries, apart.tries)
    for a, b in zip(jax.tree.leaves(shared.position), jax.tree.leaves(apart.position),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_move_inside_stops_inside_the_bounds_and_stays_put_when_inactive():
    def violation(position):
        return jax.nn.relu(position["t0"] - 0.3) ** 2

    start = {"t0": jnp.array(2.0)}
    assert 0.25 < float(move_inside(start, violation)["t0"]) <= 0.3
    assert float(move_inside(start, violation, active=jnp.array(False))["t0"]) == 2.0


def test_explain_blames_the_parameter_that_makes_the_density_infinite():
    position = {"a": jnp.array(1.5), "b": jnp.zeros(3)}
    message = explain_nonfinite(position, _half_space)
    assert "'a'" in message and "'b'" not in message


def test_explain_blames_the_parameter_with_a_nonfinite_gradient():
    position = {"a": jnp.array(0.0), "b": jnp.ones(3)}
    message = explain_nonfinite(position, lambda p: jnp.sqrt(jnp.abs(p["a"])) + p["b"].sum())
    assert "gradient" in message and "'a'" in message and "'b'" not in message


def test_explain_points_to_the_data_when_no_parameter_helps():
    position = {"a": jnp.array(0.5)}
    message = explain_nonfinite(position, lambda p: p["a"] - jnp.inf)
    assert "check the data" in message


def _needle(y, m):
    # Finite only where |m| < 1e-6: uniform(-2, 2) starts essentially never get there.
    return jnp.where(jnp.abs(m) < 1e-6, -0.5 * y**2, -jnp.inf)


def test_sample_reports_the_parameter_when_no_start_is_found():
    model = hj.Model(hj.Custom(_needle, params={"m": hj.Fixed("m", hj.Normal(0, 1))}),
                     coords={})
    with pytest.raises(hj.errors.ModelError, match=r"'m'.*moved to 0"):
        sample(model, {"y": np.zeros(3)}, key=jax.random.key(0), chains=2, warmup=5, draws=5)


def test_default_starts_reach_a_ddm_where_uniform_draws_cannot():
    """A hierarchical DDM: uniform(-2, 2) puts t0 = exp(log_t0 + deviation) above some
    participant's fastest RT in (nearly) every try; the default search goes on to prior draws
    and bounded ones, and every chain starts."""
    model, design = hj.catalog.ddm(participants=20, trials=100)
    truths, data = jax.jit(model.simulate)(jax.random.key(0),
                                           model.prepare(design, observed=False))
    uniform = jax.vmap(lambda k: init_position(k, model.init,
                                               lambda p: model.logdensity(p, data)))(
        jax.random.split(jax.random.key(1), 8))
    assert not bool(uniform.ok.all())
    tree = hj.sample(model, data, key=1, chains=8, warmup=10, draws=10, warn=False)
    assert bool(tree.fit_stats.init_ok.all())
    assert int(tree.fit_stats.init_tries.max()) > 100  # some found after the uniform stage


def _shifted_lognormal(rt, mu, sigma, shift):
    t = rt - shift
    safe = jnp.where(t > 0, t, 1.0)
    lp = -jnp.log(safe * sigma * jnp.sqrt(2 * jnp.pi)) - (jnp.log(safe) - mu) ** 2 / (2 * sigma**2)
    return jnp.where(t > 0, lp, -jnp.inf)


def _shift_model(bounds):
    """Per-participant shifts (a wide population), 30 participants: prior draws break some
    participant's bound nearly always."""
    return hj.Model(hj.Custom(
        _shifted_lognormal,
        params={"mu": hj.Fixed("mu", hj.Normal(-1.0, 0.5)),
                "sigma": hj.Fixed("sigma", hj.HalfNormal(0.5)),
                "shift": hj.exp(hj.Fixed("log_shift", hj.Normal(-1.0, 0.3))
                                + hj.Level("shift_p", "p", scale=hj.HalfNormal(1.0)))},
        observed=("rt",), supports={"sigma": hj.Positive(), "shift": hj.Positive()},
        bounds=bounds), coords={"p": 30})


def test_declared_bounds_give_starts_where_prior_draws_fail():
    rng = np.random.default_rng(0)
    p = np.repeat(np.arange(30), 10)
    data = {"rt": 0.15 + rng.lognormal(-3.0, 0.5, p.size), "p": p}  # RTs from 0.16 s
    settings = dict(key=0, chains=2, warmup=10, draws=10, warn=False)
    with pytest.raises(hj.errors.ModelError,
                       match=r"(?s)No finite starting point.*bounds=\{'shift'"):
        sample(_shift_model(None), data, **settings)
    tree = sample(_shift_model({"shift": hj.Below("rt")}), data, **settings)
    assert bool(tree.fit_stats.init_ok.all())
    assert int(tree.fit_stats.init_tries.min()) > 200  # the bounded stage found them


def test_bounds_are_checked():
    with pytest.raises(ValueError, match=r"Custom bounds: 'shfit' -> .*expected a parameter"):
        _shift_model({"shfit": hj.Below("rt")})
