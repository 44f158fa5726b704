"""pytest plugin: drills are pytest tests.

Options come in pairs, `--drill-*` on the command line and `drill_*` in the ini file, resolved once
into a frozen RunConfig. Each scenario file becomes one test (`drill_scenario` is parametrised by
the files found), marked with the scenario's tags (nightly, quarterly, ...). The drill itself runs in
the `drill_result` fixture, so a broken environment is a pytest ERROR and a breach a FAILURE.
Reporters (Allure, evidence pack, history) subscribe here; the runner knows none of them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drillkit import catalog
from drillkit.core.events import EventBus, Phase
from drillkit.core.results import DrillResult
from drillkit.core.runner import RunConfig, Runner, new_run_id
from drillkit.core.scenario import Scenario, discover, load_scenario
from drillkit.errors import EnvironmentBroken, ValidationError
from drillkit.paths import ROOT
from drillkit.stack.reaping import reap_orphans
from drillkit.stack.spec import load_stack
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
    ("objectives", "string", "", "policy file overriding scenario objectives"),
    ("seed-scale", "string", "small", "seed data size: small, medium, large"),
    ("results", "string", "reports", "where results, Allure results and evidence packs go"),
    ("min-free-disk", "string", "2", "GiB of free disk required before injecting"),
    (
        "baseline-backup",
        "string",
        "auto",
        "full baseline backup: auto (when the runbook restores one), always, never",
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
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
    for name, kind, default, help_ in OPTIONS:
        ini = "drill_" + name.replace("-", "_")
        if kind == "bool":
            group.addoption(f"--drill-{name}", action="store_true", default=None, help=help_)
        else:
            group.addoption(f"--drill-{name}", default=None, help=help_)
        parser.addini(ini, help_, type="bool" if kind == "bool" else "string", default=default)


def _opt(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"--drill-{name}")
    if value is None:
        value = config.getini("drill_" + name.replace("-", "_"))
    return value


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
    p = Problems("command line / ini")
    interval = parse_duration(
        p, "--drill-probe-interval", _opt(config, "probe-interval"), allow_zero=False
    )
    p.raise_if_any()
    assert interval is not None
    if interval >= 1:
        raise ValidationError([f"--drill-probe-interval: must be sub-second, got {interval:g} s"])
    results = Path(_opt(config, "results"))
    if not results.is_absolute():
        results = Path(config.rootpath) / results
    run_id = (
        os.environ.get("DRILLKIT_SESSION") or time.strftime("%Y%m%d-%H%M%S-") + new_run_id()[:4]
    )
    policy = _opt(config, "objectives")
    stack_file = _opt(config, "stack")
    return RunConfig(
        results_dir=results / "runs" / run_id,
        run_root=Path(config.rootpath) / ".run",
        stack_file=Path(stack_file) if stack_file else None,
        probe_interval_s=interval,
        k=int(_opt(config, "k")),
        keep_on_failure=bool(_opt(config, "keep-on-failure")),
        seed_scale=_opt(config, "seed-scale"),
        objectives=_merge(
            load_policy(Path(policy)) if policy else {},
            parse_objective_overrides(
                config.getoption("--drill-objective") or config.getini("drill_objective")
            ),
        ),
        min_free_disk_gib=float(_opt(config, "min-free-disk")),
        baseline_backup=_choice(
            "--drill-baseline-backup", _opt(config, "baseline-backup"), ("auto", "always", "never")
        ),
    )


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


def _interrupt_on_sigterm() -> None:
    """SIGTERM becomes KeyboardInterrupt, so teardown runs as it does on Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handler)


def pytest_configure(config: pytest.Config) -> None:
    for tag in ("nightly", "quarterly", "integration", "sabotage"):
        config.addinivalue_line("markers", f"{tag}: drillkit {tag}")
    config.stash[_RESULTS] = []
    catalog.load()
    _interrupt_on_sigterm()


_RESULTS = pytest.StashKey[list[DrillResult]]()
SECRETS = pytest.StashKey[list[str]]()
"""On the test item: the secrets the item's drill issued (for leak scans in tests)."""
_CONFIG = pytest.StashKey[RunConfig]()


def drill_config(config: pytest.Config) -> RunConfig:
    if _CONFIG not in config.stash:
        config.stash[_CONFIG] = resolve_config(config)
    return config.stash[_CONFIG]


def scenario_paths(config: pytest.Config) -> list[Path]:
    root = Path(_opt(config, "scenarios"))
    if not root.is_absolute():
        root = Path(config.rootpath) / root
    paths = discover(root) if root.is_dir() else [root]
    select = [s for s in str(_opt(config, "select") or "").split(",") if s]
    if select:
        known = {p.stem for p in paths}
        unknown = [s for s in select if s not in known]
        if unknown:
            raise pytest.UsageError(
                f"--drill-select: unknown scenario(s) {unknown}; known: {sorted(known)}"
            )
        paths = [p for p in paths if p.stem in select]
    return paths


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "drill_scenario" not in metafunc.fixturenames:
        return
    stack_file = _opt(metafunc.config, "stack")
    services = load_stack(Path(stack_file) if stack_file else None).services
    params = []
    problems: list[str] = []
    for path in scenario_paths(metafunc.config):
        try:
            sc = load_scenario(
                path,
                services=("primary", "replica", "app") if "replica" not in services else services,
            )
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        for tag in sc.tags:
            metafunc.config.addinivalue_line("markers", f"{tag}: scenario tag")
        marks = [getattr(pytest.mark, t) for t in sc.tags if t.isidentifier()]
        params.append(pytest.param(sc, id=sc.id, marks=marks))
    if problems:  # validate every file before any container starts
        raise pytest.UsageError("invalid scenario files:\n  " + "\n  ".join(problems))
    metafunc.parametrize("drill_scenario", params)


@pytest.fixture(scope="session")
def drill_run_config(request: pytest.FixtureRequest) -> RunConfig:
    """The resolved drill options (override to change them programmatically)."""
    return drill_config(request.config)


@pytest.fixture(scope="session")
def drill_reaped(drill_run_config: RunConfig) -> list[str]:
    """Reap what killed runs left behind, once per session, before the first drill."""
    try:
        return reap_orphans(drill_run_config.run_root)
    except EnvironmentBroken:
        return []


@pytest.fixture
def drill_bus() -> EventBus:
    """The event bus of the current drill; subscribe reporters here (overridable)."""
    return EventBus()


@pytest.fixture
def run_drill(
    request: pytest.FixtureRequest,
    drill_run_config: RunConfig,
    drill_bus: EventBus,
    drill_reaped: list[str],
) -> Callable[[Scenario], DrillResult]:
    """Factory: run a scenario through its whole lifecycle and return its record.

    An environment problem raises EnvironmentBroken (a pytest error, not a drill failure)."""

    def run(scenario: Scenario) -> DrillResult:
        _progress_subscriber(request.config, drill_bus)
        runner = Runner(scenario, drill_run_config, drill_bus)
        result = runner.run()
        request.config.stash[_RESULTS].append(result)
        request.node.stash[SECRETS] = runner.secret_values
        _report(result, runner.secret_values)
        if result.status in ("error", "aborted"):
            raise EnvironmentBroken(f"drill {scenario.id} {result.status}: {result.error}")
        return result

    return run


@pytest.fixture
def drill_result(
    drill_scenario: Scenario, run_drill: Callable[[Scenario], DrillResult]
) -> DrillResult:
    """The record of `drill_scenario`, run in the fixture (so environment errors are errors)."""
    return run_drill(drill_scenario)


def assert_verdict(result: DrillResult, scenario: Scenario) -> None:
    """Pass when the drill met its objectives; else fail with the numbers. A scenario that expects
    to fail (a sabotaged runbook) must fail for the expected reason."""
    m = result.measurement
    figures = ""
    if m is not None:
        rto = "never" if m.rto_s is None else f"{m.rto_s:.2f} s"
        figures = f" [RTO {rto}, RPO {m.rpo_s:.2f} s, lost {m.lost}/{m.acked}]"
    if scenario.expect.get("outcome") == "fail":
        assert result.status == "failed", f"sabotaged drill {scenario.id} was not caught{figures}"
        want = scenario.expect.get("breach")
        if want:
            kinds = {b.split()[0].lower().rstrip(":") for b in result.breaches}
            assert result.category == want or any(want in b.lower() for b in result.breaches), (
                f"{scenario.id} failed for another reason than {want}: {result.breaches}{kinds}"
            )
        return
    assert result.status == "passed", f"{scenario.id}: " + "; ".join(result.breaches) + figures


def _progress_subscriber(config: pytest.Config, bus: EventBus) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or getattr(bus, "_progress", False):
        return
    bus._progress = True  # type: ignore[attr-defined]
    t0 = time.monotonic()

    def show(e: Any) -> None:
        detail = ""
        if e.phase in (Phase.STEP_STARTED, Phase.STEP_ENDED):
            detail = f" {e.data.get('kind')} '{e.data.get('step')}'"
            if e.phase == Phase.STEP_ENDED:
                detail += f" {'ok' if e.data.get('ok') else 'FAILED'} in {e.data.get('duration_s', 0):.2f} s"
        line = f"  [{e.data.get('scenario')} +{e.t - t0:6.2f} s] {e.phase}{detail}"
        capman = config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            tr.write_line(line)
            return
        with capman.global_and_fixture_disabled():  # live progress, past fd-level capture
            tr.write_line(line)

    if config.getoption("verbose") > 0:
        bus.subscribe(show)


def _report(result: DrillResult, secrets: list[str]) -> None:
    from drillkit.reporting.allure_report import attach_to_allure

    attach_to_allure(result, redact=secrets)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Allure's run-level files: environment, executor, categories (when --alluredir is set)."""
    results: list[DrillResult] = session.config.stash.get(_RESULTS, [])
    alluredir = getattr(session.config.option, "allure_report_dir", None)
    if not results or not alluredir:
        return
    from drillkit.reporting import allure_report

    out = Path(alluredir)
    env = dict(results[0].environment)
    allure_report.write_environment(out, env)
    allure_report.write_executor(
        out,
        {
            "name": "drillkit",
            "type": "drillkit",
            "buildName": str(drill_config(session.config).results_dir.name),
        },
    )
    allure_report.write_categories(out)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results: list[DrillResult] = config.stash.get(_RESULTS, [])
    if not results:
        return
    tr = terminalreporter
    tr.section("drillkit summary")
    tr.write_line(
        f"{'drill':28} {'verdict':8} {'MTTD':>7} {'RTO':>8} {'obj':>6} {'RPO':>7} {'obj':>6} "
        f"{'lost':>9} {'checks':>7} {'wall':>7}"
    )
    for r in results:
        m = r.measurement

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        checks = f"{sum(c.ok for c in r.checks)}/{len(r.checks)}"
        wall = (r.wall_end or r.t0_wall) - r.t0_wall
        tr.write_line(
            f"{r.scenario_id:28} {r.status:8} {f(m.mttd_s if m else None):>7} "
            f"{'never' if m and m.rto_s is None else f(m.rto_s if m else None):>8} {r.objectives.rto_s:>6g} "
            f"{f(m.rpo_s if m else None):>7} {r.objectives.rpo_s:>6g} "
            f"{(f'{m.lost + m.altered}/{m.acked}' if m else '-'):>9} {checks:>7} {wall:6.1f}s"
        )
        for b in r.breaches:
            tr.write_line(f"    breach: {b}")
    total = sum((r.wall_end or r.t0_wall) - r.t0_wall for r in results)
    tr.write_line(
        f"{len(results)} drills, {total:.1f} s of drill time; records in "
        f"{drill_config(config).results_dir}"
    )


__all__ = ["ROOT", "assert_verdict", "load_policy", "resolve_config"]
