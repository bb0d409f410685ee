"""The package's layers, as its import graph shows them: no cycles, and a light service.

Every module of the package is parsed, and each of its imports resolved to a module of the
package or to a third-party distribution. An import inside a function counts for cycles (it
still ties the two modules together) but runs only when the function does, e.g. training
behind ``POST /train`` or a forest's pipeline in ``loading``; what a serving module imports at
its top, and what those modules import at theirs, is what every worker pays at start-up.
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

import ast
import graphlib
from pathlib import Path

import pytest

import {{ cookiecutter.package }}

PACKAGE = {{ cookiecutter.package }}.__name__
SOURCE = Path({{ cookiecutter.package }}.__file__).parent
# What the service starts without (most of a second of start-up together); the serving
# image's bytecode and the start-up benchmark count on it.
SCIENTIFIC_STACK = frozenset({"sklearn", "scipy", "pandas", "skops"})


def module_names(source: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``source``, by dotted name."""
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = [package, *path.relative_to(source).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module):
    """(import node, whether it runs when the module is imported), skipping TYPE_CHECKING."""
    pending: list[tuple[ast.AST, bool]] = [(node, True) for node in tree.body]
    while pending:
        node, at_import = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend((child, at_import) for child in node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, at_import
            continue
        deferred = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        pending.extend((child, at_import and not deferred)
                       for child in ast.iter_child_nodes(node))


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[tuple[str, bool]]:
    """What module ``name`` imports: (package module or top-level distribution, at import)."""
    found = set()
    is_package = path.name == "__init__.py"
    for node, at_import in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                parts = name.split(".")
                parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from x import y`` imports the module x.y when there is one, x anyway.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                                if f"{base}.{alias.name}" in modules]
        for target in targets:
            if target.split(".")[0] != name.split(".")[0]:
                found.add((target.split(".")[0], at_import))
                continue
            parts = target.split(".")
            # Importing a.b.c runs a, a.b and a.b.c.
            found.update((".".join(parts[:i]), at_import) for i in range(1, len(parts) + 1)
                         if ".".join(parts[:i]) in modules and ".".join(parts[:i]) != name)
    return found


def import_graph(source: Path, package: str) -> dict[str, set[tuple[str, bool]]]:
    """Each module of the package and what it imports (see ``imports``)."""
    modules = module_names(source, package)
    return {name: imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph) -> list[str] | None:
    """A cycle of package modules importing each other, anywhere in their code, or None."""
    sorter = graphlib.TopologicalSorter(
        {name: {target for target, _ in targets if target in graph}
         for name, targets in graph.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        return error.args[1]
    return None


def heavy_imports(graph, package: str) -> dict[str, list[str]]:
    """For each serving module that loads the scientific stack: the chain of imports to it.

    A serving module may not import a library of ``SCIENTIFIC_STACK`` anywhere in its code,
    nor import at its top a package module that imports one at its top (transitively).
    """
    found = {}
    serving = f"{package}.serving"
    for start in sorted(n for n in graph if n == serving or n.startswith(serving + ".")):
        direct = sorted(t for t, _ in graph[start] if t in SCIENTIFIC_STACK)
        if direct:
            found[start] = [start, direct[0]]
            continue
        chains, seen = [[start]], {start}
        while chains and start not in found:
            chain = chains.pop(0)
            for target, at_import in sorted(graph[chain[-1]]):
                if not at_import or target in seen:
                    continue
                if target in SCIENTIFIC_STACK:
                    found[start] = [*chain, target]
                    break
                if target in graph:
                    seen.add(target)
                    chains.append([*chain, target])
    return found


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph(SOURCE, PACKAGE))
    assert cycle is None, "modules import each other: " + " -> ".join(cycle)


def test_serving_modules_load_no_scientific_library():
    graph = import_graph(SOURCE, PACKAGE)
    assert f"{PACKAGE}.serving.service" in graph  # the check looks at the real modules
    offenders = heavy_imports(graph, PACKAGE)
    assert offenders == {}, "\n".join(" -> ".join(chain) for chain in offenders.values())


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


@pytest.mark.parametrize("files, cycle", [
    # A lazy import closes a cycle as surely as a top-level one does.
    ({"__init__.py": "", "model.py": "from .scoring import predict\n",
      "scoring.py": "def load():\n    from . import model\n"}, True),
    ({"__init__.py": "", "a.py": "from .sub import b\n", "sub/__init__.py": "",
      "sub/b.py": "from ..a import thing\n"}, True),
    ({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
      "    from . import b\n", "b.py": "from . import a\n"}, False),
])
def test_the_cycle_check_sees_lazy_and_nested_imports(tmp_path, files, cycle):
    graph = import_graph(write_package(tmp_path, files), "pkg")
    assert (find_cycle(graph) is not None) is cycle


@pytest.mark.parametrize("files, chain", [
    ({"serving/__init__.py": "", "serving/app.py": "def f():\n    import sklearn.base\n"},
     ["pkg.serving.app", "sklearn"]),
    ({"serving/__init__.py": "", "serving/app.py": "from .. import loading\n",
      "loading.py": "from .spec import derive\n", "spec.py": "import pandas as pd\n"},
     ["pkg.serving.app", "pkg.loading", "pkg.spec", "pandas"]),
    # A serving module's lazy import of training is paid only when it runs.
    ({"serving/__init__.py": "", "serving/app.py": "def train():\n    from .. import training\n",
      "training.py": "import sklearn\n"}, None),
    ({"serving/__init__.py": "import numpy\n", "serving/app.py": "from . import metrics\n",
      "serving/metrics.py": "def f():\n    from scipy import stats\n"},
     ["pkg.serving.metrics", "scipy"]),
])
def test_the_serving_check_follows_imports_that_run_at_start(tmp_path, files, chain):
    files = {"__init__.py": "", **files}
    offenders = heavy_imports(import_graph(write_package(tmp_path, files), "pkg"), "pkg")
    assert (chain in offenders.values()) if chain else offenders == {}
