"""The parameters of a step or check in a scenario file, checked against the entry's signature
(drillkit.core.registry.Param): each value by its type, within its bounds, services by name."""

from __future__ import annotations

from typing import Any

from drillkit.core.registry import Duration, Service
from drillkit.core.trust import (
    DEFAULT_FLOAT_BOUNDS,
    DEFAULT_INT_BOUNDS,
    FLOAT_BOUNDS,
    INT_BOUNDS,
    bounded,
    string_ok,
)
from drillkit.validate import Problems, excerpt, parse_duration, suggest, typed


def parse_params(
    p: Problems, path: str, entry_params: dict[str, Any], raw: Any, services: tuple[str, ...]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if raw is None:
        raw = {}
    if not typed(p, path, raw, dict, "a mapping of parameters"):
        return out
    for key, value in raw.items():
        if key not in entry_params:
            p.add(
                f"{path}.{key}",
                f"unknown parameter{suggest(str(key), entry_params)}; "
                f"takes: {', '.join(entry_params) or 'no parameters'}",
            )
            continue
        value_ok, parsed = _param_value(p, f"{path}.{key}", key, entry_params[key], value, services)
        if value_ok:
            out[key] = parsed
    for key, param in entry_params.items():
        if param.required and key not in raw:
            p.add(f"{path}.{key}", f"missing (required {param.type_name})")
    return out


def _param_value(
    p: Problems, where: str, key: str, param: Any, value: Any, services: tuple[str, ...]
) -> tuple[bool, Any]:
    """One parameter's value checked against its type and rules: (ok, the value to use)."""
    out: dict[str, Any] = {}
    if param.type is Duration:
        d = parse_duration(p, where, value)
        if d is not None:
            out[key] = Duration(d)
    elif param.type is Service:
        if typed(p, where, value, str, "a service name"):
            if value not in services:
                p.add(
                    where,
                    f"unknown service {excerpt(value)}{suggest(value, services)}; "
                    f"the stack has: {', '.join(services)}",
                )
            else:
                out[key] = Service(value)
    elif param.type is str:
        if typed(p, where, value, str, param.type_name) and string_ok(p, where, key, value):
            out[key] = value
    elif param.type is bool:
        if typed(p, where, value, bool, param.type_name):
            out[key] = value
    elif param.type is int:
        low, high = INT_BOUNDS.get(key, DEFAULT_INT_BOUNDS)
        if typed(p, where, value, int, param.type_name) and bounded(p, where, value, low, high):
            out[key] = value
    elif param.type is float:
        lo, hi = FLOAT_BOUNDS.get(key, DEFAULT_FLOAT_BOUNDS)
        if typed(p, where, value, (int, float), "a number") and bounded(p, where, value, lo, hi):
            out[key] = float(value)
    else:  # list[str]
        if typed(p, where, value, list, "a list of strings"):
            ok = all(typed(p, f"{where}[{i}]", v, str, "a string") for i, v in enumerate(value))
            if ok and key in ("services", "order", "hosts"):
                for i, v in enumerate(value):
                    if v not in services:
                        p.add(
                            f"{where}[{i}]",
                            f"unknown service {excerpt(v)}{suggest(v, services)}",
                        )
            if ok and len(value) > 100:
                p.add(where, f"at most 100 items, got {len(value)}")
            elif ok:
                out[key] = list(value)

    return (key in out, out.get(key))
