"""The service kinds' registry and the stack package's dependency direction (no containers)."""

import ast
from pathlib import Path

import pytest

import drillkit.stack.services  # noqa: F401  (registers the kinds)
from drillkit.errors import EnvironmentBroken
from drillkit.stack import kinds
from drillkit.stack.kinds import BASE_KINDS, SERVICE_KINDS, ServiceKind, service_kind
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions

STACK_DIR = Path(kinds.__file__).parent
FORBIDDEN = ("drillkit.stack.services", "drillkit.core", "drillkit.catalog")


def test_registry_holds_every_builtin_kind():
    assert {"database", "app", "proxy", "web", "payments"} <= set(SERVICE_KINDS)
    for name, kind in SERVICE_KINDS.items():
        assert issubclass(kind, ServiceKind)
        assert kind.name == name
    assert set(BASE_KINDS) <= set(SERVICE_KINDS)


def test_unknown_optional_kind_is_refused_by_name(tmp_path):
    with pytest.raises(EnvironmentBroken, match=r"unknown optional service kind 'queue'.*database"):
        Stack(load_stack(), "ut0", tmp_path, StackOptions(optional=frozenset({"queue"})))


def test_base_kind_is_not_optional(tmp_path):
    with pytest.raises(EnvironmentBroken, match="'app' is part of every stack"):
        Stack(load_stack(), "ut0", tmp_path, StackOptions(optional=frozenset({"app"})))


def test_a_kind_registers_once():
    class Twin(ServiceKind):
        name = "database"

        def services(self):
            return ()

        def start(self):
            pass

    with pytest.raises(ValueError, match="registered twice"):
        service_kind(Twin)
    assert SERVICE_KINDS["database"].__module__ == "drillkit.stack.services.database"


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("path", sorted(STACK_DIR.glob("*.py")), ids=lambda p: p.name)
def test_stack_imports_no_service_core_or_catalog_module(path):
    bad = [n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == [], f"{path.name} imports {bad}: stack/ must not depend on them"
