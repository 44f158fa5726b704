"""Small helpers to validate declarative YAML input: one problem per line, each with file:path."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import ValidationError


class Problems:
    """Collects validation problems for one file; `raise_if_any` raises them all at once."""

    def __init__(self, source: str | Path) -> None:
        self.source = str(source)
        self.items: list[str] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(f"{self.source}: {path or '<top>'}: {reason}")

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_yaml(path: Path) -> Any:
    """Parse a YAML file; malformed YAML is a ValidationError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError([f"{path}: cannot read: {exc}"]) from exc
    return parse_yaml(text, path)


def parse_yaml(text: str, source: str | Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationError([f"{source}: {where}: malformed YAML: {problem}"]) from exc


def check_keys(
    p: Problems, path: str, data: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str]
) -> None:
    allowed = list(allowed)
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            p.add(
                f"{path}.{key}".lstrip("."),
                f"unknown key{suggest(str(key), allowed)}; allowed: {', '.join(allowed)}",
            )
    for key in required:
        if key not in data:
            p.add(f"{path}.{key}".lstrip("."), "missing (required)")


def typed(p: Problems, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
    """True when value has the kind; else records '<path>: expected <what>, got <type>'."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _kinds(kind))
    if not ok:
        p.add(path, f"expected {what}, got {type(value).__name__} {value!r}"[:200])
    return ok


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}


def parse_duration(p: Problems, path: str, value: Any, allow_zero: bool = True) -> float | None:
    """'250ms', '10s', '2min', '1h' -> seconds. A bare number is refused: the unit is required."""
    if isinstance(value, bool) or not isinstance(value, str):
        p.add(path, f"expected a duration with a unit like '10s' or '250ms', got {value!r}")
        return None
    text = value.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            try:
                seconds = float(number) * _UNITS[unit]
            except ValueError:
                break
            if seconds != seconds or seconds in (float("inf"), float("-inf")):
                break
            if seconds < 0 or (seconds == 0 and not allow_zero):
                p.add(path, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
                return None
            return seconds
    p.add(path, f"expected a duration with a unit (ms, s, min, h), got {value!r}")
    return None
