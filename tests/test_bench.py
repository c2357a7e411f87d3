"""Every benchmark reports a target and exits non-zero when it misses it (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parent.parent / "bench").glob("*.py"))


@pytest.mark.parametrize("script", BENCH, ids=[p.name for p in BENCH])
def test_benchmark_exits_with_the_result_of_main(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    guard = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert guard and "raise SystemExit(main())" in ast.unparse(guard[0]), f"{script.name}: exit with main()'s code"
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    returns = [n for n in ast.walk(main) if isinstance(n, ast.Return) and n.value is not None]
    assert returns, f"{script.name}: main() returns no exit code"
    assert any(ast.unparse(r.value) != "0" for r in returns), f"{script.name}: main() can never fail"
