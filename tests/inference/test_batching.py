"""Many datasets in one call: one compile, results independent of chunking, input forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inference_helpers import N_DATASETS, conjugate_data, conjugate_model

from hjax.inference.batching import (
    MAX_PER_DEVICE,
    Layout,
    as_batch,
    map_chunks,
    plan_layout,
)


def test_log_density_traced_once_per_program_not_per_dataset(conjugate_fits):
    traces = conjugate_fits["traces"]
    # 16 datasets in 4 chunks trace the log density exactly as often as one dataset does
    # (once per place the program calls it), and nothing is traced again afterwards.
    assert traces["batched"] == traces["alone"]
    assert traces["batched"] <= 2  # the starting-point search and the NUTS step
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
    # Chunks of 4 over 2 devices (when there are 2), of 1, and 6 on one device vmapped 3 wide.
    four = conjugate_fits["batched"].posterior["theta"].values
    one = conjugate_fits["width_one"].posterior["theta"].values
    padded = conjugate_fits["padded"].posterior["theta"].values
    vectorized = conjugate_fits["vectorized"]
    assert vectorized.posterior.attrs["vectorize"] == 3
    assert conjugate_fits["batched"].posterior.attrs["devices"] == min(2, jax.device_count())
    np.testing.assert_array_equal(vectorized.posterior["theta"].values, four[:6])
    np.testing.assert_array_equal(one, four[:6])
    # 6 datasets in chunks of 4: the last chunk is padded, its real datasets unaffected.
    assert padded.shape[0] == 6
    np.testing.assert_array_equal(padded, four[:6])
    assert not np.array_equal(four[0], four[1])


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

    def fn(index, chunk):
        widths.append(index.shape[0])
        return {"x2": chunk["x"] * 2, "index": index}

    out = map_chunks(fn, data, batch_size=4)
    np.testing.assert_array_equal(out["x2"], np.arange(10.0) * 2)
    np.testing.assert_array_equal(out["index"], np.arange(10))
    assert widths == [4, 4, 4]


def test_layout_per_backend():
    # CPU: every device gets a share and runs it one dataset at a time.
    assert plan_layout(64, backend="cpu", available=2) == Layout(2, 32, 1)
    assert plan_layout(1, backend="cpu", available=2) == Layout(1, 1, 1)
    assert plan_layout(5, backend="cpu", available=2) == Layout(2, 3, 1)  # one padded
    assert plan_layout(64, backend="cpu", available=2, vectorize=4) == Layout(2, 8, 4)
    assert plan_layout(64, backend="cpu", available=2, devices=1) == Layout(1, 64, 1)
    assert plan_layout(64, backend="cpu", available=2, batch_size=8) == Layout(2, 4, 1)
    # Accelerators: a device's whole share vmapped, up to MAX_PER_DEVICE per chunk.
    assert plan_layout(1000, backend="gpu", available=1) == Layout(1, 1, 1000)
    assert plan_layout(5000, backend="gpu", available=1) == Layout(1, 1, MAX_PER_DEVICE)
    assert plan_layout(3000, backend="gpu", available=4) == Layout(4, 1, 750)
    assert plan_layout(64, backend="gpu", available=1, vectorize=16) == Layout(1, 4, 16)
