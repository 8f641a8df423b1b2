"""One lane per CPU device where XLA:CPU compiles the whole lanes loop into one kernel."""

import re

import jax
import numpy as np

import hjax as hj
from hjax.inference import chunks
from hjax.inference.one_kernel import fits_one_kernel
from hjax.inference.sample import fitted

EFFECTS = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SHORT = dict(chains=2, warmup=100, draws=50, progress=False, warn=False)


def _schools():
    model, design = hj.catalog.eight_schools()
    return model, design | {"y": EFFECTS}


def _one(batch):
    return {k: v[0] for k, v in batch.items()}


def _gathering(regular: bool = False):
    """A varying intercept whose 12 rows fall in 4 groups in no regular order (unless
    `regular`: each group's 3 rows together): its gradient scatter-adds."""
    model, design = hj.catalog.varying_intercept(groups=4, per_group=3)
    if not regular:
        design = design | {"group": np.array([0, 1, 0, 2, 3, 1, 2, 3, 0, 1, 2, 3])}
    return model, design | {"y": np.linspace(-1.0, 1.0, 12)}


def test_levels_with_regular_indices_fit_one_kernel():
    model, data = _schools()
    batch = {k: np.asarray(v)[None] for k, v in model.prepare(data).items()}
    marked, marked_batch, _ = fitted(model, batch)
    assert fits_one_kernel(marked, _one(marked_batch))
    assert not fits_one_kernel(model, _one(batch))  # theta[school]: gather, scatter-add
    assert not fits_one_kernel(marked, _one(marked_batch), dense_mass=True)  # M^-1 p: a dot

    gathering, raw = _gathering()
    gathering_batch = {k: np.asarray(v)[None] for k, v in gathering.prepare(raw).items()}
    reduced, reduced_batch, reduction = fitted(gathering, gathering_batch)
    assert reduction != "none"  # 4 cells, one per group: the reduced rows are the groups
    assert fits_one_kernel(reduced, _one(reduced_batch))
    unreduced, unreduced_batch, _ = fitted(gathering, gathering_batch, reduce=False)
    assert not fits_one_kernel(unreduced, _one(unreduced_batch))
    regular, raw = _gathering(regular=True)  # rows repeat(arange(4), 3): a broadcast
    regular_batch = {k: np.asarray(v)[None] for k, v in regular.prepare(raw).items()}
    unreduced, unreduced_batch, _ = fitted(regular, regular_batch, reduce=False)
    assert fits_one_kernel(unreduced, _one(unreduced_batch))


def _computations(hlo: str) -> dict[str, list[str]]:
    comps, name = {}, None
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?(%[\w.\-]+) .*\{$", line)
        if head:
            name = head.group(1)
            comps[name] = []
        elif line.startswith("}"):
            name = None
        elif name:
            comps[name].append(line)
    return comps


def _loops_outside_one_kernel(hlo: str) -> int:
    """While loops XLA:CPU runs as a sequence of kernels: those not inside a computation that
    a call marked `xla_cpu_small_call` (compiled into one kernel) reaches."""
    comps = _computations(hlo)
    called = re.compile(r"(?:calls|to_apply|body|condition)=(%[\w.\-]+)")
    reached, todo = set(), [called.search(line).group(1) for lines in comps.values()
                            for line in lines if "xla_cpu_small_call" in line]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            for line in comps.get(name, []):
                todo += called.findall(line)
                for branches in re.findall(r"branch_computations=\{([^}]*)\}", line):
                    todo += [b.strip() for b in branches.split(",")]
    return sum(" while(" in line for name, lines in comps.items() if name not in reached
               for line in lines)


def _compiled_text(model, data, **options) -> tuple[str, int]:
    before = set(chunks._COMPILED)
    result = hj.sample(model, data, key=0, **(SHORT | options))
    new = [v for k, v in chunks._COMPILED.items() if k not in before]
    assert len(new) == 1, "the fit should compile one new program"
    return new[0].compiled.as_text(), result.posterior.attrs["lanes"]


def test_hj_sample_runs_one_lane_where_the_loop_compiles_into_one_kernel():
    model, data = _schools()
    # draws=51: a program of its own, not one another test compiled already.
    text, lanes = _compiled_text(model, data, draws=51)
    assert lanes == 1
    assert _loops_outside_one_kernel(text) == 0
    # With 4 lanes each lane's checkpoint and output rows are scatters: no hoisting.
    text, lanes = _compiled_text(model, data, draws=51, lanes=4)
    assert lanes == 4
    assert _loops_outside_one_kernel(text) > 0


def test_hj_sample_keeps_four_lanes_where_the_gradient_scatters():
    model, data = _gathering()
    text, lanes = _compiled_text(model, data, draws=51, reduce=False)
    assert lanes == 4
    assert _loops_outside_one_kernel(text) > 0


def test_one_lane_runs_the_same_chains_as_four():
    """The lanes never change which Markov chain a job runs: in float64 (so that rounding
    stays far below the tolerance) the one-kernel program on one lane makes the same
    transitions as four lanes. Longer chains amplify the rounding into other draws."""
    model, data = _schools()
    short = dict(chains=2, warmup=20, draws=10, progress=False, warn=False)
    with jax.enable_x64():
        one = hj.sample(model, data, key=3, **short)
        four = hj.sample(model, data, key=3, lanes=4, **short)
    assert (one.posterior.attrs["lanes"], four.posterior.attrs["lanes"]) == (1, 4)
    np.testing.assert_array_equal(one.sample_stats["n_steps"], four.sample_stats["n_steps"])
    np.testing.assert_allclose(one.posterior["theta"], four.posterior["theta"], rtol=1e-9)
