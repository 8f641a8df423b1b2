"""Names the docstring examples under hjax/ may use without importing or building them.

`make test` runs those examples as doctests (`--doctest-modules`, with `hjax` in testpaths).
Each example sees:

- `hj`, `jax`, `jnp`, `np`: `import hjax as hj`, `jax`, `jax.numpy`, `numpy`;
- `model`, `design`: Rubin's eight schools, `hj.catalog.eight_schools()` (parameters `mu`,
  `theta_sd` and `theta` over 8 schools; the design holds `school` and the known `sigma`);
- `data`: the design with the observed effects `y`, ready for `hj.sample(model, data, ...)`.

Examples that fit do so in a line of their own, so that the reader sees where a result or a
study table comes from, and tiny: `hj.sample(model, data, key=0, chains=2, warmup=100,
draws=50)`, and `hj.sbc` / `hj.recover` of 8 datasets with the same chains and draws. Sharing
these settings and shapes, the examples share one compiled program per kind of fit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _pytest.doctest import DoctestItem

import hjax as hj


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace):
    if not isinstance(request.node, DoctestItem) or "model" in doctest_namespace:
        return
    model, design = hj.catalog.eight_schools()
    doctest_namespace.update(
        hj=hj, jax=jax, jnp=jnp, np=np, model=model, design=design,
        data=design | {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12])},
    )


@pytest.fixture(autouse=True)
def _grouped_tests_share_a_worker(request):
    """Under `--dist loadgroup`, tests marked `xdist_group` run on one worker (the cluster tests
    share one Slurm, others one costly fixture). pytest 9.2 silently undid that (pytest-xdist
    issue #1386, hence the pin in pyproject.toml): such a test fails instead."""
    node = request.node
    if (getattr(request.config.option, "loadgroup", False)
            and node.get_closest_marker("xdist_group") and "@" not in node.nodeid):
        pytest.fail("--dist loadgroup ignored this test's xdist_group: pytest >= 9.2 with "
                    "pytest-xdist 3.8 (issue #1386); install constraints.txt's pytest.")
