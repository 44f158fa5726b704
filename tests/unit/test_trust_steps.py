"""Steps that find nothing to act on fail with the reason; host-exec runs only with the opt-in,
with a minimal environment, in a process group killed whole on timeout; service-exec runs as the
service's own user. (The real-stack run of a heal is tests/integration/test_trust_heal.py.)"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drillkit.catalog import commands, disk, network
from drillkit.catalog.network import Partitions, take_partition
from drillkit.errors import StepFailed
from drillkit.wait import wait_for


@dataclass
class Parts:
    """The part store a step reads (DrillContext.part) and the few stack facts these steps use;
    the paths under test return or fail before touching a container."""

    stack: Any = None
    _parts: dict[type, Any] = field(default_factory=dict)

    def part(self, kind: type) -> Any:
        return self._parts.setdefault(kind, kind())


def rules(a: str, b: str) -> list[tuple[str, list[str]]]:
    return [(a, ["INPUT", "-s", b, "-j", "DROP"]), (b, ["INPUT", "-s", a, "-j", "DROP"])]


def test_a_partition_is_found_by_its_pair_in_either_order() -> None:
    parts = Partitions(rules={("app", "primary"): rules("app", "primary")})
    assert take_partition(parts, "primary", "app") == rules("app", "primary")
    assert parts.rules == {}  # taken: a second heal finds nothing
    assert take_partition(parts, "app", "primary") is None


def test_a_heal_with_nothing_to_heal_fails_naming_the_pair() -> None:
    ctx = Parts()
    ctx.part(Partitions).rules[("primary", "replica")] = rules("primary", "replica")
    with pytest.raises(StepFailed, match="no partition between app and primary to heal") as exc:
        network.heal_partition(ctx, "app", "primary")  # type: ignore[arg-type]
    assert "primary <-> replica" in str(exc.value)  # what does exist is named


def test_heal_isolation_fails_when_the_service_is_not_cut_off() -> None:
    class Stack:
        services = ("primary", "replica", "app")

    with pytest.raises(StepFailed, match="primary is not partitioned from any service"):
        network.heal_isolation(Parts(stack=Stack()), "primary")  # type: ignore[arg-type]


def test_free_disk_fails_without_ballast_and_frees_it_once(tmp_path: Path) -> None:
    ctx = Parts()
    with pytest.raises(StepFailed, match="no ballast"):
        disk.free_disk(ctx)  # type: ignore[arg-type]
    ballast = tmp_path / "drillkit-ballast"
    ballast.write_bytes(b"\0" * 4096)
    ctx.part(disk.DiskBallast).path = str(ballast)
    assert disk.free_disk(ctx) == "ballast removed (4096 bytes freed)"  # type: ignore[arg-type]
    assert not ballast.exists()
    with pytest.raises(StepFailed, match="no ballast"):
        disk.free_disk(ctx)  # type: ignore[arg-type]


class HostStack:
    run_id = "trust1"
    app_url = "http://127.0.0.1:1"


@pytest.fixture
def host_exec_allowed() -> Any:
    commands.HOST_EXEC.allowed = True
    yield
    commands.HOST_EXEC.allowed = False


def test_host_exec_is_refused_by_the_step_without_the_opt_in() -> None:
    assert commands.HOST_EXEC.allowed is False  # the default
    with pytest.raises(StepFailed, match="did not opt in"):
        commands.host_exec(Parts(stack=HostStack()), "touch /tmp/never")  # type: ignore[arg-type]


def test_host_exec_gets_a_minimal_environment(
    host_exec_allowed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-pass-me")
    out = commands.host_exec(Parts(stack=HostStack()), "env")  # type: ignore[arg-type]
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert "do-not-pass-me" not in out
    assert {"PATH", "DRILLKIT_RUN_ID", "DRILLKIT_APP_URL"} <= names
    assert names <= {"PATH", "HOME", "DRILLKIT_RUN_ID", "DRILLKIT_APP_URL", "PWD", "SHLVL", "_"}


def test_host_exec_timeout_kills_the_whole_process_group(
    host_exec_allowed: None, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    command = f"sleep 300 & echo $! > {pidfile}; wait"
    with pytest.raises(StepFailed, match="overran"):
        commands.host_exec(Parts(stack=HostStack()), command, timeout=0.5)  # type: ignore[arg-type]
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        status = (
            Path(f"/proc/{pid}/stat").read_text().split()[2]
            if Path(f"/proc/{pid}").exists()
            else "X"
        )
        return status in ("Z", "X")  # killed, waiting for init to reap it

    wait_for(gone, what="the background child to be killed", timeout_s=10, interval_s=0.05)


def test_service_exec_runs_as_the_services_own_user() -> None:
    class Container:
        def __init__(self, user: str) -> None:
            self.attrs = {"Config": {"User": user}}

    class Stack:
        databases = ("primary", "replica")

        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def container(self, service: str) -> Container:
            return Container({"app": "app", "web": ""}[service])

        def exec(self, service: str, cmd: str, *, user: str, timeout_s: float) -> Any:
            self.calls.append((service, user))
            return type("R", (), {"exit_code": 0, "output": "ok"})()

    stack = Stack()
    ctx = Parts(stack=stack)
    for service in ("primary", "app", "web"):
        commands.service_exec(ctx, service, "id")  # type: ignore[arg-type]
    commands.service_exec(ctx, "app", "id", user="root")  # type: ignore[arg-type]
    assert stack.calls == [
        ("primary", "postgres"),
        ("app", "app"),
        ("web", "nobody"),
        ("app", "root"),
    ]
