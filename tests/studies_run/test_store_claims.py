"""Batches claimed from a study's store: one holder per batch however many workers race for
it, a live holder keeps its claim by renewing it, an expired claim is taken over by exactly
one worker, and workers sharing a study by claims end at the single-process result."""

import json
import multiprocessing
import time

import pytest
import xarray as xr

import hjax as hj
from hjax.studies.runner import Shard
from hjax.studies.store import Batch, Store

BATCH = Batch(0, 0, 4)
# One device; no refits: these tests are about claims (test_escalation.py: refits).
RUN = dict(n_datasets=6, batch_size=2, chains=2, warmup=60, draws=40, max_rank=19, devices=1,
           escalation={"attempts": 0})


def _store(directory) -> Store:
    return Store(directory, {"model": "claims", "n_datasets": 8})


def _take(directory, barrier, wins) -> None:
    """A worker process: wait for the others, then try to claim BATCH (and keep it)."""
    store = _store(directory)
    barrier.wait()
    claim = store.claim(BATCH, expiry=60)
    wins.put(claim is not None)


@pytest.mark.parametrize("stale", [False, True], ids=["free", "expired"])
def test_of_workers_racing_for_a_batch_exactly_one_wins(tmp_path, stale):
    store = _store(tmp_path)
    if stale:  # a dead worker's claim, expired: taken over, by one
        assert store.claim(BATCH, expiry=0.01) is not None
        time.sleep(0.05)
    context = multiprocessing.get_context("spawn")
    barrier, wins = context.Barrier(8), context.Queue()
    workers = [context.Process(target=_take, args=(tmp_path, barrier, wins)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(wins.get(timeout=5) for _ in workers) == [False] * 7 + [True]
    assert store.claimed(BATCH)


def test_a_held_claim_is_renewed_and_a_stalled_one_is_lost(tmp_path):
    store = _store(tmp_path)
    with store.claim(BATCH, expiry=0.4) as held:  # renewed every 0.1 s
        time.sleep(1.0)
        assert store.claim(BATCH) is None and not held.lost
    assert not store.claimed(BATCH)  # released
    stalled = store.claim(BATCH, expiry=0.1)  # never renewed: its holder stalled
    time.sleep(0.2)
    taker = store.claim(BATCH, expiry=60)
    assert taker is not None and stalled.lost and not stalled.renew()
    stalled.release()  # a lost claim's release leaves the taker's alone
    assert store.claimed(BATCH) and store.claim(BATCH) is None
    assert taker.path.name == "claim-000000-000004.2.json"  # generations only grow


def test_a_stored_batch_leaves_no_claim(tmp_path):
    store = _store(tmp_path)
    with store.claim(BATCH, expiry=60):
        store.publish(BATCH, xr.Dataset(coords={"dataset": range(4)}))
    assert not list(tmp_path.glob("claim-*"))


def test_claiming_worker_takes_every_batch_and_an_expired_claim_to_the_single_result(
        tmp_path):
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    reference = hj.sbc(model, design, key=0, **RUN)
    # Worker 1 of 2 died holding batch 1 (its claim unrenewed, expiring in 4 s) and never came
    # back: worker 0 fits its own batches, then worker 1's, batch 1 once its claim expired.
    study = tmp_path / "study"
    study.mkdir()
    dead = study / "claim-000002-000004.0.json"
    dead.write_text(json.dumps({"batch": "000002-000004", "expires": time.time() + 4}))
    start = time.time()
    table = hj.sbc(model, design, key=0, directory=study, shard=Shard(0, 2, claim_expiry=60),
                   **RUN)
    assert time.time() - start > 4
    xr.testing.assert_identical(table, reference)
    assert sorted(p.name for p in study.glob("batch-*.nc")) == [
        "batch-000000-000002.nc", "batch-000002-000004.nc", "batch-000004-000006.nc"]
    assert not list(study.glob("claim-*"))
