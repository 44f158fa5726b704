"""The drill options: `--drill-*` on the command line, `drill_*` in the ini file (the command line
wins), and the objectives policy file, resolved once into a frozen `RunConfig`.

`add_options(parser)` registers them (the plugin's `pytest_addoption`); `run_config(config)` is the
resolved config, computed once per session; `scenario_paths(config)` the scenario files to run;
`catalog_modules(config)` the team catalogue modules to load (`--drill-catalog`, repeatable, and
the `drillkit_catalog` ini key, one module per line: a dotted name or a .py path relative to the
rootdir).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from drillkit.core.runner import RunConfig, new_run_id
from drillkit.core.scenario import discover
from drillkit.errors import ValidationError
from drillkit.stack import engines
from drillkit.stack.engines import Endpoint
from drillkit.validate import Problems, load_yaml, parse_duration

OPTIONS: list[tuple[str, str, Any, str]] = [
    # (name, type, default, help)
    ("scenarios", "string", "scenarios", "scenario file or folder (default: scenarios/)"),
    ("select", "string", "", "comma-separated scenario ids to run (default: all found)"),
    ("stack", "string", "", "stack file (default: stacks/reference.yaml)"),
    (
        "keep-on-failure",
        "bool",
        False,
        "keep a failed drill's stack for debugging (make clean removes it)",
    ),
    ("probe-interval", "string", "100ms", "probe interval (sub-second)"),
    ("k", "string", "5", "consecutive passing probes that mark recovery"),
    (
        "steady-k",
        "string",
        "5",
        "the steady-state window ends once every probe passed this many times in it (the "
        "scenario's duration is the upper bound); 0: always the whole window",
    ),
    (
        "evidence-k",
        "string",
        "10",
        "the observation window ends once every probe passed this many times since recovery "
        "and every settle condition holds (the scenario's observe is the upper bound); 0: always "
        "the whole window",
    ),
    (
        "foreground-teardown",
        "bool",
        False,
        "tear each drill's stack down before the next starts (default: in the background once "
        "the verdict is recorded, joined before the session ends)",
    ),
    (
        "data-on-disk",
        "bool",
        False,
        "keep the databases' data directories on Docker volumes (default: on a tmpfs of the "
        "run's when the harness is root on the engine's host and the seed scale is small)",
    ),
    ("objectives", "string", "", "policy file overriding scenario objectives"),
    ("seed-scale", "string", "small", "seed data size: small, medium, large"),
    ("results", "string", "reports", "where results, Allure results and evidence packs go"),
    ("min-free-disk", "string", "2", "GiB of free disk required before injecting"),
    (
        "allow-host-exec",
        "bool",
        False,
        "let scenarios run host-exec steps (a shell on this host, as the harness user, with a "
        "minimal environment); off by default: such a scenario is refused before anything starts",
    ),
    (
        "sabotage",
        "string",
        "",
        "the project's folder of sabotaged twins (relative to the rootdir): their scenarios run "
        "too, and only theirs may declare expect: {outcome: fail} (default: none)",
    ),
    (
        "baseline-backup",
        "string",
        "auto",
        "full baseline backup: auto (when the runbook restores one), always, never",
    ),
    (
        "webhook",
        "string",
        "",
        "POST a Slack-compatible JSON message here when a drill breaches or breaks (off by default)",
    ),
    ("executor", "string", "", "who ran the drills (evidence pack sign-off; default: the user)"),
    ("verifier", "string", "", "who verified the results (evidence pack sign-off)"),
    ("approver", "string", "", "who approves the record (evidence pack sign-off)"),
    ("roles", "string", "", "YAML file with executor, verifier, approver (options win)"),
]
"""The single-valued options; each is `--drill-<name>` and the ini key `drill_<name>`."""

CATALOG_INI = "drillkit_catalog"
ENGINES_INI = "drillkit_engines"
SESSION_KEY = "drillkit_session"
"""The xdist workerinput key: the controller's session id, so every worker writes one run."""


def add_options(parser: pytest.Parser) -> None:
    """Register every `--drill-*` option and its ini twin."""
    group = parser.getgroup("drillkit", "drillkit chaos drills")
    group.addoption(
        "--drill-objective",
        action="append",
        default=None,
        help="override an objective: [scenario:]rto|rpo|detection=DURATION (repeatable)",
    )
    parser.addini(
        "drill_objective", "objective overrides, one per line", type="linelist", default=[]
    )
    group.addoption(
        "--drill-catalog",
        action="append",
        default=None,
        help="a team catalogue module to load: dotted name or .py path (repeatable)",
    )
    parser.addini(
        CATALOG_INI,
        "team catalogue modules (faults, steps, checks), one per line: "
        "a dotted module name or a .py path relative to the rootdir",
        type="linelist",
        default=[],
    )
    group.addoption(
        "--drill-engines",
        default=None,
        help="Docker engines, comma-separated: unix:///PATH, tcp://HOST:PORT [tls=DIR], "
        "ssh://USER@HOST; under pytest-xdist worker gwI runs its drills on engine I mod N",
    )
    parser.addini(
        ENGINES_INI,
        "Docker engines, one per line (URL [tls=DIR]); --drill-engines wins",
        type="linelist",
        default=[],
    )
    for name, kind, default, help_ in OPTIONS:
        ini = "drill_" + name.replace("-", "_")
        if kind == "bool":
            group.addoption(f"--drill-{name}", action="store_true", default=None, help=help_)
        else:
            group.addoption(f"--drill-{name}", default=None, help=help_)
        parser.addini(ini, help_, type="bool" if kind == "bool" else "string", default=default)


def opt(config: pytest.Config, name: str) -> Any:
    """The value of `--drill-<name>`, else of the ini key `drill_<name>`."""
    value = config.getoption(f"--drill-{name}")
    if value is None:
        value = config.getini("drill_" + name.replace("-", "_"))
    return value


def stack_path(config: pytest.Config) -> Path | None:
    """The stack file (`--drill-stack`, ini `drill_stack`), relative to the rootdir; None: the
    reference stack."""
    value = opt(config, "stack")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(config.rootpath) / path


def sabotage_dir(config: pytest.Config) -> Path | None:
    """The project's sabotaged twins (`--drill-sabotage`, ini `drill_sabotage`), relative to the
    rootdir: the operator's word that these files are twins whose expected failure is honoured
    (a scenario file cannot say so of itself); None: only drillkit's own scenarios/sabotage."""
    value = opt(config, "sabotage")
    if not value:
        return None
    path = Path(value)
    path = path if path.is_absolute() else Path(config.rootpath) / path
    if not path.is_dir():
        raise pytest.UsageError(f"--drill-sabotage / drill_sabotage: {value}: no such folder")
    return path


def allow_host_exec(config: pytest.Config) -> bool:
    """Whether the operator opted in to host-exec (`--drill-allow-host-exec`, ini
    `drill_allow_host_exec`; off by default)."""
    return bool(opt(config, "allow-host-exec"))


def catalog_modules(config: pytest.Config) -> list[str]:
    """Team catalogue modules: the ini key's lines, then each `--drill-catalog`."""
    listed = [*config.getini(CATALOG_INI), *(config.getoption("--drill-catalog") or [])]
    return [m.strip() for m in listed if m.strip()]


def engine_endpoints(config: pytest.Config) -> list[Endpoint]:
    """The configured Docker engines (`--drill-engines`, else the `drillkit_engines` lines);
    empty: DOCKER_HOST or the default socket, as without the option."""
    given = config.getoption("--drill-engines")
    return engines.parse(given if given is not None else config.getini(ENGINES_INI))


def load_policy(path: Path) -> dict[str, dict[str, float]]:
    """Objectives policy file: {objectives: {'*': {rto: 30s}, 'db-kill-restart': {rpo: 0s}}}."""
    data = load_yaml(path)
    p = Problems(path)
    out: dict[str, dict[str, float]] = {}
    table = data.get("objectives") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        p.add("objectives", "expected a mapping of scenario id (or '*') to objectives")
        p.raise_if_any()
    for sid, objs in (table or {}).items():
        if not isinstance(objs, dict):
            p.add(f"objectives.{sid}", "expected a mapping with rto, rpo, detection")
            continue
        for key, value in objs.items():
            if key not in ("rto", "rpo", "detection"):
                p.add(f"objectives.{sid}.{key}", "unknown objective (rto, rpo, detection)")
                continue
            seconds = parse_duration(p, f"objectives.{sid}.{key}", value)
            if seconds is not None:
                out.setdefault(str(sid), {})[f"{key}_s"] = seconds
    p.raise_if_any()
    return out


def parse_objective_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """'rto=10s' (every scenario) or 'db-kill-restart:rpo=0s' -> {scenario or '*': {'rto_s': 10}}."""
    p = Problems("--drill-objective")
    out: dict[str, dict[str, float]] = {}
    for item in items:
        scope, _, assignment = item.rpartition(":") if ":" in item else ("*", "", item)
        key, eq, value = assignment.partition("=")
        if not eq or key not in ("rto", "rpo", "detection"):
            p.add(item, "expected [scenario:]rto|rpo|detection=DURATION, e.g. rto=10s")
            continue
        seconds = parse_duration(p, item, value)
        if seconds is not None:
            out.setdefault(scope or "*", {})[f"{key}_s"] = seconds
    p.raise_if_any()
    return out


def resolve_config(config: pytest.Config) -> RunConfig:
    """The options, ini keys and policy file as one RunConfig (a new run id each call)."""
    p = Problems("command line / ini")
    interval = parse_duration(
        p, "--drill-probe-interval", opt(config, "probe-interval"), allow_zero=False
    )
    p.raise_if_any()
    assert interval is not None
    if interval >= 1:
        raise ValidationError([f"--drill-probe-interval: must be sub-second, got {interval:g} s"])
    results = Path(opt(config, "results"))
    if not results.is_absolute():
        results = Path(config.rootpath) / results
    worker_input = getattr(config, "workerinput", {})  # an xdist worker: the controller's
    run_id = (
        os.environ.get("DRILLKIT_SESSION")
        or worker_input.get(SESSION_KEY)
        or time.strftime("%Y%m%d-%H%M%S-") + new_run_id()[:4]
    )
    policy = opt(config, "objectives")
    return RunConfig(
        results_dir=results / "runs" / run_id,
        run_root=Path(config.rootpath) / ".run",
        project_dir=Path(config.rootpath),
        stack_file=stack_path(config),
        probe_interval_s=interval,
        k=int(_number("--drill-k", opt(config, "k"), 1, 100, whole=True)),
        steady_k=int(_number("--drill-steady-k", opt(config, "steady-k"), 0, 1000, whole=True)),
        evidence_k=int(
            _number("--drill-evidence-k", opt(config, "evidence-k"), 0, 1000, whole=True)
        ),
        background_teardown=not opt(config, "foreground-teardown"),
        data_in_memory=not opt(config, "data-on-disk"),
        keep_on_failure=bool(opt(config, "keep-on-failure")),
        seed_scale=opt(config, "seed-scale"),
        objectives=_merge(
            load_policy(Path(policy)) if policy else {},
            parse_objective_overrides(
                config.getoption("--drill-objective") or config.getini("drill_objective")
            ),
        ),
        min_free_disk_gib=_number("--drill-min-free-disk", opt(config, "min-free-disk"), 0, 1024),
        baseline_backup=_choice(
            "--drill-baseline-backup", opt(config, "baseline-backup"), ("auto", "always", "never")
        ),
    )


def _number(option: str, value: Any, low: float, high: float, whole: bool = False) -> float:
    """A numeric option, finite and within [low, high] (a whole number when `whole`)."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high) or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise ValidationError(
            [f"{option}: expected {kind} from {low:g} to {high:g}, got {value!r}"]
        )
    return number


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError([f"{option}: expected one of {', '.join(choices)}, got {value!r}"])
    return value


def _merge(*tables: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Later tables win: the policy file, then the command line."""
    out: dict[str, dict[str, float]] = {}
    for table in tables:
        for scope, objs in table.items():
            out.setdefault(scope, {}).update(objs)
    return out


_CONFIG = pytest.StashKey[RunConfig]()


def run_config(config: pytest.Config) -> RunConfig:
    """The session's RunConfig, resolved on first use and kept on the pytest config."""
    if _CONFIG not in config.stash:
        config.stash[_CONFIG] = resolve_config(config)
    return config.stash[_CONFIG]


def scenario_paths(config: pytest.Config) -> list[Path]:
    """The scenario files to run: `--drill-scenarios` (a file or a folder), narrowed by
    `--drill-select` (ids; an unknown id is a usage error)."""
    root = Path(opt(config, "scenarios"))
    if not root.is_absolute():
        root = Path(config.rootpath) / root
    paths = discover(root) if root.is_dir() else [root]
    twins = sabotage_dir(config)
    if twins is not None and root.is_dir() and twins.resolve() != root.resolve():
        paths += discover(twins)
    select = [s for s in str(opt(config, "select") or "").split(",") if s]
    if select:
        known = {p.stem for p in paths}
        unknown = [s for s in select if s not in known]
        if unknown:
            raise pytest.UsageError(
                f"--drill-select: unknown scenario(s) {unknown}; known: {sorted(known)}"
            )
        paths = [p for p in paths if p.stem in select]
    return paths


__all__ = [
    "CATALOG_INI",
    "ENGINES_INI",
    "OPTIONS",
    "SESSION_KEY",
    "add_options",
    "allow_host_exec",
    "catalog_modules",
    "engine_endpoints",
    "load_policy",
    "opt",
    "parse_objective_overrides",
    "resolve_config",
    "run_config",
    "sabotage_dir",
    "scenario_paths",
    "stack_path",
]
