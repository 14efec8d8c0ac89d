"""The architecture holds: the import graph of ``iftgym/`` has no cycle, and no module imports from a layer above its
own (``docs/design.md`` §1). Every import counts, also those inside functions; only ``if TYPE_CHECKING:`` blocks,
which never run, are left out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "iftgym"

# bottom up; a module may import from its own layer (without a cycle) and from the layers below
LAYERS = [
    (
        "core",
        [
            "iftgym.version",
            "iftgym.errors",
            "iftgym.parallel",
            "iftgym.distributed",
            "iftgym.validate",
            "iftgym.io",
            "iftgym.registry",
            "iftgym.types",
            "iftgym.world",
            "iftgym.decoding",
            "iftgym.settings",
        ],
    ),
    ("worlds", ["iftgym.worlds"]),
    ("policies", ["iftgym.policies"]),
    ("rules", ["iftgym.rules"]),
    ("loop", ["iftgym.loop"]),
    ("metrics", ["iftgym.metrics"]),
    ("experiments", ["iftgym.experiments"]),
    ("explain", ["iftgym.explain"]),
    ("interactive", ["iftgym.interactive"]),
    ("cli", ["iftgym.cli", "iftgym.__main__"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS and docs/design.md")


def _runtime_nodes(tree: ast.AST):
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The iftgym modules ``path`` imports (``from iftgym.x import y`` counts ``iftgym.x.y`` when that is a module)."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("iftgym"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iftgym") and not node.level:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {module: imports_of(path, set(paths)) - {module} for module, path in paths.items()}


def test_every_module_is_in_a_layer(graph) -> None:
    for module in graph:
        if module != "iftgym":  # the package root is the public facade, loading names lazily by string
            layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own(graph) -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph.items()
        if module != "iftgym"
        for target in targets
        if target != "iftgym" and layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_only_the_version_is_imported_from_the_package_root(graph) -> None:
    # importing the root from inside would run the facade, which registers the environments and may cycle back
    assert not [module for module, targets in graph.items() if "iftgym" in targets]


def test_the_import_graph_has_no_cycle(graph) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_worlds_import_neither_policies_nor_the_loop(graph) -> None:
    for module, targets in graph.items():
        if module.startswith("iftgym.worlds"):
            assert not {t for t in targets if t.startswith(("iftgym.policies", "iftgym.rules", "iftgym.loop"))}


def test_policies_import_no_world_but_its_tokenizers(graph) -> None:
    # decoding is core (iftgym.decoding); what policies still read from the token world is its tokenizers
    tokenizers = {"iftgym.worlds.tokens.tokenizer", "iftgym.worlds.tokens.hf_tokenizer"}
    for module, targets in graph.items():
        if module.startswith("iftgym.policies"):
            assert not {t for t in targets if t.startswith("iftgym.worlds")} - tokenizers, module


def test_experiments_and_explanations_never_print() -> None:
    for folder in ("experiments", "explain"):
        for path in (PACKAGE / folder).rglob("*.py"):
            calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
            printing = [n.lineno for n in calls if isinstance(n.func, ast.Name) and n.func.id == "print"]
            printing += [n.lineno for n in calls if isinstance(n.func, ast.Attribute) and n.func.attr == "print"]
            assert not printing, f"{path.name} prints at lines {printing}: return data, let the CLI render it"
