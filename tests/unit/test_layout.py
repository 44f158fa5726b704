"""The house's dependency direction, read from the source (ast): core/ is the engine and never
reaches up into the catalogue, the service kinds, the plugin, the CLI or the reporters; and its
functions and modules stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "drillkit"
CORE = sorted((PACKAGE / "core").glob("*.py"))
CORE_MUST_NOT_IMPORT = (
    "drillkit.catalog",
    "drillkit.stack.services",
    "drillkit.plugin",
    "drillkit.cli",
    "drillkit.reporting",
)
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """Every module `path` imports (at any depth: a function-level import counts), with its line;
    `from a import b` yields both 'a' and 'a.b' (b may be a module). `package`: the one the file
    belongs to (for relative imports; default: from its place under drillkit/)."""
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in CORE_MUST_NOT_IMPORT)


def test_the_core_modules_are_found() -> None:
    names = {p.stem for p in CORE}
    assert {"registry", "runner", "context", "scenario", "probes", "measure"} <= names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_nothing_above_it(path: Path) -> None:
    bad = [f"{path.name}:{line}: {name}" for line, name in imports(path) if forbidden(name)]
    assert not bad, "core/ must not import the catalogue, services, plugin, CLI or reporting"


def test_the_import_check_sees_a_violation(tmp_path: Path) -> None:
    text = (
        "def f():\n    from drillkit.catalog import checks\n    from ..stack.services import web\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    found = [name for _, name in imports(probe, "drillkit.core") if forbidden(name)]
    assert "drillkit.catalog" in found and "drillkit.stack.services" in found


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_functions_and_modules_are_short(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name} is over {MAX_MODULE_LINES}"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_two_test_modules_share_a_basename() -> None:
    """pytest imports test files by basename (rootdir mode, no packages): a unit and an
    integration test of the same name stop the whole collection ('import file mismatch')."""
    tests = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        if "team_project" not in path.parts:
            names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert not {n: p for n, p in names.items() if len(p) > 1}
