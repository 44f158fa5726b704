"""Small helpers to validate declarative YAML input: one problem per line, each with file:path.

The loaders here are the trust boundary for scenario, stack and policy files (DESIGN "Trust
model"): `load_yaml` reads regular files only, of bounded size, as UTF-8, refusing a symlink that
leads outside the project; `parse_yaml` refuses duplicate keys, python tags (safe loader), deep
nesting, many aliases or an alias expansion past a node budget (a "billion laughs" document is
refused from its events, before anything is built), and invisible or control characters. No error
message echoes more than a short excerpt of the file.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import ValidationError
from drillkit.paths import ROOT

MAX_FILE_BYTES = 256 * 1024
"""A declarative file larger than this is refused unread."""
MAX_DEPTH = 32
"""Nesting of mappings and sequences."""
MAX_ALIASES = 64
MAX_NODES = 20_000
"""Nodes of the document with every alias expanded (what a consumer walking it would visit)."""
MAX_SCALAR = 16 * 1024
"""Characters of one scalar (a description is a few hundred)."""
EXCERPT = 40
"""Characters of file content an error message may quote."""

_LoaderBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short, printable repr of file content for an error message (never the whole value)."""
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name[:64], list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def load_yaml(path: Path, allow_outside: bool = False, root: Path = ROOT) -> Any:
    """Parse a YAML file (read by `read_text`) with `parse_yaml`."""
    return parse_yaml(read_text(path, allow_outside, root), path)


def read_text(path: Path, allow_outside: bool = False, root: Path = ROOT) -> str:
    """A declarative file's text; every refusal is a ValidationError naming the file.

    Only a regular file of at most MAX_FILE_BYTES is read (a FIFO, a device, a directory are
    refused without blocking: the file is opened non-blocking and checked with fstat). A symlink
    is followed only to a file inside `root` (the project) or inside the link's own folder, unless
    `allow_outside`."""
    path = Path(path)
    target = path.resolve()
    if path.is_symlink() or target != path.absolute():
        home = path.absolute().parent.resolve()
        if not allow_outside and not (_inside(target, root.resolve()) or _inside(target, home)):
            raise ValidationError([f"{path}: <top>: a symlink to a file outside the project"])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise ValidationError([f"{path}: <top>: cannot read: {exc.strerror}"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(st.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a device"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file"
            )
            raise ValidationError([f"{path}: <top>: {kind}, expected a regular YAML file"])
        if st.st_size > MAX_FILE_BYTES:
            raise ValidationError(
                [f"{path}: <top>: {st.st_size} bytes, larger than the {MAX_FILE_BYTES} allowed"]
            )
        data = os.read(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError([f"{path}: <top>: larger than the {MAX_FILE_BYTES} bytes allowed"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            [f"{path}: <top>: not UTF-8 text (byte {exc.start}: {exc.reason})"]
        ) from None


class _Loader(_LoaderBase):  # type: ignore[misc,valid-type]
    """The safe loader, refusing duplicate keys (the second value would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {excerpt(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _bounded_events(text: str) -> str | None:
    """The first bound the document's event stream breaks (depth, aliases, scalar size), or None.
    Events come from an iterative parser: nothing is composed or built yet."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_LoaderBase):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                return f"more than {MAX_ALIASES} aliases"
        elif isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
            return f"a value of {len(event.value)} characters (at most {MAX_SCALAR})"
    return None


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes visited walking `node` with aliases expanded (memoised per node: linear time)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_NODES + 1  # a cycle counts as unbounded
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo)
            if size > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo) + _expanded_size(v, memo)
            if size > MAX_NODES:
                break
    memo[key] = size
    return size


def _yaml_error(exc: yaml.YAMLError, source: str | Path) -> ValidationError:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "<top>"
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ValidationError([f"{source}: {where}: malformed YAML: {str(problem)[:160]}"])


PYTHON_REPARSE_BYTES = 8 * 1024


def _python_error(text: str) -> yaml.YAMLError | None:
    """The pure-Python parser's error for a small malformed document: it names the line where
    the construct began ('while parsing ...'), the C parser often the line after."""
    if (
        _LoaderBase is yaml.SafeLoader
        or len(text) > PYTHON_REPARSE_BYTES
        or text.count("[") + text.count("{") > 256  # its scanner is slow on deep flow nesting
    ):
        return None
    try:
        for _ in yaml.parse(text, Loader=yaml.SafeLoader):
            pass
    except yaml.YAMLError as exc:
        return exc
    return None


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML text within the bounds above; a refusal names the file and the line."""
    if len(text) > MAX_FILE_BYTES:
        raise ValidationError([f"{source}: <top>: larger than the {MAX_FILE_BYTES} bytes allowed"])
    try:
        bound = _bounded_events(text)
        if bound:
            raise ValidationError([f"{source}: <top>: refused: {bound}"])
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_NODES:
                raise ValidationError(
                    [f"{source}: <top>: refused: expands to more than {MAX_NODES} nodes (aliases)"]
                )
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(_python_error(text) or exc, source) from None
    except RecursionError:
        raise ValidationError([f"{source}: <top>: refused: nested too deeply"]) from None
    p = Problems(source)
    check_text(p, "", data)
    p.raise_if_any()
    return data


_INVISIBLE = {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"}
"""Unicode categories refused in any string: controls, format characters (zero-width, bidi
overrides, BOM), private use, surrogates, line/paragraph separators. Tab and newline are allowed."""


def bad_character(text: str) -> str | None:
    """The first control, invisible or bidi character of `text` as 'U+XXXX NAME', or None."""
    for ch in text:
        if ch in "\t\n\r":
            continue
        if unicodedata.category(ch) in _INVISIBLE:
            return f"U+{ord(ch):04X} {unicodedata.name(ch, 'control')}"
    return None


def check_text(p: Problems, path: str, value: Any) -> None:
    """Refuse invisible characters in every key and string value, and non-finite numbers."""
    if isinstance(value, str):
        bad = bad_character(value)
        if bad:
            p.add(path, f"contains an invisible or control character ({bad})")
    elif isinstance(value, float) and not math.isfinite(value):
        p.add(path, f"must be a finite number, got {value!r}")
    elif isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}".lstrip(".") if isinstance(k, str) else f"{path}[{excerpt(k)}]"
            if isinstance(k, str) and bad_character(k):
                p.add(
                    where[:80],
                    f"key contains an invisible or control character ({bad_character(k)})",
                )
                continue
            check_text(p, where[:120], v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_text(p, f"{path}[{i}]", v)


MAX_UNKNOWN_REPORTED = 5
KEY_SHOWN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,23}")
"""An unknown key is echoed only when it looks like a key name (a short plain word)."""


def check_keys(
    p: Problems, path: str, data: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str]
) -> None:
    """Unknown keys (the first few, each shortened: a key is file content) and missing ones."""
    allowed = list(allowed)
    unknown = [key for key in data if not isinstance(key, str) or key not in allowed]
    for key in unknown[:MAX_UNKNOWN_REPORTED]:
        if isinstance(key, str) and KEY_SHOWN.fullmatch(key):
            where, hint = f"{path}.{key}".lstrip("."), suggest(key, allowed)
        else:  # not a name: file content (a symlinked secret file's line), never echoed
            where, hint = path, f" ({len(str(key))} characters, not shown)"
        p.add(where, f"unknown key{hint}; allowed: {', '.join(allowed)}")
    if len(unknown) > MAX_UNKNOWN_REPORTED:
        p.add(path, f"and {len(unknown) - MAX_UNKNOWN_REPORTED} more unknown keys")
    for key in required:
        if key not in data:
            p.add(f"{path}.{key}".lstrip("."), "missing (required)")


def typed(p: Problems, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
    """True when value has the kind; else records '<path>: expected <what>, got <type>'."""
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _kinds(kind))
    if ok and isinstance(value, float) and not math.isfinite(value):
        p.add(path, f"must be a finite number, got {value!r}")
        return False
    if not ok:
        p.add(path, f"expected {what}, got {type(value).__name__} {excerpt(value)}")
    return ok


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def bounded(p: Problems, path: str, value: float, low: float, high: float, unit: str = "") -> bool:
    """True when low <= value <= high (finite); else records the range."""
    if not (math.isfinite(value) and low <= value <= high):
        p.add(path, f"must be from {low:g}{unit} to {high:g}{unit}, got {excerpt(value)}")
        return False
    return True


_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
MAX_DURATION_S = 24 * 3600.0
"""No duration a drill file names may exceed a day."""
MIN_DURATION_S = 0.001
"""A non-zero duration below a millisecond is a typo (or an attempt to spin a loop)."""


def parse_duration(
    p: Problems,
    path: str,
    value: Any,
    allow_zero: bool = True,
    max_s: float = MAX_DURATION_S,
    min_s: float = MIN_DURATION_S,
) -> float | None:
    """'250ms', '10s', '2min', '1h' -> seconds. A bare number is refused: the unit is required.
    The result is finite, zero (when allowed) or at least `min_s`, and at most `max_s`."""
    if isinstance(value, bool) or not isinstance(value, str):
        p.add(path, f"expected a duration with a unit like '10s' or '250ms', got {excerpt(value)}")
        return None
    text = value.strip()
    if len(text) > 32:
        p.add(path, f"expected a duration with a unit (ms, s, min, h), got {excerpt(value)}")
        return None
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            if not number or not all(c.isascii() for c in number):
                break
            try:
                seconds = float(number) * _UNITS[unit]
            except ValueError:
                break
            if not math.isfinite(seconds):
                break
            if seconds < 0 or (seconds == 0 and not allow_zero):
                p.add(path, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
                return None
            if seconds > max_s:
                p.add(path, f"must be at most {max_s:g} s, got {value!r}")
                return None
            if 0 < seconds < min_s:
                p.add(path, f"must be 0 or at least {min_s * 1000:g} ms, got {value!r}")
                return None
            return seconds
    p.add(path, f"expected a duration with a unit (ms, s, min, h), got {excerpt(value)}")
    return None
