import jax
import pytest
from inference_helpers import (
    N_DATASETS,
    TRACES,
    CountingModel,
    conjugate_data,
    conjugate_model,
)

from hjax.inference import sample
from hjax.inference.run import one_kernel

CONJUGATE = dict(chains=4, warmup=300, draws=500, warn=False)


@pytest.fixture(scope="session")
def conjugate_fits():
    """Fits of 16 conjugate datasets: batched, one by one, and in other layouts, by both
    samplers.

    Shared by several tests because each distinct layout costs a compile; trace counts
    are taken here, in order, so they do not depend on which test runs first.
    """
    model = conjugate_model(3, CountingModel)
    datasets = [conjugate_data(seed) for seed in range(N_DATASETS)]
    key = jax.random.key(7)
    one_kernel._CHECKED.clear()  # so that the batched fit makes the one-kernel check
    start = len(TRACES)
    batched = sample(model, datasets, key=key, batch_size=4, **CONJUGATE)
    traces_batched = len(TRACES) - start
    # New data of the same shapes: the compiled program is reused, nothing is traced.
    sample(model, [conjugate_data(100 + s) for s in range(4)], key=jax.random.key(8),
           batch_size=4, **CONJUGATE)
    traces_again = len(TRACES) - start - traces_batched
    start = len(TRACES)
    alone = [sample(model, d, key=jax.random.key(9), **CONJUGATE) for d in datasets]
    traces_alone = len(TRACES) - start
    # Fewer datasets, the last chunk padded: the chunk program of `batched` again.
    start = len(TRACES)
    padded = sample(model, datasets[:6], key=key, batch_size=4, **CONJUGATE)
    traces_padded = len(TRACES) - start
    width_one = sample(model, datasets[:6], key=key, batch_size=1, **CONJUGATE)
    one_device = sample(model, datasets[:6], key=key, devices=1, **CONJUGATE)
    blackjax = sample(model, datasets[:6], key=key, sampler="blackjax", batch_size=4,
                      **CONJUGATE)
    blackjax_one_device = sample(model, datasets[:6], key=key, sampler="blackjax",
                                 devices=1, **CONJUGATE)
    vectorized = sample(model, datasets[:6], key=key, sampler="blackjax", vectorize=3,
                        devices=1, **CONJUGATE)
    return {
        "datasets": datasets, "batched": batched, "alone": alone,
        "width_one": width_one, "padded": padded, "one_device": one_device,
        "blackjax": blackjax, "blackjax_one_device": blackjax_one_device,
        "vectorized": vectorized,
        "traces": {"batched": traces_batched, "again": traces_again, "alone": traces_alone,
                   "reuse": traces_padded},
    }
