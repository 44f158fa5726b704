"""A hostile-input corpus for the scenario, stack-file and policy loaders (DESIGN "Trust model").

Every input ends quickly (a generous 5 s alarm per input, not a speed assertion), in bounded
memory (tracemalloc), with a ValidationError whose every line is `file: path: reason`, short, and
free of the file's content, unless it is meaningful, in which case it is accepted."""

from __future__ import annotations

import os
import re
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillkit.core.scenario import load_scenario, parse_scenario_text
from drillkit.errors import ValidationError
from drillkit.options import load_policy
from drillkit.stack.spec import load_stack, parse_stack
from drillkit.validate import MAX_FILE_BYTES, load_yaml, parse_yaml

GOOD = """\
id: hostile
title: hostile input
source: {runbook: "000", section: "Procedure 1"}
severity: P1
failure_class: database-failure
tags: [nightly]
objectives: {rto: 10s, rpo: 0s, detection: 2s}
fault: {action: kill-postmaster, with: {service: primary}}
recovery:
  - {name: restart, action: restart-service, with: {service: primary}, timeout: 30s}
"""
SECRET = "s3cr3t-shadow-line-9f8e7d"
LINE = re.compile(r"^(?P<src>[^:]+(?::[^ ]+)?): (?P<path>\S[^:]*): (?P<reason>.+)$")


class Overran(Exception):
    pass


@contextmanager
def bounded(seconds: int = 5, max_mib: int = 64) -> Iterator[None]:
    """Fail if the block runs past `seconds` (SIGALRM) or allocates past `max_mib`."""

    def alarm(signum: int, frame: Any) -> None:
        raise Overran(f"input still being processed after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
        assert peak < max_mib * 2**20, f"peak memory {peak / 2**20:.0f} MiB"
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def refused(fn: Callable[[], Any], source: str) -> list[str]:
    """The problems fn raises: each a file: path: reason line, short, naming `source`."""
    with bounded(), pytest.raises(ValidationError) as exc:
        fn()
    problems = exc.value.problems
    assert problems
    for line in problems:
        assert line.startswith(source + ": "), line
        rest = line[len(source) + 2 :]
        assert ": " in rest and rest.split(": ", 1)[1].strip(), line
        assert len(line) < 600, line
        assert SECRET not in line, line
    return problems


def edit(text: str = GOOD, **changes: Any) -> str:
    data = yaml.safe_load(text)
    for path, value in changes.items():
        node = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value
    return yaml.safe_dump(data, allow_unicode=True)


def test_the_good_scenario_is_accepted() -> None:
    with bounded():
        assert parse_scenario_text(GOOD).id == "hostile"


# ----- files: kinds, sizes, encodings, symlinks --------------------------------------------------


@pytest.mark.parametrize("loader", [load_scenario, load_stack, load_policy, load_yaml])
def test_file_kinds_are_refused(tmp_path: Path, loader: Callable[[Path], Any]) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block without O_NONBLOCK
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: caf\xe9\n".encode("latin-1"))
    huge = tmp_path / "huge.yaml"
    huge.write_text("a: b\n" * (MAX_FILE_BYTES // 5 + 10))
    missing = tmp_path / "missing.yaml"
    expected = {
        fifo: "a FIFO",
        folder: "a directory",
        binary: "not UTF-8",
        latin: "not UTF-8",
        huge: "larger than",
        missing: "cannot read",
        Path("/dev/zero"): "a device",
    }
    for path, reason in expected.items():
        problems = refused(lambda: loader(path), str(path))  # noqa: B023
        assert reason in problems[0], problems


def test_empty_and_scalar_files_are_refused_as_not_a_mapping(tmp_path: Path) -> None:
    for i, text in enumerate(["", "   \n", "just text", "- a\n- b\n", "~"]):
        path = tmp_path / f"s{i}.yaml"
        path.write_text(text)
        assert "expected a mapping" in refused(lambda: load_scenario(path), str(path))[0]  # noqa: B023
        assert "expected a mapping" in refused(lambda: load_stack(path), str(path))[0]  # noqa: B023


def test_a_symlink_out_of_the_project_is_refused_without_echoing_the_target(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    shadow = outside / "shadow"
    shadow.write_text("".join(f"user{i}: {SECRET}:19000:0:99999:7:::\n" for i in range(50)))
    project = tmp_path / "project"
    project.mkdir()
    link = project / "hostile.yaml"
    link.symlink_to(shadow)
    for loader in (load_scenario, load_stack, load_policy):
        assert "symlink" in refused(lambda: loader(link), str(link))[0]  # noqa: B023
    zero = project / "zero.yaml"
    zero.symlink_to("/dev/zero")
    assert "symlink" in refused(lambda: load_scenario(zero), str(zero))[0]


def test_shadow_content_read_directly_is_not_echoed(tmp_path: Path) -> None:
    shadow = tmp_path / "hostile.yaml"
    shadow.write_text("".join(f"user{i}{SECRET}: x\n" for i in range(50)))
    problems = refused(lambda: load_scenario(shadow), str(shadow))
    assert len(problems) <= 16, problems  # a few unknown keys, a count, the missing keys


def test_a_symlink_inside_the_project_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "hostile.yaml").write_text(GOOD)
    link = tmp_path / "hostile.yaml"
    link.symlink_to(real / "hostile.yaml")  # the link's own folder holds the target
    with bounded():
        assert load_scenario(link).id == "hostile"


# ----- YAML structure: tags, duplicate keys, aliases, depth ---------------------------------------

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
FEW_ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 8)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)
)
STRUCTURE = {
    "python-tag": ("!!python/object/apply:os.system ['id']\n", "constructor"),
    "python-name": ("a: !!python/name:os.system\n", "constructor"),
    "duplicate-top": (GOOD + "id: again\n", "duplicate key"),
    "duplicate-nested": (GOOD.replace("rto: 10s", "rto: 10s, rto: 1h"), "duplicate key"),
    "billion-laughs": (BILLION_LAUGHS, "aliases"),
    "alias-expansion": (FEW_ALIAS_BOMB, "expands to more than"),
    "deep-flow": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
    "deep-block": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n", "nest"),
    "deep-mapping": ("a: " + "{b: " * 300 + "c" + "}" * 300 + "\n", "nest"),
    "huge-scalar": ("title: " + "x" * 100_000 + "\n", "characters"),
    "unclosed": ("id: [unclosed\n", "malformed YAML"),
    "tab-indent": ("a:\n\tb: c\n", "malformed YAML"),
    "non-scalar-key": ("? [a, b]\n: c\n", ""),
}


@pytest.mark.parametrize("name", list(STRUCTURE))
def test_hostile_structures_are_refused(name: str) -> None:
    text, reason = STRUCTURE[name]
    for parse in (
        lambda: parse_scenario_text(text, "h.yaml"),
        lambda: parse_stack(parse_yaml(text, "h.yaml"), "h.yaml"),
    ):
        problems = refused(parse, "h.yaml")
        assert reason in " ".join(problems), problems


def test_an_oversized_string_is_refused_before_parsing() -> None:
    text = "a: b\n" * (MAX_FILE_BYTES // 4)
    assert "larger than" in refused(lambda: parse_yaml(text, "h.yaml"), "h.yaml")[0]


# ----- numbers: NaN, infinities, huge and tiny values in every numeric field ----------------------

NUMERIC_FIELDS = {
    "objectives__rto": ["nan s", "infs", "1e308s", "-1s", "1e-9ms", ".inf", 1e308],
    "objectives__rpo": ["nans", "1e308h", "-0.5s"],
    "objectives__detection": ["infms", "1e300min"],
    "observe": ["1e308s", "nan s", "1e-9ms", "11min"],
    "settle": ["infs", "2h"],
    "max_duration": ["0s", "1e308s", "2h", "nan s"],
    "steady_state": [{"duration": "1e308s"}, {"duration": "0s"}, {"duration": "1e-9ms"}],
    "probes": [
        {"interval": "1e-9ms"},
        {"interval": "0.001ms"},
        {"timeout": "1e308s"},
        {"timeout": "2min"},
        {"degraded_after": "nan s"},
        {"k": 0.5},
        {"k": 0},
        {"k": 1e308},
        {"k": float("inf")},
        {"k": 2.5},
        {"writer_rate": float("nan")},
        {"writer_rate": float("inf")},
        {"writer_rate": 1e308},
        {"writer_rate": -3},
    ],
    "recovery__0__timeout": ["1e308s", "0s", "nan s", "1e-9ms", "2h"],
}


def numeric_cases() -> Iterator[tuple[str, Any]]:
    for key, values in NUMERIC_FIELDS.items():
        for value in values:
            yield key, value


@pytest.mark.parametrize(("key", "value"), list(numeric_cases()), ids=str)
def test_numbers_must_be_finite_and_sane(key: str, value: Any) -> None:
    text = edit(**{key: value})
    refused(lambda: parse_scenario_text(text, "h.yaml"), "h.yaml")


STEP_NUMBERS = [
    ({"action": "block-port", "with": {"service": "primary", "port": 0, "duration": "1s"}}),
    ({"action": "block-port", "with": {"service": "primary", "port": 70000, "duration": "1s"}}),
    ({"action": "block-port", "with": {"service": "primary", "port": 2**70, "duration": "1s"}}),
    ({"action": "block-port", "with": {"service": "primary", "port": 1e308, "duration": "1s"}}),
    ({"action": "block-port", "with": {"service": "primary", "port": 5432, "duration": "1e308s"}}),
    ({"action": "pause-service", "with": {"service": "primary", "duration": "nan s"}}),
    ({"action": "hold", "with": {"duration": "1e-9ms"}}),
    ({"action": "corrupt-page", "with": {"block": -1}}),
    ({"action": "corrupt-page", "with": {"block": 10**12}}),
    ({"action": "exhaust-connections", "with": {"limit": 10**9}}),
    ({"action": "toxic-add", "with": {"type": "latency", "toxicity": float("nan")}}),
    ({"action": "toxic-add", "with": {"type": "latency", "toxicity": 2}}),
    ({"action": "toxic-add", "with": {"type": "latency", "latency": -5}}),
    ({"action": "toxic-add", "with": {"type": "latency", "latency": 10**12}}),
    ({"action": "fill-disk", "with": {"leave_bytes": -1}}),
    ({"action": "issue-tokens", "with": {"users": 0}}),
    ({"action": "service-exec", "with": {"service": "app", "command": "true", "expect_exit": 256}}),
]


@pytest.mark.parametrize("fault", STEP_NUMBERS, ids=str)
def test_step_numbers_are_bounded(fault: dict[str, Any]) -> None:
    text = edit(fault=fault)
    problems = refused(lambda: parse_scenario_text(text, "h.yaml"), "h.yaml")
    assert any(": fault.with." in p for p in problems), problems


@pytest.mark.parametrize(
    "check",
    [
        {"check": "performance-baseline", "with": {"factor": 0.5}},
        {"check": "performance-baseline", "with": {"factor": float("inf")}},
        {"check": "performance-baseline", "with": {"floor_ms": float("nan")}},
        {"check": "connection-count", "with": {"max_used_fraction": 0}},
        {"check": "app-fails-fast", "with": {"max_s": 1e308}},
        {"check": "no-error-spike", "with": {"max_errors": -1}},
        {"check": "replica-lag-within", "with": {"max_lag": "1e308s"}},
    ],
    ids=str,
)
def test_check_numbers_are_bounded(check: dict[str, Any]) -> None:
    base = ["all-systems-responding", "critical-journeys", "recovered-within-rto"]
    text = edit(checklist=[*base, "database-healthy", check])
    problems = refused(lambda: parse_scenario_text(text, "h.yaml"), "h.yaml")
    assert any(": checklist[4].with." in p for p in problems), problems


# ----- text: fullwidth, zero-width, bidi, control characters --------------------------------------

TEXT_CASES = {
    "fullwidth-id": {"id": "ｈｏｓｔｉｌｅ"},
    "fullwidth-tag": {"tags": ["ｘｆａｉｌ"]},
    "fullwidth-service": {
        "fault": {"action": "kill-postmaster", "with": {"service": "ｐｒｉｍａｒｙ"}}
    },
    "fullwidth-action": {"fault": {"action": "ｋｉｌｌ-postmaster"}},
    "zero-width-id": {"id": "hos\u200btile"},
    "zero-width-title": {"title": "fine\u200b"},
    "bidi-title": {"title": "restore \u202eevil\u202c"},
    "bidi-step-name": {"recovery": [{"name": "ok\u2066x", "action": "reload-app"}]},
    "bom-key": {"\ufefftitle": "x"},
    "control-char": {"title": "bell\x07"},
    "zero-width-tag": {"tags": ["night\u200cly"]},
    "fullwidth-duration": {"objectives": {"rto": "１０s", "rpo": "0s"}},
}


@pytest.mark.parametrize("name", list(TEXT_CASES))
def test_invisible_and_lookalike_text_is_refused(name: str) -> None:
    text = edit(**TEXT_CASES[name])
    refused(lambda: parse_scenario_text(text, "h.yaml"), "h.yaml")


def test_meaningful_unicode_prose_is_accepted() -> None:
    text = edit(title="Ｐ０ drill — café, 日本語", description="Ünïcödé prose is fine")
    with bounded():
        assert parse_scenario_text(text).title.startswith("Ｐ０")


# ----- injection strings in every identifier field -----------------------------------------------

INJECTIONS = [
    "orders; DROP TABLE orders",
    "orders' OR '1'='1",
    'orders"; DROP TABLE x; --',
    "$(touch /tmp/pwned)",
    "`id`",
    "../../etc/passwd",
    "orders\nDROP",
    "ORDERS",
    "",
    "a" * 100,
]
IDENTIFIER_FIELDS = [
    ("fault", {"action": "corrupt-page"}, "table"),
    ("fault", {"action": "hold-table-lock"}, "table"),
    ("fault", {"action": "hold-table-lock"}, "mode"),
    ("fault", {"action": "exhaust-connections"}, "role"),
    ("fault", {"action": "toxic-add", "with": {"type": "latency"}}, "name"),
    ("fault", {"action": "toxic-add", "with": {"type": "latency"}}, "stream"),
    ("fault", {"action": "service-exec", "with": {"service": "app", "command": "true"}}, "user"),
    ("fault", {"action": "kill-postmaster"}, "service"),
    ("recovery", {"action": "terminate-sessions"}, "role"),
    ("recovery", {"action": "terminate-sessions"}, "started_before"),
    ("recovery", {"action": "terminate-idle-sessions"}, "role"),
    ("recovery", {"action": "rotate-db-password"}, "role"),
    ("recovery", {"action": "preserve-forensics"}, "table"),
]


@pytest.mark.parametrize(("where", "step", "field"), IDENTIFIER_FIELDS, ids=str)
def test_injection_strings_in_identifier_fields_are_refused(
    where: str, step: dict[str, Any], field: str
) -> None:
    for bad in INJECTIONS:
        if field == "name" and bad == "ORDERS":
            continue  # a plain toxic name: meaningful, accepted
        raw = {**step, "with": {**step.get("with", {}), field: bad}}
        value = raw if where == "fault" else [raw]
        text = edit(**{where: value})
        problems = refused(lambda: parse_scenario_text(text, "h.yaml"), "h.yaml")  # noqa: B023
        assert any(f".with.{field}:" in p for p in problems), (bad, problems)


# ----- stack files: path traversal and malformed settings -----------------------------------------

STACK = {"name": "s", "database": {"image": "postgres"}, "app": {"image": "app"}}
STACK_CASES = {
    "db-image-traversal": {"database": {"image": "../../etc"}},
    "db-image-absolute": {"database": {"image": "/etc/passwd"}},
    "app-image-traversal": {"app": {"image": "app/../../../root"}},
    "app-image-dotdot": {"app": {"image": ".."}},
    "app-image-shell": {"app": {"image": "app; rm -rf /"}},
    "app-image-fullwidth": {"app": {"image": "ａｐｐ"}},
    "secrets-dir-traversal": {"app": {"image": "app", "secrets_dir": "/run/../etc"}},
    "config-dir-relative": {"app": {"image": "app", "config_dir": "etc/drillkit"}},
    "env-name": {"app": {"image": "app", "env": {"A=B; rm": "x"}}},
    "port-huge": {"app": {"image": "app", "port": 10**20}},
    "port-float": {"app": {"image": "app", "port": float("inf")}},
    "health-space": {"app": {"image": "app", "health": "/x y"}},
}


@pytest.mark.parametrize("name", list(STACK_CASES))
def test_hostile_stack_files_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump({**STACK, **STACK_CASES[name]}, allow_unicode=True))
    refused(lambda: load_stack(path), str(path))


def test_an_images_folder_symlink_out_is_refused(tmp_path: Path) -> None:
    from drillkit.stack.spec import check_image
    from drillkit.validate import Problems

    images = tmp_path / "images"
    images.mkdir()
    (images / "evil").symlink_to("/etc")
    p = Problems("stack.yaml")
    check_image(p, "app.image", "evil", images)
    assert p.items and "outside" in p.items[0]
    p = Problems("stack.yaml")
    check_image(p, "app.image", "drillkit/app:1.0", images)
    assert not p.items


# ----- policy files and options -------------------------------------------------------------------

POLICY_CASES = [
    {"objectives": {"*": {"rto": "nan s"}}},
    {"objectives": {"*": {"rto": "1e308s"}}},
    {"objectives": {"*": {"rpo": "-1s"}}},
    {"objectives": {"db-kill-restart": {"detection": ".inf"}}},
    {"objectives": {"*": {"rto": "1e-9ms"}}},
    {"objectives": {"*": {"rto": "10s", "rto\u200b": "1s"}}},
    {"objectives": []},
]


@pytest.mark.parametrize("policy", POLICY_CASES, ids=str)
def test_hostile_policy_files_are_refused(tmp_path: Path, policy: dict[str, Any]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, allow_unicode=True))
    refused(lambda: load_policy(path), str(path))


def test_numeric_options_are_bounded() -> None:
    from drillkit.options import _number

    for value in ("0", "-1", "nan", "inf", "1e308", "2.5", "abc"):
        with pytest.raises(ValidationError, match="--drill-k"):
            _number("--drill-k", value, 1, 100, whole=True)
    assert _number("--drill-k", "5", 1, 100, whole=True) == 5
