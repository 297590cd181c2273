"""The package's shape: no import cycle among mmh_bench's modules, counting imports inside
functions (benchmarks/import_cycles.py reads them with ast; a fraction of a second)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from import_cycles import cycles, edges  # noqa: E402


def test_no_import_cycle():
    assert cycles(edges(ROOT)) == []


def test_the_counter_sees_function_level_and_package_edges(tmp_path):
    """A cycle closed only by an import inside a function, or through a package's __init__, is
    found; one closed only under TYPE_CHECKING is not."""
    pkg = tmp_path / "mmh_bench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from mmh_bench import b\n")
    (pkg / "b.py").write_text("import mmh_bench.a\n")
    (pkg / "sub" / "__init__.py").write_text("from mmh_bench.c import X\n")
    (pkg / "sub" / "d.py").write_text("X = 1\n")
    (pkg / "c.py").write_text("from mmh_bench.sub.d import X\n")
    (pkg / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mmh_bench import f\n")
    (pkg / "f.py").write_text("from mmh_bench import e\n")
    assert cycles(edges(tmp_path)) == [["mmh_bench.a", "mmh_bench.b"], ["mmh_bench.c", "mmh_bench.sub"]]


def test_builders_read_the_validated_spec():
    """Builders and data generators read ``spec.model`` (defaults in the spec models, once), never
    the raw document: no ``section()`` and no ``.raw`` under mmh_bench/task/ but the spec's own module."""
    import ast
    readers = []
    for path in sorted((ROOT / "mmh_bench" / "task").rglob("*.py")):
        if path.name == "spec.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("raw", "section"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []
