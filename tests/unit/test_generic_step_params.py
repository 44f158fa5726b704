"""The catalogue's steps for any stack (issue 14), without containers: their parameters are
checked, a step with nothing to act on fails with the reason, a runbook script's output is
bounded and redacted, a disk fill is refused when it could reach the host's disk, and a scenario's
`prepare:` steps are validated like recovery steps. (On a real stack:
tests/integration/test_generic_steps.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drillkit.catalog import _common, commands, credentials, disk, processes
from drillkit.core.registry import FAULTS, RECOVERY
from drillkit.core.scenario import parse_scenario_text
from drillkit.errors import StepFailed, ValidationError
from drillkit.stack.stack import ExecResult

SECRET = "s3cretValueNobodySees"


class Secrets:
    def __init__(self) -> None:
        self.issued = [SECRET]

    def values(self) -> list[str]:
        return list(self.issued)

    def set(self, name: str, value: str) -> None:
        self.issued.append(value)


class Container:
    def __init__(self, status: str = "running", env: list[str] | None = None) -> None:
        self.status = status
        self.attrs: dict[str, Any] = {"Config": {"User": "", "Env": env or []}, "Mounts": []}


@dataclass
class Stack:
    """What the steps under test read of a stack; `results` answers exec calls in order."""

    services: tuple[str, ...] = ("db", "api", "cache")
    databases: tuple[str, ...] = ("db",)
    results: list[ExecResult] = field(default_factory=list)
    calls: list[tuple[str, Any, str]] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets)
    spec: Any = None
    run_dir: Path = Path("/nonexistent-run")

    def container(self, service: str) -> Container:
        return self.containers.setdefault(service, Container())

    def require_running(self, service: str) -> None:
        pass

    def exec(self, service: str, cmd: Any, *, user: str = "postgres", timeout_s: float = 60) -> Any:
        self.calls.append((service, cmd, user))
        return self.results.pop(0) if self.results else ExecResult(0, "")


@dataclass
class Ctx:
    stack: Stack = field(default_factory=Stack)
    primary: str = "db"
    _parts: dict[type, Any] = field(default_factory=dict)
    evidence_: dict[str, str] = field(default_factory=dict)

    def part(self, kind: type) -> Any:
        return self._parts.setdefault(kind, kind())

    def evidence(self, name: str, text: str) -> None:
        self.evidence_[name] = text

    def figure(self, name: str, value: Any) -> None:
        pass


def test_the_generic_steps_are_registered() -> None:
    for name in ("kill-postmaster", "kill-process", "stop-container", "pause-container"):
        assert name in FAULTS.entries
    for name in ("leak-db-password", "fill-disk", "run-script", "run-container"):
        assert name in FAULTS.entries
    for name in ("unpause-container", "start-container", "rotate-db-password", "run-script"):
        assert name in RECOVERY.entries
    assert "run-container" in RECOVERY.entries and "free-disk" in RECOVERY.entries


# ----- run-script / run-container ----------------------------------------------------------------


def test_run_script_takes_exactly_one_of_script_or_command() -> None:
    with pytest.raises(StepFailed, match="exactly one of script"):
        commands.run_script(Ctx(), "db")  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="exactly one of script"):
        commands.run_script(Ctx(), "db", script="/b.sh", command=["true"])  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="expected an absolute path"):
        commands.run_script(Ctx(), "db", script="backup.sh")  # type: ignore[arg-type]


def test_run_script_fails_when_the_script_is_missing_or_not_executable() -> None:
    ctx = Ctx(stack=Stack(results=[ExecResult(3, "")]))
    with pytest.raises(StepFailed, match=r"no script /srv/backup\.sh in db"):
        commands.run_script(ctx, "db", script="/srv/backup.sh")  # type: ignore[arg-type]
    ctx = Ctx(stack=Stack(results=[ExecResult(4, "")]))
    with pytest.raises(StepFailed, match="not executable by postgres"):
        commands.run_script(ctx, "db", script="/srv/backup.sh")  # type: ignore[arg-type]


def test_run_script_records_bounded_redacted_output_and_runs_as_the_service_user() -> None:
    noisy = f"password={SECRET}\n" + "x" * 10_000 + "\nDONE"
    stack = Stack(results=[ExecResult(0, ""), ExecResult(0, noisy)])
    out = commands.run_script(Ctx(stack=stack), "db", script="/srv/backup.sh")  # type: ignore[arg-type]
    assert SECRET not in out and "[redacted]" in out
    assert out.endswith("DONE") and "characters left out" in out
    assert len(out) < 4000
    assert stack.calls[-1] == ("db", ["/srv/backup.sh"], "postgres")


def test_run_script_fails_on_an_unexpected_exit_with_the_redacted_output() -> None:
    stack = Stack(results=[ExecResult(2, f"pg_dump: error: auth failed for {SECRET}")])
    with pytest.raises(StepFailed) as exc:
        commands.run_script(Ctx(stack=stack), "api", command=["sh", "-c", "exit 2"])  # type: ignore[arg-type]
    assert "exited 2 (expected 0)" in str(exc.value)
    assert SECRET not in str(exc.value) and "[redacted]" in str(exc.value)
    assert stack.calls[-1][2] == "nobody"  # an image without USER runs as nobody, not root


def test_run_script_names_a_timeout() -> None:
    stack = Stack(results=[ExecResult(137, "")])
    with pytest.raises(StepFailed, match="killed at its timeout of 5 s"):
        commands.run_script(Ctx(stack=stack), "db", command=["sleep", "9"], timeout=5.0)  # type: ignore[arg-type]


def test_run_container_refuses_an_empty_command_and_an_unknown_volumes_source() -> None:
    with pytest.raises(StepFailed, match="non-empty list"):
        commands.run_container(Ctx(), "db", [])  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="volumes_from 'dbx': no such service"):
        commands.run_container(Ctx(), "db", ["true"], volumes_from="dbx")  # type: ignore[arg-type]


def test_oneoff_env_copies_bare_names_from_the_source_service() -> None:
    ctx = Ctx()
    ctx.stack.containers["db"] = Container(env=["POSTGRES_PASSWORD=pw", "PGDATA=/d"])
    env = commands.oneoff_env(ctx, ["POSTGRES_PASSWORD", "PGHOST=db"], "db")  # type: ignore[arg-type]
    assert env == {"POSTGRES_PASSWORD": "pw", "PGHOST": "db"}
    with pytest.raises(StepFailed, match="db has no variable NOPE"):
        commands.oneoff_env(ctx, ["NOPE"], "db")  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="give KEY=VALUE"):
        commands.oneoff_env(ctx, ["PGPASSWORD"], None)  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="expected KEY=VALUE"):
        commands.oneoff_env(ctx, ["1BAD=x"], None)  # type: ignore[arg-type]


# ----- processes ---------------------------------------------------------------------------------


def test_kill_process_checks_its_signal_and_pattern() -> None:
    with pytest.raises(StepFailed, match="signal 'BOOM'"):
        processes.kill_process(Ctx(), "api", "node", signal="BOOM")  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="not a regular expression"):
        processes.kill_process(Ctx(), "api", "node(")  # type: ignore[arg-type]


def test_kill_process_fails_naming_what_runs_when_nothing_matches() -> None:
    table = "1\tpython3 -m uvicorn app:api \n7\tsh -c : drillkit-ps \n"
    ctx = Ctx(stack=Stack(results=[ExecResult(0, table)]))
    with pytest.raises(StepFailed, match=r"no process matching 'node' in api \(running: python3\)"):
        processes.kill_process(ctx, "api", "node")  # type: ignore[arg-type]


def test_a_step_on_a_stopped_service_fails_with_nothing_to_act_on() -> None:
    ctx = Ctx()
    ctx.stack.containers["db"] = Container(status="exited")
    for step in (processes.kill_postmaster, processes.kill_container, processes.pause_container):
        with pytest.raises(StepFailed, match="db is not running"):
            step(ctx, "db")  # type: ignore[arg-type, operator]


def test_kill_postmaster_fails_when_no_postmaster_is_found() -> None:
    ctx = Ctx(stack=Stack(results=[ExecResult(3, "")]))
    with pytest.raises(StepFailed, match="no PostgreSQL postmaster in db"):
        processes.kill_postmaster(ctx, "db")  # type: ignore[arg-type]
    _service, cmd, user = ctx.stack.calls[0]
    assert cmd[-1] == "/pgdata" and user == "root"  # the reference image's data directory


def test_the_data_directory_of_a_compose_database_comes_from_the_overlay() -> None:
    spec = type("Spec", (), {"is_compose": True, "db": type("Db", (), {"data": "/srv/pg"})()})()
    assert _common.data_dir(Ctx(stack=Stack(spec=spec)), "db") == "/srv/pg"  # type: ignore[arg-type]


def test_start_and_unpause_fail_when_there_is_nothing_to_do() -> None:
    with pytest.raises(StepFailed, match="running already: nothing to start"):
        processes.start_container(Ctx(), "api")  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="api is not paused"):
        processes.unpause_container(Ctx(), "api")  # type: ignore[arg-type]


# ----- disk ----------------------------------------------------------------------------------------

MIB, GIB = 2**20, 2**30


def test_a_fill_of_a_small_filesystem_is_planned() -> None:
    assert disk.fill_plan(96 * MIB, MIB, 1024, 50 * GIB) == 95 * MIB


@pytest.mark.parametrize(
    ("free", "leave", "host_free", "reason"),
    [
        (40 * GIB, 0, 50 * GIB, "more than max_fill_mib"),  # a volume on the host's disk
        (900 * MIB, 0, 4 * GIB, "would leave the host's disk under 4 GiB"),
        (MIB, 2 * MIB, 50 * GIB, "nothing to fill"),
    ],
)
def test_a_fill_that_could_reach_the_host_disk_is_refused(
    free: int, leave: int, host_free: int, reason: str
) -> None:
    with pytest.raises(StepFailed, match=reason):
        disk.fill_plan(free, leave, 1024, host_free)


def test_fill_disk_on_a_service_needs_a_path_unless_it_is_a_database() -> None:
    ctx = Ctx()
    ctx.stack.loopfs = None  # type: ignore[attr-defined]
    with pytest.raises(StepFailed, match="api is no database: give path"):
        disk.fill_disk(ctx, "api")  # type: ignore[arg-type]


def test_free_disk_inside_a_service_fails_when_the_ballast_is_gone() -> None:
    ctx = Ctx(stack=Stack(results=[ExecResult(3, "")]))
    ctx.part(disk.DiskBallast).path = "/var/lib/postgresql/data/drillkit-ballast"
    ctx.part(disk.DiskBallast).service = "db"
    with pytest.raises(StepFailed, match="is gone already"):
        disk.free_disk(ctx)  # type: ignore[arg-type]


# ----- credentials ---------------------------------------------------------------------------------


def compose_spec(apps: dict[str, Any]) -> Any:
    return type("Spec", (), {"is_compose": True, "apps": apps, "db": None})()


def app_with(kind: str, target: str, role: str = "shop") -> Any:
    cred = type("Cred", (), {"role": role, "kind": kind, "target": target, "reload": None})()
    return type("App", (), {"credentials": cred})()


def test_the_default_role_is_the_compose_apps_own() -> None:
    ctx = Ctx(stack=Stack(spec=compose_spec({"api": app_with("env", "DATABASE_PASSWORD")})))
    assert credentials.default_role(ctx) == "shop"  # type: ignore[arg-type]
    ref = Ctx(stack=Stack(spec=type("Spec", (), {})()))
    assert credentials.default_role(ref) == "app"  # type: ignore[arg-type]


def test_the_current_password_is_read_where_the_app_receives_it() -> None:
    ctx = Ctx(stack=Stack(spec=compose_spec({"api": app_with("env", "DATABASE_PASSWORD")})))
    ctx.stack.containers["api"] = Container(env=["DATABASE_PASSWORD=pw1", "X=y"])
    assert credentials.current_password(ctx, "shop") == "pw1"  # type: ignore[arg-type]
    ctx = Ctx(stack=Stack(spec=compose_spec({"api": app_with("secret", "db_password")})))
    ctx.stack.results = [ExecResult(0, "pw2\n")]
    assert credentials.current_password(ctx, "shop") == "pw2"  # type: ignore[arg-type]
    assert ctx.stack.calls[-1][1] == ["cat", "/run/secrets/db_password"]


def test_a_leak_of_a_role_no_app_uses_fails_with_the_reason() -> None:
    ctx = Ctx(stack=Stack(spec=compose_spec({})))
    with pytest.raises(StepFailed, match="no password known for role 'ghost'"):
        credentials.leak_db_password(ctx, "ghost")  # type: ignore[arg-type]


def test_a_credential_file_bound_from_the_teams_checkout_is_never_written(tmp_path: Path) -> None:
    ctx = Ctx(stack=Stack(run_dir=tmp_path / "run"))
    checkout = tmp_path / "project" / "db_password"
    checkout.parent.mkdir()
    checkout.write_text("old\n")
    ctx.stack.containers["api"] = c = Container()
    c.attrs["Mounts"] = [{"Type": "bind", "Source": str(checkout), "Destination": "/run/pw"}]
    with pytest.raises(StepFailed, match="outside the run's directory"):
        credentials.write_in_service(ctx, "api", "/run/pw", "new")  # type: ignore[arg-type]
    assert checkout.read_text() == "old\n"


def test_a_credential_file_in_the_run_directory_is_rewritten_in_place(tmp_path: Path) -> None:
    ctx = Ctx(stack=Stack(run_dir=tmp_path))
    copy = tmp_path / "secrets" / "db_password"
    copy.parent.mkdir()
    copy.write_text("old-password\n")
    inode = copy.stat().st_ino
    ctx.stack.containers["api"] = c = Container()
    c.attrs["Mounts"] = [{"Type": "bind", "Source": str(copy), "Destination": "/run/secrets/x"}]
    credentials.write_in_service(ctx, "api", "/run/secrets/x", "new")  # type: ignore[arg-type]
    assert copy.read_text() == "new\n" and copy.stat().st_ino == inode  # the bind sees it


# ----- scenario validation -------------------------------------------------------------------------

SCENARIO = """
id: generic-steps
title: prepare steps and generic parameters
source: {{runbook: "-", section: "unit"}}
severity: P3
failure_class: process-crash
tags: [selftest]
objectives: {{rto: 30s, rpo: 0s}}
prepare:
{prepare}
fault: {fault}
recovery:
  - {{action: ensure-running, with: {{service: primary}}}}
checklist: [all-systems-responding, critical-journeys, recovered-within-rto]
"""


def scenario(
    fault: str,
    prepare: str = "  - {action: run-script, with: {service: primary, script: /srv/backup.sh}}",
) -> Any:
    return parse_scenario_text(SCENARIO.format(fault=fault, prepare=prepare))


def test_prepare_steps_are_parsed_in_order() -> None:
    sc = scenario("{action: kill-postmaster}")
    assert [s.action for s in sc.prepare] == ["run-script"]
    assert sc.prepare[0].params == {"service": "primary", "script": "/srv/backup.sh"}


@pytest.mark.parametrize(
    ("fault", "prepare", "problem"),
    [
        ("{action: kill-postmaster}", "  - {action: run-scrpt}", "prepare[0].action: unknown"),
        (
            "{action: kill-postmaster}",
            "  - {action: host-exec, with: {command: ls}}",
            "prepare[0].action: host-exec is refused",
        ),
        (
            "{action: kill-process, with: {service: app, process: node, signal: BOOM}}",
            "  []",
            "fault.with.signal: expected one of KILL",
        ),
        ("{action: fill-disk, with: {max_fill_mib: 0}}", "  []", "fault.with.max_fill_mib"),
        ("{action: run-container, with: {image: primary}}", "  []", "fault.with.command: missing"),
        (
            "{action: leak-db-password, with: {role: Bad-Role}}",
            "  []",
            "fault.with.role: expected a database identifier",
        ),
    ],
)
def test_bad_parameters_are_refused_before_start(fault: str, prepare: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        scenario(fault, prepare)
