"""The dependency direction of agentbudget's modules (docs/architecture.md draws it).

Every import between agentbudget's modules counts: at module level, under
``TYPE_CHECKING`` and inside functions. A new import circle, or a module reaching up
into a layer above its own, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import agentbudget

PACKAGE = Path(agentbudget.__file__).parent

# Lowest first. A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "values",
        {
            "_format",
            "_version",
            "_validation",
            "errors",
            "money",
            "limits",
            "media",
            "tokens",
            "usage",
            "rates",
            "pricing",
            "price_sources",
            "report",
        },
    ),
    ("stores and sinks", {"stores", "sinks"}),
    ("budgets, alerts and planning", {"budgets", "alerts", "planning"}),
    ("policy and accounts", {"policy", "accounts"}),
    ("run meter, model resolution, SDK internals", {"meter", "resolution", "_sdk"}),
    ("provider models", {"models"}),
    (
        "hooks, interceptor, context variables",
        {"hooks", "interceptor", "current", "context", "compaction"},
    ),
    ("pipeline stages", {"cache", "routing"}),
    ("the run pipeline", {"pipeline"}),
    ("instrumentation", {"runtime"}),
    (
        "facades",
        {
            "guard",
            "scope",
            "testing",
            "pytest_plugin",
            "reporting",
            "html_report",
            "cli",
            "demo",
            "__init__",
            "__main__",
        },
    ),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The agentbudget modules ``name`` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package and name != "__init__" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                stem = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "agentbudget":
                stem = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                submodule = ".".join([*stem, alias.name])
                targets.append(submodule if submodule in modules else ".".join(stem))
        elif isinstance(node, ast.Import):
            targets = [
                alias.name.removeprefix("agentbudget.")
                for alias in node.names
                if alias.name.startswith("agentbudget.")
            ]
        for target in targets:
            target = target or "__init__"
            if target in modules and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"agentbudget.{module} is in no layer of tests/test_architecture.py")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    assert _cycles(_graph()) == []


def test_every_module_imports_only_its_own_layer_and_the_layers_below() -> None:
    upward = [
        f"agentbudget.{module} ({LAYERS[_layer(module)][0]}) imports agentbudget.{target} "
        f"({LAYERS[_layer(target)][0]})"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_the_check_sees_type_checking_and_function_level_imports(tmp_path: Path) -> None:
    # the checker itself: a circle through a TYPE_CHECKING import and one through a
    # function-level import are both found
    graph = {
        "a": {"b"},
        "b": {"a"},  # e.g. ``if TYPE_CHECKING: from .a import A``
        "c": set(),
    }
    assert _cycles(graph) == [["a", "b"]]
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .meter import RunMeter\n"
        "def f():\n    from .guard import Guard\n",
        encoding="utf-8",
    )
    modules = {"meter": source, "guard": source, "m": source}
    assert _imports("m", source, modules) == {"meter", "guard"}
