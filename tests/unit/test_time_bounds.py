"""Time is bounded (issue 16, class 4): a step that overran is stopped (its waits, sleeps, host
commands and container execs killed) before teardown, the checklist runs within the drill's
deadline, and every harness database and HTTP call carries a timeout (read from the source)."""

from __future__ import annotations

import ast
import functools
import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drillkit import cancel
from drillkit.catalog import commands
from drillkit.core import phases
from drillkit.core.config import Deadline, RunConfig
from drillkit.core.registry import Registry
from drillkit.core.results import StepRecord
from drillkit.core.runner import Runner
from drillkit.core.scenario import Check, Step, parse_scenario_text
from drillkit.errors import StepFailed
from drillkit.wait import wait_for

PACKAGE = Path(__file__).resolve().parents[2] / "drillkit"
SCENARIO = """
id: t
title: test
source: {runbook: "000", section: "Procedure 1"}
severity: P0
failure_class: database-failure
tags: [nightly]
objectives: {rto: 10s, rpo: 0s, detection: 2s}
fault: {action: kill-postmaster}
recovery:
  - {action: restart-service, with: {service: primary}}
checklist: [all-systems-responding]
"""


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def reg() -> Registry:
    return Registry("recovery")


def test_a_step_blocked_in_a_wait_is_stopped(reg: Registry) -> None:
    @reg("waits-forever")
    def waits_forever(ctx: Any) -> str:
        wait_for(lambda: False, what="nothing", timeout_s=3600)
        return "never"

    step = Step("w", "waits-forever", {}, 0.2)
    overran, outcome = phases.call_in_thread(reg, step, SimpleNamespace(), 0.2)
    assert overran and outcome["stopped"] and "thread" not in outcome
    assert isinstance(outcome["error"], cancel.StepStopped)
    rec = StepRecord(name="w", action="waits-forever", kind="recovery", t_start=0.0)
    phases.record_outcome(rec, step, overran, outcome)
    assert not rec.ok and rec.error == "overran its timeout of 0.2 s and was stopped"


def test_a_stopped_step_kills_its_host_command_group(reg: Registry, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    @reg("runs-a-command")
    def runs_a_command(ctx: Any) -> str:
        # the shell's child (sleep) is in the same process group: both must die
        argv = ["sh", "-c", f"sleep 3600 & echo $! > {pidfile}; wait"]
        return commands.run_in_group(argv, {"PATH": "/usr/bin:/bin"}, 3600).stdout

    step = Step("c", "runs-a-command", {}, 0.3)
    overran, outcome = phases.call_in_thread(reg, step, SimpleNamespace(), 0.3)
    assert overran and outcome["stopped"]
    child = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(child), what="the command's child to die", timeout_s=5)


def test_a_held_fault_is_ended_by_the_stop(reg: Registry) -> None:
    reg("hold")(commands.hold)
    step = Step("h", "hold", {"duration": 3600.0}, 0.1)
    overran, outcome = phases.call_in_thread(reg, step, SimpleNamespace(), 0.1)
    assert overran and outcome["stopped"]


def test_a_step_that_ignores_the_stop_is_joined_before_teardown(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step blocked where no stop reaches (here an Event only the test sets) is recorded as
    abandoned; finish() joins it again before the teardown and records what still runs."""
    release = threading.Event()

    @reg("stubborn")
    def stubborn(ctx: Any) -> str:
        release.wait()
        return "done"

    monkeypatch.setattr(phases, "STOP_GRACE_S", 0.05)
    runner = Runner(
        parse_scenario_text(SCENARIO, "t.yaml"),
        RunConfig(results_dir=tmp_path / "r", run_root=tmp_path / "run"),
    )
    step = Step("s", "stubborn", {}, 0.1)
    with pytest.raises(StepFailed, match="did not stop within"):
        runner._run_step(SimpleNamespace(), step, "recovery", reg, 0, 1, Deadline(3600))  # type: ignore[arg-type]
    assert len(runner.abandoned) == 1 and runner.abandoned[0].is_alive()
    runner.finish()
    assert runner.result.extra["steps_running_at_teardown"] == ["step-stubborn"]
    release.set()
    runner.abandoned[0].join(5)
    assert not runner.abandoned[0].is_alive()


def test_a_step_that_overruns_the_drill_is_aborted_and_stopped(
    reg: Registry, tmp_path: Path
) -> None:
    from drillkit.errors import DrillAborted

    @reg("waits-forever")
    def waits_forever(ctx: Any) -> str:
        wait_for(lambda: False, what="nothing", timeout_s=3600)
        return "never"

    runner = Runner(
        parse_scenario_text(SCENARIO, "t.yaml"),
        RunConfig(results_dir=tmp_path / "r", run_root=tmp_path / "run"),
    )
    step = Step("w", "waits-forever", {}, 3600)  # its own timeout is cut to the time left
    with pytest.raises(DrillAborted):
        runner._run_step(SimpleNamespace(), step, "recovery", reg, 0, 1, Deadline(0.2))  # type: ignore[arg-type]
    assert runner.result.steps[-1].error == "stopped: the drill reached its maximum duration"
    assert runner.abandoned == []


def test_the_checklist_is_bounded_by_the_deadline(tmp_path: Path) -> None:
    from drillkit.core.registry import CHECKS

    name = "test-blocks-forever"

    def blocks(ctx: Any) -> str:
        wait_for(lambda: False, what="nothing", timeout_s=3600)
        return "never"

    CHECKS(name)(blocks)
    try:
        scenario = SimpleNamespace(checklist=[Check(name, {})])
        result = Runner(
            parse_scenario_text(SCENARIO, "t.yaml"),
            RunConfig(results_dir=tmp_path / "r", run_root=tmp_path / "run"),
        ).result
        with pytest.raises(phases.CheckOverran):
            phases.run_checklist(scenario, SimpleNamespace(), result, lambda: 0.1)  # type: ignore[arg-type]
        assert [(c.id, c.ok) for c in result.checks] == [(name, False)]
        assert "maximum duration" in result.checks[0].detail
    finally:
        del CHECKS.entries[name]


def test_deadline_bound_cuts_a_wait_to_the_time_left() -> None:
    t = [0.0]
    d = Deadline(10, clock=lambda: t[0])
    assert d.bound(3) == 3 and d.bound(30) == 10
    t[0] = 12.0
    assert d.bound(3) == 0.0


@functools.cache
def all_calls() -> list[tuple[Path, ast.Call]]:
    return [
        (path, node)
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
    ]


def calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call in drillkit/ whose function is `<base>.<attr>` as `name` says."""
    out = []
    base_wanted, _, attr_wanted = name.partition(".")
    for path, node in all_calls():
        fn = node.func
        if not isinstance(fn, ast.Attribute) or fn.attr != attr_wanted:
            continue
        if getattr(fn.value, "id", getattr(fn.value, "attr", "")) == base_wanted:
            out.append((path, node))
    return out


def test_every_database_connection_has_connect_and_statement_timeouts() -> None:
    found = calls("psycopg.connect")
    assert found, "the harness connects somewhere"
    for path, node in found:
        kw = {k.arg: k.value for k in node.keywords}
        where = f"{path.name}:{node.lineno}"
        assert "connect_timeout" in kw, f"{where}: psycopg.connect without connect_timeout"
        assert "statement_timeout" in ast.unparse(kw.get("options", ast.Constant(""))), where


@pytest.mark.parametrize(
    "verb", ["get", "post", "put", "delete", "patch", "head", "request"], ids=str
)
def test_every_http_call_has_a_timeout(verb: str) -> None:
    for base in ("requests", "session", "http", "s"):
        for path, node in calls(f"{base}.{verb}"):
            kw = {k.arg for k in node.keywords}
            assert "timeout" in kw, f"{path.name}:{node.lineno}: {base}.{verb} without a timeout"


def test_the_fault_proxy_client_calls_have_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from drillkit.stack.services import proxy

    seen: dict[str, Any] = {}

    def fake_request(method: str, url: str, **kwargs: Any) -> str:
        seen.update(kwargs, method=method)
        return "answer"

    monkeypatch.setattr(proxy.requests, "request", fake_request)
    assert proxy.BoundedHttp("tok").get("http://127.0.0.1:1/proxies") == "answer"
    assert seen["timeout"] == proxy.API_TIMEOUT_S and seen["method"] == "GET"
    assert seen["headers"] == {"Authorization": "Bearer tok"}


def test_a_host_pid_outside_the_exec_container_is_not_killed() -> None:
    """kill_exec kills only a pid that /proc shows inside the exec's container."""
    from drillkit.stack import engine

    class Api:
        def exec_inspect(self, exec_id: str) -> dict[str, Any]:
            return {"Pid": os.getpid(), "ContainerID": "f" * 64, "Running": True}

    engine.kill_exec(Api(), "x")  # type: ignore[arg-type]
    assert pid_alive(os.getpid())
