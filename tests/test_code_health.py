"""Code-health rules checked on the source tree itself (fast: parsing only, nothing imported or run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "adaptive_lr"
MAX_FUNCTION_LINES = 60  # issue 18: a longer function is split into named steps


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method in `tree`, nested ones included, with its qualified name (`Class.method`)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def long_functions(root: Path, limit: int, relative_to: Path) -> list[str]:
    """`path:line name (N lines)` of every function under `root` whose `def` to last line spans over `limit`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for name, node in functions(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            if length > limit:
                found.append(f"{path.relative_to(relative_to)}:{node.lineno} {name} ({length} lines)")
    return found


def test_the_check_finds_a_long_method_nested_in_a_class(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(f"class A:\n    def short(self):\n        pass\n\n    def long(self):\n{body}\n")
    assert long_functions(tmp_path / "pkg", MAX_FUNCTION_LINES, tmp_path) == [
        f"pkg/m.py:5 A.long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_function_in_src_is_longer_than_60_lines():
    offenders = long_functions(SRC, MAX_FUNCTION_LINES, ROOT)
    assert offenders == [], f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps):\n" + "\n".join(
        offenders)
