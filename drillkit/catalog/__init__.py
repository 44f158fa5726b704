"""The drill catalogue: every fault, recovery step, probe and check, by domain, and the one loader
that registers them (drillkit's own modules, then a team's).

Nothing in core/ imports a catalogue module: entries reach the engine only through the registries
in `drillkit.core.registry`, filled when `load()` imports the modules below. A team adds its own
faults, steps and checks in a module of its repo, named by the `drillkit_catalog` ini key (a dotted
module name, or a .py path relative to the rootdir) or by an entry point in the group
`drillkit.catalog` of an installed package; no drillkit file changes.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

from drillkit.errors import ValidationError

BUILTIN = (
    "drillkit.stack.services",
    "drillkit.catalog.checks",
    "drillkit.catalog.commands",
    "drillkit.catalog.processes",
    "drillkit.catalog.network",
    "drillkit.catalog.replication",
    "drillkit.catalog.restore",
    "drillkit.catalog.credentials",
    "drillkit.catalog.sessions",
    "drillkit.catalog.breach",
    "drillkit.catalog.disk",
    "drillkit.catalog.wal",
    "drillkit.catalog.web",
    "drillkit.catalog.tls",
    "drillkit.catalog.payments",
    "drillkit.catalog.accounts",
    "drillkit.catalog.communications",
    "drillkit.catalog.deploy",
    "drillkit.catalog.flood",
    "drillkit.catalog.cache",
    "drillkit.catalog.memory",
)
"""drillkit's own catalogue modules, in registration order."""
ENTRY_POINT_GROUP = "drillkit.catalog"

_loaded: dict[str, str] = {}
"""module name (or path) -> where it came from ('builtin', 'entry point', 'ini')"""


def load(extra: Iterable[str] = (), root: Path | None = None) -> dict[str, str]:
    """Import the built-in catalogue, every `drillkit.catalog` entry point, then each of `extra`
    (a dotted module name, or a path to a .py file relative to `root`). Idempotent: a module is
    imported once however often this runs. Returns what is loaded, by name, with its origin."""
    for name in BUILTIN:
        _import(name, "builtin")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.value not in _loaded:
            _import(ep.value, f"entry point {ep.name}")
    for item in extra:
        item = item.strip()
        if item:
            _import_team(item, root or Path.cwd())
    return dict(_loaded)


def loaded() -> dict[str, str]:
    return dict(_loaded)


def _import(name: str, origin: str) -> None:
    if name in _loaded:
        return
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise ValidationError(
            [f"catalogue module '{name}' ({origin}): cannot import: {exc}"]
        ) from exc
    _loaded[name] = origin


def _import_team(item: str, root: Path) -> None:
    if not item.endswith(".py"):
        _import(item, "ini")
        return
    path = (root / item).resolve()
    key = str(path)
    if key in _loaded:
        return
    if not path.is_relative_to(root.resolve()):
        raise ValidationError([f"catalogue module '{item}': outside the project ({root})"])
    if not path.is_file():
        raise ValidationError([f"catalogue module '{item}': no such file under {root}"])
    name = f"drillkit_team_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValidationError([f"catalogue module '{item}': not a Python module"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[key] = "ini"
