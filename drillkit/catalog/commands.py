"""Generic steps that run a team's own commands: in a service, on the host (opt-in), or a hold."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from drillkit import cancel
from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import StepFailed


@dataclass
class HostExecPolicy:
    """Whether host-exec may run: the operator's opt-in (--drill-allow-host-exec, ini
    drill_allow_host_exec), set by the plugin at configure time. Off by default; validation
    refuses such a scenario first, this is the step's own guard."""

    allowed: bool = False


HOST_EXEC = HostExecPolicy()

HOST_ENV_KEYS = ("PATH", "HOME")
"""The only variables host-exec passes on from the harness's environment (plus DRILLKIT_APP_URL
and DRILLKIT_RUN_ID): no credentials, tokens or settings of the harness reach the command."""


def service_user(ctx: DrillContext, service: str) -> str:
    """The user a service's own processes run as: its image's USER, `postgres` for a database
    service, else `nobody` (never root unless the scenario says so)."""
    if service in ctx.stack.databases:
        return "postgres"
    c = ctx.stack.container(service)
    user = str((c.attrs.get("Config") or {}).get("User") or "")
    return user if user and user not in ("root", "0") else "nobody"


@FAULTS("service-exec")
@RECOVERY("service-exec")
def service_exec(
    ctx: DrillContext,
    service: Service,
    command: str,
    user: str = "",
    expect_exit: int = 0,
    timeout: Duration = Duration(60.0),
) -> str:
    """Run a shell command inside a service as the service's own user (`user: root` to run it as
    root); the step fails unless it exits with expect_exit."""
    as_user = user or service_user(ctx, service)
    res = ctx.stack.exec(service, command, user=as_user, timeout_s=timeout)
    if res.exit_code != expect_exit:
        raise StepFailed(
            "service-exec",
            f"`{command[:200]}` in {service} as {as_user} exited {res.exit_code} "
            f"(expected {expect_exit}): {res.output[-400:]}",
        )
    return res.output


def host_env(ctx: DrillContext) -> dict[str, str]:
    """host-exec's whole environment."""
    env = {k: os.environ[k] for k in HOST_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return {**env, "DRILLKIT_RUN_ID": ctx.stack.run_id, "DRILLKIT_APP_URL": ctx.stack.app_url}


def run_in_group(
    argv: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run argv in its own session (process group); on timeout the whole group is killed (a
    command's children do not outlive the step) and TimeoutExpired is raised."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        with cancel.killable(lambda: os.killpg(proc.pid, signal.SIGKILL)):  # a stopped step
            out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):  # leftovers of a finished command too
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@FAULTS("host-exec")
@RECOVERY("host-exec")
def host_exec(
    ctx: DrillContext, command: str, expect_exit: int = 0, timeout: Duration = Duration(60.0)
) -> str:
    """Run a shell command on the host: only when the operator opted in
    (--drill-allow-host-exec). The environment is PATH, HOME, DRILLKIT_RUN_ID and
    DRILLKIT_APP_URL only; the command runs in its own process group, killed whole on timeout."""
    if not HOST_EXEC.allowed:
        raise StepFailed(
            "host-exec", "refused: the operator did not opt in (--drill-allow-host-exec)"
        )
    try:
        proc = run_in_group(["sh", "-c", command], host_env(ctx), float(timeout))
    except subprocess.TimeoutExpired as exc:
        raise StepFailed("host-exec", f"`{command[:200]}` overran {timeout:g} s") from exc
    if proc.returncode != expect_exit:
        raise StepFailed(
            "host-exec", f"`{command[:200]}` exited {proc.returncode}: {proc.stderr[-400:]}"
        )
    return proc.stdout


@FAULTS("hold")
@RECOVERY("hold")
def hold(ctx: DrillContext, duration: Duration) -> str:
    """Let the fault last (or let an operator observe) for a fixed time: a drill parameter, not a
    wait for a condition."""
    cancel.sleep(duration)  # a stopped step ends its hold
    return f"held {duration:g} s"
