"""Guards the size rules of STYLE.md: modules <= ~400 lines, functions <= ~80 lines,
except the modules named (with a reason) in ``scripts/check_sizes.py``."""

from __future__ import annotations

from pathlib import Path

from scripts.check_sizes import MAX_FUNCTION_LINES, MAX_MODULE_LINES, stale, violations

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_or_function_over_the_limits() -> None:
    assert violations(ROOT) == []


def test_the_check_sees_long_modules_long_functions_and_unneeded_exceptions(
        tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "api" / "long.py").write_text(
        "def f():\n" + body + "\n" * (MAX_MODULE_LINES - MAX_FUNCTION_LINES))
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "fine.py").write_text("def g():\n    return 1\n")
    assert violations(tmp_path, {"stream/*": "being split"}) == [
        f"api/long.py: module has {MAX_MODULE_LINES + 1} lines (limit {MAX_MODULE_LINES})",
        f"api/long.py: function f (line 1) has {MAX_FUNCTION_LINES + 1} lines "
        f"(limit {MAX_FUNCTION_LINES})",
    ]
    assert violations(tmp_path, {"api/long.py": "generated"}) == []
    assert stale(tmp_path, {"api/*": "generated", "stream/*": "being split"}) == ["stream/*"]


def test_the_check_sees_lua_and_javascript_modules_too(tmp_path: Path) -> None:
    (tmp_path / "api" / "lua").mkdir(parents=True)
    (tmp_path / "api" / "lua" / "long.lua").write_text("local x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "sdk" / "js" / "src").mkdir(parents=True)
    (tmp_path / "sdk" / "js" / "src" / "long.ts").write_text("x;\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "api" / "short.js").write_text("x;\n" * MAX_MODULE_LINES)
    assert violations(tmp_path, {}) == [
        f"api/lua/long.lua: module has {MAX_MODULE_LINES + 1} lines (limit {MAX_MODULE_LINES})",
        f"sdk/js/src/long.ts: module has {MAX_MODULE_LINES + 1} lines "
        f"(limit {MAX_MODULE_LINES})",
    ]
