"""The package's modules import each other only downward: no import cycle among glm3_teach modules.

The imports are read with ``ast`` (module level, inside functions and under ``TYPE_CHECKING``
alike: a cycle through a type hint is still a cycle for the reader), so the test does not
depend on what happens to be imported already.
"""

from __future__ import annotations

import ast
from pathlib import Path

import glm3_teach

PACKAGE = Path(glm3_teach.__file__).parent
# Import edges known to close a cycle, to be removed once their modules are fixed: sft.py's
# ``readme_text`` imports evaluate inside a function while evaluate imports sft the same way.
KNOWN_CYCLE_EDGES = {("glm3_teach.sft", "glm3_teach.evaluate")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The glm3_teach modules a module's ``import`` statements name (``from X import y`` counts X, or X.y if a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [origin] + [f"{origin}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found - {module}


def import_graph() -> dict[str, set[str]]:
    """Module name -> the glm3_teach modules it imports, for every ``.py`` file in the package."""
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {_module_name(path) for path in paths}
    return {_module_name(path): _imported(ast.parse(path.read_text(encoding="utf-8")), _module_name(path),
                                          path.name == "__init__.py", known) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. Importing a subpackage's
    own ``__init__`` from inside it is not counted (Python runs the package first by design)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if node.startswith(child + "."):
                continue  # a module of a package importing the package itself
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_module_of_the_package_takes_part_in_an_import_cycle():
    graph = import_graph()
    for module, imported in KNOWN_CYCLE_EDGES:
        graph[module].discard(imported)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_and_reads_type_checking_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from glm3_teach.model import X\n")
    assert _imported(tree, "glm3_teach.layers", False, {"glm3_teach.model", "glm3_teach.layers"}) == {"glm3_teach.model"}


def test_the_config_is_the_bottom_floor_and_still_importable_from_its_old_places():
    graph = import_graph()
    assert graph["glm3_teach.config"] <= {"glm3_teach.errors"}
    for user in ("glm3_teach.attention", "glm3_teach.layers"):
        assert "glm3_teach.model" not in graph[user]
    from glm3_teach import ChatGLMConfig as from_package
    from glm3_teach.config import ChatGLMConfig
    from glm3_teach.model import ChatGLMConfig as from_model

    assert from_package is ChatGLMConfig is from_model
