"""Who ran, verified and approves a drill session: the evidence pack's sign-off block.

From `--drill-executor/--drill-verifier/--drill-approver` (or `drillkit finish --executor ...`),
else from a roles file (`--drill-roles FILE`: YAML with the keys executor, verifier, approver),
else the executor is the user who ran the session and the others stay open for a signature.
The plugin saves the resolved roles beside the session's records (`roles.yaml`), where
`drillkit finish` reads them.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import yaml

from drillkit.validate import Problems, load_yaml

ROLES = ("executor", "verifier", "approver")
ROLES_FILE = "roles.yaml"
MAX_LEN = 200


def load_roles(path: Path) -> dict[str, str]:
    """The roles in a YAML file: a mapping with any of executor, verifier, approver (strings)."""
    data = load_yaml(Path(path))
    p = Problems(path)
    out: dict[str, str] = {}
    if not isinstance(data, dict):
        p.add("", "expected a mapping with executor, verifier, approver")
        p.raise_if_any()
    for key, value in (data or {}).items():
        if key not in ROLES:
            p.add(str(key), f"unknown role (expected one of {', '.join(ROLES)})")
        elif not isinstance(value, str) or not value.strip() or len(value) > MAX_LEN:
            p.add(str(key), f"expected a non-empty name of at most {MAX_LEN} characters")
        else:
            out[key] = value.strip()
    p.raise_if_any()
    return out


def resolve_roles(
    given: dict[str, str | None], roles_file: str | Path | None = None, *, default_user: bool = True
) -> dict[str, str]:
    """Options (`given`, empty values ignored) over the roles file; the executor defaults to the
    current user."""
    roles = load_roles(Path(roles_file)) if roles_file else {}
    for key in ROLES:
        value = (given.get(key) or "").strip()
        if value:
            roles[key] = value[:MAX_LEN]
    if default_user and "executor" not in roles:
        roles["executor"] = getpass.getuser()
    return roles


def save_roles(folder: Path, roles: dict[str, str]) -> Path:
    path = Path(folder) / ROLES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: roles[k] for k in ROLES if k in roles}), encoding="utf-8")
    return path


def saved_roles(folder: Path) -> dict[str, str]:
    """The roles the plugin saved for a session, or {}."""
    path = Path(folder) / ROLES_FILE
    return load_roles(path) if path.is_file() else {}


__all__ = ["ROLES", "ROLES_FILE", "load_roles", "resolve_roles", "save_roles", "saved_roles"]
