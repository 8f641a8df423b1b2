"""`python -m scripts.bench` (what `make bench` runs): the sections, then the results files.

Two things must happen in order before JAX's first operation:
- httpstan keeps compiled models in a cache that outlives the run (`~/.cache/hjax-bench`), and
  its worker processes are forked now, after that cache is set (they read it) and before XLA
  starts its threads (forking a multithreaded process can deadlock);
- `import hjax` makes JAX show one CPU device per core, as every hjax user gets.
"""

import os
from pathlib import Path

os.environ["XDG_CACHE_HOME"] = str(Path.home() / ".cache" / "hjax-bench")

import httpstan.services_stub  # noqa: E402

httpstan.services_stub.executor.submit(int).result()

import hjax  # noqa: E402, F401
from scripts.bench.run import main  # noqa: E402

main()
