"""One lane per CPU device where XLA:CPU compiles the whole lanes loop into one kernel.

Which loops XLA:CPU compiles into one kernel is the compiler's choice and changes between
jaxlib releases (`hoisting_rule`). What hjax promises is that its prediction, made before
compiling, agrees with what the installed jaxlib compiles, and that `hj.sample` then runs one
lane. The tests that read a compiled program say which jaxlib they read (`READ_ON`) and skip,
with the reason, on another.
"""

import re

import jax
import jaxlib
import numpy as np
import pytest

import hjax as hj
from hjax.inference import compiled_programs
from hjax.inference.run.one_kernel import fits_one_kernel, hoisting_rule
from hjax.inference.run.sample import fitted

EFFECTS = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SHORT = dict(chains=2, warmup=100, draws=50, progress=False, warn=False)
# The jaxlib releases whose compiled programs these tests were read on (the locked one last).
READ_ON = ("0.12.0", "0.12.1")
reads_compiled_programs = pytest.mark.skipif(
    jaxlib.__version__ not in READ_ON,
    reason=f"reads XLA:CPU's compiled programs, checked on jaxlib {', '.join(READ_ON)}; "
           f"this is {jaxlib.__version__} (see constraints.txt)")


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


def _compiled(model, data, **options) -> tuple[str, int]:
    """The program `hj.sample` compiled for this fit (as text) and the lanes it ran."""
    before = compiled_programs()
    result = hj.sample(model, data, key=0, **(SHORT | options))
    new = [p for p in compiled_programs() if not any(p is q for q in before)]
    assert len(new) == 1, "the fit should compile one new program"
    return new[0].compiled.as_text(), result.posterior.attrs["lanes"]


def _fitted_dataset(model, data, **options):
    batch = {k: np.asarray(v)[None] for k, v in model.prepare(data).items()}
    marked, marked_batch, _ = fitted(model, batch, **options)
    return marked, _one(marked_batch)


def test_the_rule_follows_the_jaxlib():
    assert hoisting_rule("0.11.2") is None  # nothing hoisted: every model keeps 4 lanes
    assert hoisting_rule("0.12.0").search("stablehlo.scatter")
    assert not hoisting_rule("0.12.1").search("stablehlo.scatter")
    assert not hoisting_rule("0.13.0").search("stablehlo.scatter")  # as the latest known
    for version in ("0.12.0", "0.12.1"):
        assert hoisting_rule(version).search("stablehlo.dot_general")


def test_a_dense_mass_matrix_never_fits_one_kernel():
    model, dataset = _fitted_dataset(*_schools())
    assert not fits_one_kernel(model, dataset, dense_mass=True)  # M^-1 p: a matrix product


@reads_compiled_programs
@pytest.mark.parametrize("case", ["schools", "gathering", "regular", "dense"])
def test_the_prediction_is_what_the_jaxlib_compiles(case):
    """`fits_one_kernel`, decided before compiling, says whether the one-lane program's loops
    all compile into one kernel; and `hj.sample` chooses one lane exactly then."""
    options = {"reduce": False} if case in ("gathering", "regular") else {}
    model, data = {"schools": _schools(), "dense": _schools(), "gathering": _gathering(),
                   "regular": _gathering(regular=True)}[case]
    dense = case == "dense"
    predicted = fits_one_kernel(*_fitted_dataset(model, data, **options), dense_mass=dense)
    assert predicted == (case != "dense") or case == "gathering"  # a scatter: by the jaxlib
    # draws=51: a program of its own, not one another test compiled already.
    text, lanes = _compiled(model, data, draws=51, dense_mass=dense, **options)
    assert lanes == (1 if predicted else 4)
    if not predicted:  # what one lane would have compiled
        text, _ = _compiled(model, data, draws=51, lanes=1, dense_mass=dense, **options)
    assert predicted == (_loops_outside_one_kernel(text) == 0)


def test_one_lane_runs_the_same_chains_as_four():
    """The lanes never change which Markov chain a job runs: in float64 (so that rounding
    stays far below the tolerance) the program on one lane makes the same transitions as
    four lanes. Longer chains amplify the rounding into other draws."""
    model, data = _schools()
    short = dict(chains=2, warmup=20, draws=10, progress=False, warn=False)
    with jax.enable_x64():
        one = hj.sample(model, data, key=3, lanes=1, **short)
        four = hj.sample(model, data, key=3, lanes=4, **short)
    assert (one.posterior.attrs["lanes"], four.posterior.attrs["lanes"]) == (1, 4)
    np.testing.assert_array_equal(one.sample_stats["n_steps"], four.sample_stats["n_steps"])
    np.testing.assert_allclose(one.posterior["theta"], four.posterior["theta"], rtol=1e-9)
