"""Import cycles among mmh_bench's modules, read from the source with ``ast``.

Why: a circle of imports makes every module in it load (and break) together, and hides which one a
change really touches. An edge is any import of an mmh_bench module, at the top or inside a
function, except under ``if TYPE_CHECKING:``; importing ``a.b.c`` also runs the packages ``a``
and ``a.b``, so their ``__init__`` modules are edges too (except the packages that hold the
importing module, which Python has started before it). Prints every strongly connected component
of more than one module (or a module importing itself); exits 1 when there is one.

    python benchmarks/import_cycles.py [ROOT]   # ROOT: the folder holding mmh_bench/ (default: this repo)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "mmh_bench"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module, skipping ``if TYPE_CHECKING:`` bodies."""
    out: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _with_parents(name: str, importer: str, known: dict[str, Path]) -> list[str]:
    """``name`` and the packages above it (importing a.b.c runs a/__init__ and a/b/__init__), less
    the packages that hold ``importer``: Python runs those before ``importer`` itself, so they are
    an edge only when named (``from mmh_bench import Batch``)."""
    parts = name.split(".")
    above = [".".join(parts[:i]) for i in range(1, len(parts))]
    own = [p for p in above if importer.startswith(p + ".")]
    return [p for p in above if p in known and p not in own] + ([name] if name in known else [])


def edges(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (at run time, anywhere in its body)."""
    known = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                if target.split(".")[0] == PACKAGE:
                    graph[mod].update(t for t in _with_parents(target, mod, known) if t != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    found = cycles(edges(root))
    for comp in found:
        print(f"cycle of {len(comp)}: {', '.join(comp)}")
    print(f"{len(found)} import cycle(s) among {len(module_names(root))} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
