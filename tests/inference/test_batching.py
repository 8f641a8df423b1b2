"""Many datasets in one call: one compile, results independent of chunking, input forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inference_helpers import N_DATASETS, conjugate_data, conjugate_model

from hjax.inference.run.batching import LanesLayout, Layout, as_batch, map_chunks
from hjax.inference.run.samplers import CPU_LANES, MAX_PER_DEVICE, BlackJAXNUTS, LanesNUTS

# Tests that share a session fixture run on one worker, which builds it once.
pytestmark = pytest.mark.xdist_group("conjugate_fits")


def test_log_density_traced_once_per_program_not_per_dataset(conjugate_fits):
    traces = conjugate_fits["traces"]
    # 16 datasets in 4 chunks trace the log density exactly as often as one dataset does
    # (once per place the program calls it), and nothing is traced again afterwards; the
    # first fit of a model and data shapes also traces it for the one-kernel check.
    assert traces["batched"] == traces["alone"] + 1
    assert traces["alone"] <= 2  # the starting-point search and the NUTS step
    assert traces["again"] == 0
    assert traces["reuse"] == 0


def test_batched_result_has_dataset_dim(conjugate_fits):
    posterior = conjugate_fits["batched"].posterior
    assert posterior["theta"].dims == ("dataset", "chain", "draw", "g")
    assert posterior.sizes["dataset"] == N_DATASETS
    assert conjugate_fits["alone"][0].posterior["theta"].dims == ("chain", "draw", "g")
    observed = conjugate_fits["batched"].observed_data["y"]
    np.testing.assert_allclose(observed.values[5], conjugate_fits["datasets"][5]["y"],
                               rtol=1e-6)


def test_results_do_not_depend_on_batch_size_or_layout(conjugate_fits):
    # "nuts": chunks of 4 over 2 devices (when there are 2), of 1, padded, on one device.
    four = conjugate_fits["batched"].posterior["theta"].values
    assert conjugate_fits["batched"].posterior.attrs["devices"] == min(2, jax.device_count())
    assert conjugate_fits["one_device"].posterior.attrs["devices"] == 1
    for layout in ("width_one", "padded", "one_device"):
        values = conjugate_fits[layout].posterior["theta"].values
        assert values.shape[0] == 6
        np.testing.assert_array_equal(values, four[:6], err_msg=layout)
    assert not np.array_equal(four[0], four[1])
    # "blackjax": chunks of 4 over the devices, and 6 on one device, one at a time.
    np.testing.assert_array_equal(conjugate_fits["blackjax_one_device"].posterior["theta"],
                                  conjugate_fits["blackjax"].posterior["theta"])
    # Vmapping datasets together changes how XLA fuses (and rounds) the arithmetic: the
    # same chains up to rounding, which the chains amplify; checked against the exact
    # posterior in test_posteriors.py.
    assert conjugate_fits["vectorized"].posterior.attrs["vectorize"] == 3


def test_lockstep_efficiency_is_reported(conjugate_fits):
    ours = conjugate_fits["batched"].posterior.attrs
    reference = conjugate_fits["blackjax"].posterior.attrs
    for attrs in (ours, reference):
        assert 0 < attrs["lockstep_efficiency"] <= 1
        assert attrs["grad_evals_executed"] >= attrs["grad_evals"] > 0
    # Chains never wait for each other on lanes; vmapped BlackJAX chains wait for the
    # longest trajectory of the four.
    assert ours["lockstep_efficiency"] > 0.8
    assert reference["lockstep_efficiency"] < ours["lockstep_efficiency"]


def test_as_batch_accepts_list_and_stacked_dict():
    model = conjugate_model(3)
    raw = [conjugate_data(s) for s in range(3)]
    from_list, batched = as_batch(model, raw)
    assert batched and from_list["y"].shape == (3, 12)
    stacked = {k: np.stack([r[k] for r in raw]) for k in raw[0]}
    from_dict, batched = as_batch(model, stacked)
    assert batched
    for k in from_list:
        np.testing.assert_array_equal(from_list[k], from_dict[k])
    single, batched = as_batch(model, raw[0])
    assert not batched and single["y"].shape == (1, 12)


def test_as_batch_names_the_bad_dataset():
    model = conjugate_model(3)
    raw = [conjugate_data(s) for s in range(3)]
    raw[2] = {**raw[2], "g": raw[2]["g"] + 1}
    with pytest.raises(ValueError, match="Dataset 2"):
        as_batch(model, raw)
    short = {k: v[:6] for k, v in conjugate_data(0).items()}
    short["g"] = np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="same shapes"):
        as_batch(model, [conjugate_data(0), short])
    with pytest.raises(ValueError, match="first axis"):
        as_batch(model, {"y": np.zeros((2, 3)), "sigma": np.ones(3), "g": np.zeros(3, int)})


def test_map_chunks_pads_and_keeps_order():
    data = {"x": jnp.arange(10.0)}
    widths = []

    def fn(index, valid, chunk):
        widths.append(index.shape[0])
        return {"x2": chunk["x"] * 2, "index": index, "valid": valid}

    out = map_chunks(fn, data, batch_size=4)
    np.testing.assert_array_equal(out["x2"], np.arange(10.0) * 2)
    np.testing.assert_array_equal(out["index"], np.arange(10))
    assert out["valid"].all()  # the padding of the last chunk is dropped
    assert widths == [4, 4, 4]


def test_a_short_chunk_is_dealt_over_the_devices():
    """The 3 datasets of a short chunk 8 wide over 2 devices go 2 to the first device's rows
    (0-3) and 1 to the second's (4-7), not all 3 to the first: refits of a few failing fits keep
    both cores busy. The results come back in dataset order."""
    seen = []

    def fn(index, valid, chunk):
        seen.append(np.asarray(valid))
        return {"x": chunk["x"], "index": index}

    out = map_chunks(fn, {"x": jnp.arange(11.0)}, batch_size=8, shards=2)
    np.testing.assert_array_equal(out["index"], np.arange(11))
    np.testing.assert_array_equal(out["x"], np.arange(11.0))
    assert seen[0].all()
    assert np.flatnonzero(seen[1]).tolist() == [0, 1, 4]


def test_layout_per_backend():
    # "nuts": every device gets a share, run on CPU_LANES lanes (all its chains elsewhere).
    def nuts(n, lanes=None, **kw):
        return LanesNUTS(lanes).layout(n, chains=4, **kw)

    assert nuts(64, backend="cpu", available=2) == LanesLayout(2, 32, CPU_LANES)
    assert nuts(1, backend="cpu", available=2) == LanesLayout(1, 1, CPU_LANES)
    assert nuts(5, backend="cpu", available=2) == LanesLayout(2, 3, CPU_LANES)
    assert nuts(64, 16, backend="cpu", available=2) == LanesLayout(2, 32, 16)
    assert nuts(64, backend="cpu", available=2, devices=1) == LanesLayout(1, 64, CPU_LANES)
    assert nuts(64, backend="cpu", available=2, batch_size=8) == LanesLayout(2, 4, CPU_LANES)
    assert nuts(1000, backend="gpu", available=1) == LanesLayout(1, 1000, 4000)
    assert nuts(5000, backend="gpu", available=1) == LanesLayout(1, MAX_PER_DEVICE,
                                                                 4 * MAX_PER_DEVICE)

    # "blackjax" on CPU: one dataset at a time per device; accelerators vmap a whole share.
    def bj(n, vectorize=None, **kw):
        return BlackJAXNUTS(vectorize).layout(n, chains=4, **kw)

    assert bj(64, backend="cpu", available=2) == Layout(2, 32, 1)
    assert bj(5, backend="cpu", available=2) == Layout(2, 3, 1)  # one padded
    assert bj(64, 4, backend="cpu", available=2) == Layout(2, 8, 4)
    assert bj(1000, backend="gpu", available=1) == Layout(1, 1, 1000)
    assert bj(3000, backend="gpu", available=4) == Layout(4, 1, 750)
    assert bj(64, 16, backend="gpu", available=1) == Layout(1, 4, 16)
