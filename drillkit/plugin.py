"""pytest plugin: drills are pytest tests. Hooks and fixtures only.

The `--drill-*` options and their `drill_*` ini twins are resolved once into a frozen RunConfig
(drillkit.options). At configure time the catalogue is loaded: drillkit's own modules, the
`drillkit.catalog` entry points, then the team modules named by `drillkit_catalog` (ini) and
`--drill-catalog`. Each scenario file becomes one test (`drill_scenario` is parametrised by the
files found), marked with the scenario's tags (nightly, quarterly, ...). The drill itself runs in
the `drill_result` fixture, so a broken environment is a pytest ERROR and a breach a FAILURE.

Reporting: with -v the terminal progress reporter subscribes to the drill's event bus
(`drill_bus`); when the drill's record is final (after teardown) the plugin attaches it to Allure
and, at the end of the session, prints the summary and writes Allure's run-level files. The
evidence pack and the history are built from the saved records by `drillkit finish`. The runner
knows none of them.
"""

from __future__ import annotations

import configparser
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drillkit import catalog, options
from drillkit.catalog import commands
from drillkit.core.events import EventBus
from drillkit.core.phases import await_teardowns, join_teardowns
from drillkit.core.results import DrillResult
from drillkit.core.runner import RunConfig, Runner
from drillkit.core.scenario import RESERVED_TAGS, Scenario, load_scenario
from drillkit.errors import EnvironmentBroken, ValidationError
from drillkit.options import _merge, load_policy, parse_objective_overrides, resolve_config
from drillkit.paths import ROOT
from drillkit.reporting import terminal
from drillkit.stack import engine, engines
from drillkit.stack.reaping import reap_orphans
from drillkit.stack.share import SOLO_TAG, EngineShare
from drillkit.stack.spec import load_stack


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def _interrupt_on_sigterm() -> None:
    """SIGTERM becomes KeyboardInterrupt, so teardown runs as it does on Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handler)


def pytest_configure(config: pytest.Config) -> None:
    for tag in ("nightly", "quarterly", "integration", "sabotage"):
        config.addinivalue_line("markers", f"{tag}: drillkit {tag}")
    config.addinivalue_line(
        "markers",
        "drill(id=, title=, rto=, rpo=, ...): a drill written in Python (drillkit.fixtures)",
    )
    if not config.pluginmanager.has_plugin("drillkit.fixtures"):
        config.pluginmanager.import_plugin("drillkit.fixtures")  # drill_stack, traffic, fault, ...
    config.stash[_RESULTS] = []
    config.stash[_OUTCOMES] = {"breach": 0, "broken": 0, "other": 0, "bad_input": 0}
    config.stash[_SECRETS_SEEN] = []
    try:
        catalog.load(options.catalog_modules(config), root=Path(config.rootpath))
    except ValidationError as exc:
        raise pytest.UsageError("drillkit catalogue:\n  " + "\n  ".join(exc.problems)) from None
    commands.HOST_EXEC.allowed = options.allow_host_exec(config)
    _choose_engine(config)
    _interrupt_on_sigterm()


def _choose_engine(config: pytest.Config) -> None:
    """`--drill-engines`: an xdist worker (or a run without xdist) takes its engine
    (engines.for_worker); the controller runs no drill and only notes the list for `drillkit
    clean`. Without the option nothing changes (DOCKER_HOST or the default socket)."""
    try:
        endpoints = options.engine_endpoints(config)
        is_worker = hasattr(config, "workerinput")
        if not endpoints:
            return
        if not is_worker:
            engines.remember(Path(config.rootpath) / ".run", endpoints)
        if is_worker:
            chosen = engines.for_worker(endpoints, str(config.workerinput["workerid"]))
            engine.use(chosen)
            if chosen is not None and chosen.local:  # testcontainers, a step's docker CLI
                os.environ["DOCKER_HOST"] = chosen.url
        elif getattr(config.option, "dist", "no") == "no":
            # no worker, even when started from inside one (PYTEST_XDIST_WORKER is inherited)
            engine.use(engines.for_worker(endpoints, ""))
    except ValidationError as exc:
        raise pytest.UsageError("\n  ".join(exc.problems)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker writes into the controller's session (one run folder, one
    evidence pack for `drillkit finish`)."""
    node.workerinput[options.SESSION_KEY] = options.run_config(node.config).results_dir.name


def engine_share(config: pytest.Config) -> EngineShare | None:
    """The share lock of the engine this run's xdist workers drill on together (None when the
    run has no workers, or each worker has its own engine: `--drill-engines`). Only a worker
    holds it: a pytest started from inside one (a team project's run) is not a worker."""
    worker = getattr(config, "workerinput", None)
    if worker is None or options.engine_endpoints(config):
        return None
    return EngineShare(Path(config.rootpath) / ".run" / f"xdist-{worker['testrunuid']}")


@contextmanager
def holding_engine(config: pytest.Config, scenario: Scenario) -> Iterator[None]:
    """Hold the engine for one drill: shared, or alone when the scenario is tagged `solo`. A
    solo drill holds it until its stack is gone (a flood's containers load the machine until
    they are removed, and a background teardown removes them after the drill's verdict)."""
    share = engine_share(config)
    if share is None:
        yield
        return
    solo = SOLO_TAG in scenario.tags
    with share.hold(solo):
        try:
            yield
        finally:
            if solo:
                await_teardowns()


_RESULTS = pytest.StashKey[list[DrillResult]]()
_OUTCOMES = pytest.StashKey[dict[str, int]]()
"""Failed test reports by kind: 'breach' (a drill's verdict), 'broken' (EnvironmentBroken),
'other'; they decide the session's exit code (reporting/ci.py)."""
_SECRETS_SEEN = pytest.StashKey[list[str]]()
"""Every secret the session's drills issued: redacted from the webhook text."""
DRILL_RECORD = pytest.StashKey[DrillResult]()
"""On the test item: its drill's final record."""
SECRETS = pytest.StashKey[list[str]]()
"""On the test item: the secrets the item's drill issued (for leak scans in tests)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "drill_scenario" not in metafunc.fixturenames:
        return
    spec = load_stack(options.stack_path(metafunc.config))
    services = spec.services
    if not spec.is_compose and "replica" not in services:
        services = ("primary", "replica", "app")  # a scenario's stack options may add it
    params = []
    problems: list[str] = []
    foreign = foreign_markers(metafunc.config)
    allow_host_exec = options.allow_host_exec(metafunc.config)
    twins = options.sabotage_dir(metafunc.config)
    for path in options.scenario_paths(metafunc.config):
        try:
            sc = load_scenario(
                path,
                services=services,
                allow_host_exec=allow_host_exec,
                sabotage_dir=twins,
            )
        except ValidationError as exc:
            problems.extend(exc.problems)
            continue
        marks = tag_marks(metafunc.config, sc.tags, foreign)
        params.append(pytest.param(sc, id=sc.id, marks=marks))
    if problems:  # validate every file before any container starts
        metafunc.config.stash[_OUTCOMES]["bad_input"] = 1
        raise pytest.UsageError("invalid scenario files:\n  " + "\n  ".join(problems))
    metafunc.parametrize("drill_scenario", params)


SCENARIO_TAG = "drillkit scenario tag"


def foreign_markers(config: pytest.Config) -> set[str]:
    """Markers registered by pytest or another plugin (skip, xfail, timeout, flaky, ...): a
    scenario tag with such a name could change the outcome, so it never becomes a mark."""
    own = {_marker_name(line) for line in _ini_markers(config.inipath)}  # the operator's own
    names = set()
    for line in config.getini("markers"):
        name, doc = _marker_name(line), line.partition(":")[2].strip()
        if doc not in (SCENARIO_TAG, f"drillkit {name}") and name not in own:
            names.add(name)
    return names


def _ini_markers(inipath: Path | None) -> list[str]:
    """The `markers` lines of the ini file itself (pytest's getini merges in every plugin's)."""
    if inipath is None or not inipath.is_file():
        return []
    try:
        if inipath.suffix == ".toml":
            import tomllib

            table = tomllib.loads(inipath.read_text(encoding="utf-8"))
            raw = table.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("markers", [])
            return [str(line) for line in raw] if isinstance(raw, list) else str(raw).splitlines()
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(inipath, encoding="utf-8")
        for section in ("pytest", "tool:pytest"):
            if parser.has_option(section, "markers"):
                return parser.get(section, "markers").splitlines()
    except (OSError, ValueError, configparser.Error):
        return []
    return []


def _marker_name(line: str) -> str:
    return line.partition(":")[0].split("(")[0].strip()


def tag_marks(
    config: pytest.Config, tags: tuple[str, ...], foreign: set[str]
) -> list[pytest.MarkDecorator]:
    """Scenario tags as plain selection marks (`-m nightly`): a tag naming a marker with an
    effect (`foreign`) or a reserved mark is never applied (validation refuses the reserved ones
    first). A mark made here carries no arguments, so no mark can read an argument from a file."""
    marks = []
    for tag in tags:
        if not tag.isidentifier() or tag in foreign or tag in RESERVED_TAGS:
            continue
        config.addinivalue_line("markers", f"{tag}: {SCENARIO_TAG}")
        marks.append(pytest.mark.__getattr__(tag))
    return marks


@pytest.fixture(scope="session")
def drill_run_config(request: pytest.FixtureRequest) -> RunConfig:
    """The resolved drill options (override to change them programmatically)."""
    return options.run_config(request.config)


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
        _refuse_host_actions(scenario)
        with holding_engine(request.config, scenario):
            runner = Runner(scenario, drill_run_config, drill_bus)  # its clock starts once held
            result = runner.run()
        request.config.stash[_RESULTS].append(result)
        request.node.stash[SECRETS] = runner.secret_values
        request.node.stash[DRILL_RECORD] = result
        request.config.stash[_SECRETS_SEEN].extend(runner.secret_values)
        _record_junit_properties(request.node, result, runner.secret_values)
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
    to fail (a sabotaged twin: validation honours `expect` nowhere else) must fail for the
    expected reason. A drill that is not evidence (its checklist below its class's minimum)
    never passes."""
    m = result.measurement
    figures = ""
    if m is not None:
        rto = "never" if m.rto_s is None else f"{m.rto_s:.2f} s"
        figures = f" [RTO {rto}, RPO {m.rpo_s:.2f} s, lost {m.lost}/{m.acked}]"
    if scenario.not_evidence:
        raise AssertionError(f"{scenario.id}: not evidence: {scenario.not_evidence}{figures}")
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


def host_actions(scenario: Scenario) -> list[str]:
    """The scenario's steps and checks that declare the host-access need, and the stack options
    that make loop filesystems on the engine's host."""
    from drillkit.core import registry

    found: list[str] = []
    steps = [(registry.FAULTS, scenario.fault.action)]
    steps += [(registry.RECOVERY, s.action) for s in scenario.recovery]
    steps += [(registry.CHECKS, c.id) for c in scenario.checklist]
    for reg, name in steps:
        entry = reg.entries.get(name)
        if entry is not None and engines.HOST_ACCESS in entry.needs and name not in found:
            found.append(name)
    found += [f"stack: {k}" for k in ("data_fs_mib", "wal_fs_mib") if scenario.stack.get(k)]
    return found


def _refuse_host_actions(scenario: Scenario) -> None:
    """Provisional (until core enforces `needs`): a drill whose actions need the engine's host is
    refused before its stack starts when the engine is not on this host."""
    reason = engines.refusal(engine.current(), host_actions(scenario))
    if reason:
        raise EnvironmentBroken(f"drill {scenario.id} refused: {reason}")


def _progress_subscriber(config: pytest.Config, bus: EventBus) -> None:
    """With -v, the terminal reporter subscribes to the drill's bus: one live line per event."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or getattr(bus, "_progress", False):
        return
    bus._progress = True  # type: ignore[attr-defined]
    capman = config.pluginmanager.get_plugin("capturemanager")

    def write_line(line: str) -> None:
        if capman is None:
            tr.write_line(line)
            return
        with capman.global_and_fixture_disabled():  # live progress, past fd-level capture
            tr.write_line(line)

    if config.getoption("verbose") > 0:
        bus.subscribe(terminal.progress_subscriber(write_line, time.monotonic()))


def _record_junit_properties(node: pytest.Item, result: DrillResult, secrets: list[str]) -> None:
    """RTO, RPO, lost writes, checklist counts and the breach as JUnit <property> elements."""
    from drillkit.reporting import redact_text
    from drillkit.reporting.ci import junit_properties

    for name, value in junit_properties(result):
        node.user_properties.append((name, redact_text(value, secrets)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Count failed reports by kind for the exit code: a drill test's failed call is a breach;
    an EnvironmentBroken in set-up or teardown a broken environment; anything else other."""
    outcome = yield
    report = outcome.get_result()
    if DRILL_RECORD in item.stash and report.when == "teardown":
        _allure_window(item, item.stash[DRILL_RECORD])
    outcomes = item.config.stash.get(_OUTCOMES, None)
    if outcomes is None or not report.failed:
        return
    if report.when == "call":
        outcomes["breach" if DRILL_RECORD in item.stash else "other"] += 1
    elif call.excinfo is not None and call.excinfo.errisinstance(EnvironmentBroken):
        outcomes["broken"] += 1
    else:
        outcomes["other"] += 1


def _allure_window(item: pytest.Item, result: DrillResult) -> None:
    """The Allure test's start and stop: the drill's, not the test body's (the drill ran in a
    fixture); labels once. After teardown, when allure-pytest has stamped the body's times and
    added its labels, before it writes the result."""
    from drillkit.reporting import allure_report

    test = allure_report.test_result_of(item)
    if test is not None:
        allure_report.set_test_window(test, result)


def _report(result: DrillResult, secrets: list[str]) -> None:
    from drillkit.reporting.allure_report import attach_to_allure

    attach_to_allure(result, redact=secrets)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The exit code from the drills' outcomes (reporting/ci.py: 1 a breach, 3 a broken
    environment), the sign-off roles beside the records, the webhook on a breach, and Allure's
    run-level files: environment, executor, categories (when --alluredir is set)."""
    from drillkit.reporting import ci

    config = session.config
    results: list[DrillResult] = config.stash.get(_RESULTS, [])
    outcomes = config.stash.get(_OUTCOMES, {"breach": 0, "broken": 0, "other": 0})
    if outcomes.get("bad_input"):  # invalid scenario files: a collection error (pytest's 2)
        session.exitstatus = ci.EXIT_BAD_INPUT
    else:
        session.exitstatus = ci.session_exit_code(
            outcomes["breach"], outcomes["broken"], outcomes["other"], int(session.exitstatus)
        )
    if join_teardowns() and session.exitstatus == ci.EXIT_PASSED:  # background teardowns
        session.exitstatus = ci.EXIT_ENVIRONMENT  # one failed: what it left is labelled
    if results:
        _save_roles(config)
        _notify(config, results)
    alluredir = getattr(config.option, "allure_report_dir", None)
    if hasattr(config, "workerinput") and options.engine_endpoints(config):
        return  # several engines: the controller writes the run-level files, from every record
    if not results and getattr(config.option, "dist", "no") != "no":
        from drillkit.core.results import load_all  # the xdist controller: the workers' records

        run_dir = options.run_config(config).results_dir
        results = load_all(run_dir) if run_dir.is_dir() else []
    if not results or not alluredir:
        return
    from drillkit.reporting import allure_report

    out = Path(alluredir)
    env = engines.merged_environment([r.environment for r in results])
    allure_report.write_environment(out, env)
    allure_report.write_executor(
        out,
        {
            "name": "drillkit",
            "type": "drillkit",
            "buildName": str(options.run_config(session.config).results_dir.name),
        },
    )
    allure_report.write_categories(out)


def _save_roles(config: pytest.Config) -> None:
    from drillkit.reporting import roles

    given = {role: options.opt(config, role) for role in roles.ROLES}
    try:
        resolved = roles.resolve_roles(given, options.opt(config, "roles") or None)
    except ValidationError as exc:
        _warn(config, "drillkit: roles file: " + "; ".join(exc.problems))
        return
    roles.save_roles(options.run_config(config).results_dir, resolved)


def _notify(config: pytest.Config, results: list[DrillResult]) -> None:
    """The webhook (`--drill-webhook`), when set and a drill breached or broke."""
    url = options.opt(config, "webhook")
    if not url:
        return
    from drillkit.reporting import ci, notify

    text = ci.breach_message(results, options.run_config(config).results_dir.name)
    if text is None:
        return
    try:
        notify.post(url, text, redact=config.stash.get(_SECRETS_SEEN, []))
    except (OSError, ValidationError) as exc:
        detail = "; ".join(exc.problems) if isinstance(exc, ValidationError) else str(exc)
        _warn(config, f"drillkit: notification not sent: {detail}")


def _warn(config: pytest.Config, line: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line, yellow=True)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results: list[DrillResult] = config.stash.get(_RESULTS, [])
    if not results:
        return
    terminalreporter.section("drillkit summary")
    for line in terminal.summary_lines(results, options.run_config(config).results_dir):
        terminalreporter.write_line(line)


__all__ = [
    "ROOT",
    "SECRETS",
    "_merge",
    "assert_verdict",
    "load_policy",
    "parse_objective_overrides",
    "resolve_config",
]
