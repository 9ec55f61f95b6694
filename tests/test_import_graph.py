"""The code's shape: one-way layers, no import cycle, small modules and folders, light package imports.

Read from the source with ``ast`` (every import, at module level or inside a function), so a cycle hidden
behind a lazy import counts too. Product code only: ``server``, ``scheduler``, ``pipelines``, ``operators``
and ``cli`` (tests and benchmarks are scripts, not layers).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "scheduler", "pipelines", "operators", "cli")
#: Each layer may import only from the layers after it (cli draws graphs with pipelines' loader).
LAYERS = {"server": {"scheduler", "pipelines", "operators"}, "scheduler": {"pipelines", "operators"},
          "pipelines": {"operators"}, "operators": set(), "cli": {"pipelines", "operators"}}
MAX_LINES = 400
MAX_MODULES_PER_FOLDER = 12


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``name`` imports (``from a.b import c`` is ``a.b.c`` when that is a module)."""
    targets: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    # A module importing its own ancestor package triggers registration (``import operators``): not a layer edge.
    return {t for t in targets if t in known and t != name and not name.startswith(t + ".")}


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(name, path, set(modules)):
            graph.add_edge(name, target)
    return graph


def test_no_import_cycle() -> None:
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


def test_layers_import_one_way() -> None:
    wrong = [f"{a} imports {b}" for a, b in _graph().edges
             if a.split(".")[0] != b.split(".")[0] and b.split(".")[0] not in LAYERS[a.split(".")[0]]]
    assert wrong == []


def test_the_core_packages_import_one_way() -> None:
    """Inside scheduler/: wiring -> dispatch -> admission -> records, notify -> records, cache -> records; never back."""
    order = {"wiring": 0, "dispatch": 1, "admission": 2, "notify": 2, "cache": 2, "records": 3, "errors": 4, "settings": 4, "timefmt": 4}
    wrong = []
    for a, b in _graph().edges:
        if a.startswith("scheduler.") and b.startswith("scheduler."):
            pa, pb = a.split(".")[1], b.split(".")[1]
            if pa in order and pb in order and pa != pb and order[pa] >= order[pb]:
                wrong.append(f"{a} imports {b}")
    assert wrong == []


def test_no_module_over_400_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_flat_folder_of_more_than_12_modules() -> None:
    crowded = {}
    for package in PACKAGES:
        for folder in [ROOT / package, *(p.parent for p in (ROOT / package).rglob("__init__.py"))]:
            modules = [p for p in folder.glob("*.py") if not p.name.startswith("__")]
            if len(modules) > MAX_MODULES_PER_FOLDER:
                crowded[str(folder.relative_to(ROOT))] = len(modules)
    assert crowded == {}


def test_package_inits_are_small_and_light() -> None:
    for name, path in _modules().items():
        if path.name == "__init__.py" and name.split(".")[0] != "operators":  # operators/ registers on import
            assert len(path.read_text().splitlines()) <= 40, name
    code = ("import sys, json; import scheduler, scheduler.records, scheduler.dispatch, scheduler.admission, "
            "scheduler.notify, scheduler.wiring, pipelines, pipelines.run, server, cli; "
            "print(json.dumps(sorted(m for m in ('distributed', 'dask', 'redis', 'httpx', 'litestar', 'av') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_graphs_show_imports_neither_dask_nor_redis_nor_httpx() -> None:
    code = ("import sys, json, contextlib, io\n"
            "from cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['graphs', 'show', 'graphs/render.yaml', '--json'])\n"
            "print(json.dumps([rc, sorted(m for m in ('distributed', 'dask', 'redis', 'httpx', 'litestar') "
            "if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, []], out.stderr[-2000:]


def test_readme_architecture_shows_every_package() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Architecture\n(.*?)(?=^## )", readme, re.S | re.M)
    assert match, "README.md has no '## Architecture' section"
    section = match.group(1)
    folders = sorted({str(p.parent.relative_to(ROOT)) + "/" for package in PACKAGES
                      for p in (ROOT / package).rglob("__init__.py")})
    # A folder is on the map by its path, or inside a brace group: operators/{media,render}/.
    groups = {f"{base}{name}/" for base, names in re.findall(r"(\S*?)\{([\w,]+)\}/", section) for name in names.split(",")}
    missing = [f for f in folders if f not in section and f not in groups]
    assert missing == []
