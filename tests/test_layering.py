"""hjax's modules form layers: no import goes from a lower layer to a higher one, and no import
circle joins hjax's modules.

The imports are read from the source with `ast` (every `import` statement: at module level,
inside functions and under `TYPE_CHECKING`), so an import that only runs late still counts.
`from package import name` counts as an import of the submodule where `name` is one, else of
the package's `__init__`. Each test reports every violation in one message.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hjax"

# Lowest first; a module may import from its own layer and the layers below it. A name matches
# the module itself and everything under it, except "hjax" (the package's __init__): the top.
LAYERS = (
    ("hjax.errors", "hjax._*"),  # hjax._*: leaf helpers at the top level
    ("hjax.settings", "hjax.devices"),
    ("hjax.model",),
    ("hjax.cognitive",),
    ("hjax.formula",),
    ("hjax.inference.nuts",),  # kernels, adaptation, thinning, keys
    ("hjax.inference.workflow",),  # reading fits: diagnostics, results, predictive checks
    ("hjax.inference.run",),  # running kernels over datasets: chunks, samplers, sample
    ("hjax.inference",),
    ("hjax.studies",),
    ("hjax.catalog", "hjax.datasets", "hjax.config"),
    ("hjax.jobs", "hjax.cluster"),
    ("hjax.cli",),
    ("hjax",),
)

# Violations known and accepted for now, as (importer, imported) pairs and sets of modules in a
# circle. Each must still occur (as a strict xfail would), so that whoever removes one also
# removes it here. Issue 39 emptied both (model/formula.py importing cognitive/; the circle of
# model/data, likelihoods, model and reduction).
KNOWN_TODAY_UPWARD: set[tuple[str, str]] = set()
KNOWN_TODAY_CIRCLES: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    """Dotted name -> source file of every module under hjax/ (a package by its __init__)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement reaches (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names]


def _owner(name: str) -> str:
    """The hjax module that defines `name` (its longest prefix that is a module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {hjax module it imports: the line of the first such import}."""
    graph = {}
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, package):
                    if name == "hjax" or name.startswith("hjax."):
                        target = _owner(name)
                        if target != module:
                            edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the module's layer; None for a module no layer names."""
    def matches(pattern: str) -> bool:
        if pattern.endswith("*"):
            return module.startswith(pattern[:-1]) and "." not in module[len(pattern) - 1:]
        return module == pattern or (pattern != "hjax" and module.startswith(pattern + "."))
    found = [i for i, layer in enumerate(LAYERS) for pattern in layer if matches(pattern)]
    return found[0] if found else None


def upward_imports(graph) -> dict[tuple[str, str], str]:
    """(importer, imported) -> where and why, for each import from a lower layer to a higher."""
    found = {}
    for module, edges in graph.items():
        for target, line in edges.items():
            low, high = layer_of(module) or 0, layer_of(target) or 0  # None: its own test
            if high > low:
                found[(module, target)] = (
                    f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {target} "
                    f"(layer {LAYERS[high][0]}) from layer {LAYERS[low][0]}")
    return found


def circles(graph) -> dict[frozenset[str], str]:
    """Each set of modules joined by import circles (a strongly connected component of two or
    more), named with one of its circles spelled out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = {}

    def visit(module):  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found[frozenset(component)] = (
                    f"{', '.join(sorted(component))} (one circle: "
                    f"{' -> '.join(_circle(graph, set(component)))})")

    for module in graph:
        if module not in index:
            visit(module)
    return found


def _circle(graph, component: set[str]) -> list[str]:
    """A walk from the component's first module that returns to it (depth first)."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        ahead = [t for t in graph[path[-1]] if t in component]
        if start in ahead:
            return [*path, start]
        step = next((t for t in sorted(ahead) if t not in seen), None)
        if step is None:  # a dead end inside the component: back up
            path.pop()
            continue
        path.append(step)
        seen.add(step)


GRAPH = import_graph()


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"Name the layer of {', '.join(missing)} in LAYERS."


def test_no_import_goes_up_a_layer():
    found = upward_imports(GRAPH)
    unexpected = [why for pair, why in sorted(found.items()) if pair not in KNOWN_TODAY_UPWARD]
    assert not unexpected, "Imports from a lower layer to a higher one:\n" + "\n".join(unexpected)


def test_no_import_circle():
    found = circles(GRAPH)
    unexpected = [why for group, why in found.items() if group not in KNOWN_TODAY_CIRCLES]
    assert not unexpected, "Import circles:\n" + "\n".join(sorted(unexpected))


def test_the_known_violations_are_still_there():
    """A strict xfail: a violation that is gone must leave its KNOWN_TODAY list."""
    gone = sorted(str(pair) for pair in KNOWN_TODAY_UPWARD - upward_imports(GRAPH).keys())
    gone += sorted(str(sorted(group)) for group in KNOWN_TODAY_CIRCLES - circles(GRAPH).keys())
    assert not gone, "Fixed; remove from KNOWN_TODAY_*: " + "; ".join(gone)


def test_an_upward_import_is_named_with_its_line(monkeypatch):
    monkeypatch.setitem(MODULES, "hjax.model.a", PACKAGE / "model" / "a.py")
    graph = {"hjax.model.a": {"hjax.inference.b": 3}, "hjax.inference.b": {"hjax.errors": 1}}
    assert upward_imports(graph) == {("hjax.model.a", "hjax.inference.b"): (
        "hjax/model/a.py:3 imports hjax.inference.b (layer hjax.inference) from layer hjax.model")}


def test_a_circle_is_spelled_out():
    graph = {"hjax.a": {"hjax.b": 1}, "hjax.b": {"hjax.c": 1, "hjax.d": 1},
             "hjax.c": {"hjax.a": 1}, "hjax.d": {}}
    assert circles(graph) == {frozenset({"hjax.a", "hjax.b", "hjax.c"}): (
        "hjax.a, hjax.b, hjax.c (one circle: hjax.a -> hjax.b -> hjax.c -> hjax.a)")}
