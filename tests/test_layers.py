"""The folders form one straight dependency order, and every import obeys it.

    benchmarks, notebooks  ->  xpay  ->  workloads | actors  ->  sim

A module may import its own package and any package on a lower floor; never one on a higher
floor, and never a peer on its own floor (workloads and actors know nothing of each other).
Every import counts: module level, inside functions, ``importlib.import_module("...")`` with
a literal name, and the imports of notebook code cells.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"sim": 0, "workloads": 1, "actors": 1, "xpay": 2, "benchmarks": 3, "notebooks": 3}
PACKAGES = ("sim", "workloads", "actors", "xpay", "benchmarks")


def imported_packages(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the tree that names a project package."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            continue  # relative imports stay inside their own package
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top in FLOOR:
                found.append((node.lineno, top))
    return found


def layer_breaks(package: str, source: str, where: str) -> list[str]:
    breaks = []
    for line, target in imported_packages(ast.parse(source, filename=where)):
        if target == package:
            continue
        if FLOOR[target] >= FLOOR[package]:
            breaks.append(f"{where}:{line}: {package} (floor {FLOOR[package]}) imports {target}"
                          f" (floor {FLOOR[target]})")
    return breaks


def notebook_sources() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in cells if c["cell_type"] == "code"]
        lines = [line for line in "\n".join(code).splitlines()
                 if not line.lstrip().startswith(("%", "!"))]  # IPython magics are not Python
        out.append((str(path.relative_to(ROOT)), "\n".join(lines)))
    return out


def test_every_import_goes_down_the_floors():
    breaks = []
    modules = 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules += 1
            breaks += layer_breaks(package, path.read_text(), str(path.relative_to(ROOT)))
    for where, source in notebook_sources():
        breaks += layer_breaks("notebooks", source, where)
    assert modules > 40  # the walk found the project
    assert not breaks, "\n".join(breaks)


@pytest.mark.parametrize("package,source", [
    ("sim", "import xpay.cli"),
    ("sim", "def f():\n    from workloads.model import ScenarioWorkload\n"),
    ("workloads", "from actors import ray_hosts"),
    ("actors", "import importlib\nimportlib.import_module('workloads.zipf')\n"),
    ("xpay", "from benchmarks.engine_throughput import metric"),
])
def test_an_upward_or_sideways_import_is_caught(package, source):
    assert layer_breaks(package, source, "example.py")


@pytest.mark.parametrize("package,source", [
    ("xpay", "from sim.engine import Engine\nimport workloads.registry\nimport actors.ray_hosts"),
    ("benchmarks", "def f():\n    from xpay.runner import replay\n"),
    ("workloads", "from sim.columns import Accounts\nfrom workloads.zipf import Zipf"),
    ("sim", "import numpy\nfrom . import columns"),
])
def test_a_downward_import_passes(package, source):
    assert not layer_breaks(package, source, "example.py")
