"""`hjax status` text from a study's store: an estimate of the time left only while workers
may still be fitting (tests/cluster/test_slurm.py: the Slurm lines, from real jobs)."""

import hjax as hj
from hjax.studies.status import describe, study_status


def test_time_left_is_estimated_only_while_tasks_run(tmp_path):
    model, design = hj.catalog.varying_intercept(groups=4, per_group=5)
    hj.sbc(model, design, key=0, directory=tmp_path, shard="0/2", n_datasets=4, batch_size=2,
           chains=2, warmup=60, draws=40, max_rank=19, devices=1, escalation={"attempts": 0})
    status = study_status(tmp_path)
    assert [batch.name for batch in status.missing] == ["000002-000004"]
    throughput = {running: describe(status, running=running)[-1]
                  for running in (True, False, None)}
    assert throughput[True].endswith("s left at this rate")
    assert throughput[None] == throughput[True]  # workers started by hand: not known
    assert throughput[False] == throughput[True].partition("; about")[0]
    assert throughput[False].startswith("throughput: ")
