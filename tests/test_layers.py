"""The import structure: every module imports only from its own layer or below, no two modules import
each other (directly or round a longer circle), and an import inside a function is there only to put off
a heavy library. Read from the source with `ast` (top-level and function-local imports alike)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "moetui"
# Lowest first. cli/ is the outermost layer: its `tui` and `demo` commands open the app, while ui/
# imports nothing from cli/. resolver (which config is in force, and why) sits on the tuner and export and
# answers the CLI and the UI.
LAYERS = ["errors", "paths", "config", "model", "hardware", "sizing", "runtime", "hub", "tuner", "export",
          "resolver", "ui", "cli"]
ENTRY_POINTS = {"moetui", "moetui.__main__"}
# Libraries whose import costs start-up time (tens to hundreds of ms): the one reason for a local import.
HEAVY = {"llama_cpp", "numpy", "textual", "huggingface_hub", "pynvml", "gguf", "httpx", "httpx2"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (moetui.x.y or an outside top-level package)
    line: int
    local: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    # `from moetui.hardware import detect` imports the submodule moetui.hardware.detect
    subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
    return subs if subs and len(subs) == len(node.names) else [module, *subs]


def _imports(name: str, path: Path) -> list[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, local: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.extend(Import(name, t, child.lineno, local, type_only) for t in _targets(child, package))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_only)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, local, True)
            else:
                visit(child, local, type_only)

    visit(ast.parse(path.read_text()), False, False)
    return out


IMPORTS = [i for name, path in MODULES.items() for i in _imports(name, path)]
INTERNAL = [i for i in IMPORTS if i.target.split(".")[0] == "moetui" and i.target in MODULES]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer() -> None:
    assert [m for m in MODULES if m not in ENTRY_POINTS and _layer(m) is None] == []


def test_no_import_runs_up_the_layers() -> None:
    up = [f"{i.source}:{i.line} imports {i.target}" for i in INTERNAL
          if i.source not in ENTRY_POINTS and (_layer(i.target) or 0) > (_layer(i.source) or 0)]
    assert up == []


def test_no_circle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in INTERNAL:
        if i.target != i.source:
            graph[i.source].add(i.target)
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                circles.append(path[path.index(t):] + [t])
            elif t not in state:
                walk(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
    assert circles == []


def _heavy_libraries() -> dict[str, set[str]]:
    """The heavy libraries importing each module loads (its top-level imports, followed through moetui)."""
    deps: dict[str, set[str]] = {m: set() for m in MODULES}
    heavy: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.local or i.type_only:
            continue
        if i.target.split(".")[0] in HEAVY:
            heavy[i.source].add(i.target.split(".")[0])
        elif i.target in MODULES:
            parts = i.target.split(".")
            deps[i.source].update(".".join(parts[:n]) for n in range(2, len(parts) + 1))  # with its packages
    changed = True
    while changed:
        changed = False
        for m, ds in deps.items():
            more = set().union(*(heavy[d] for d in ds if d in heavy)) - heavy[m]
            if more:
                heavy[m] |= more
                changed = True
    return heavy


def _heavy(target: str, heavy: dict[str, set[str]]) -> set[str]:
    return {target.split(".")[0]} & HEAVY or heavy.get(target, set())


# moetui/tuner/engine.py is being split (the speed issue); its local imports are sorted out there.
NOT_YET: set[str] = set()  # modules exempt while being restructured (none left)


def test_a_function_local_import_puts_off_a_heavy_library() -> None:
    """...that the importing module does not load anyway (one that imports textual gains nothing from
    putting off gguf if the app it belongs to loads it at start: the check is per module, a lower bound)."""
    heavy = _heavy_libraries()
    light = [f"{i.source}:{i.line} imports {i.target} inside a function" for i in IMPORTS
             if i.local and i.source not in NOT_YET and not _heavy(i.target, heavy) - heavy[i.source]]
    assert light == []


def test_the_checker_sees_what_it_must() -> None:
    """The checker itself: it finds function-local and relative imports and treats packages right."""
    config = {i.target for i in IMPORTS if i.source == "moetui.config"}
    assert "moetui.errors" in config and "moetui.paths" in config
    assert any(i.local and i.target == "moetui.ui.app" for i in IMPORTS if i.source == "moetui.cli.tui_cmd")
    heavy = _heavy_libraries()
    assert "gguf" in heavy["moetui.sizing.plan"] and heavy["moetui.errors"] == set()

