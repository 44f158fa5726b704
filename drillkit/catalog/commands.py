"""Generic steps that run a team's own commands: in a service, on the host (opt-in), or a hold."""

from __future__ import annotations

import os
import time

from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import StepFailed


@FAULTS("service-exec")
@RECOVERY("service-exec")
def service_exec(
    ctx: DrillContext,
    service: Service,
    command: str,
    user: str = "root",
    expect_exit: int = 0,
    timeout: Duration = Duration(60.0),
) -> str:
    """Run a shell command inside a service; the step fails unless it exits with expect_exit."""
    res = ctx.stack.exec(service, command, user=user, timeout_s=timeout)
    if res.exit_code != expect_exit:
        raise StepFailed(
            "service-exec",
            f"`{command}` in {service} exited {res.exit_code} "
            f"(expected {expect_exit}): {res.output[-400:]}",
        )
    return res.output


@FAULTS("host-exec")
@RECOVERY("host-exec")
def host_exec(
    ctx: DrillContext, command: str, expect_exit: int = 0, timeout: Duration = Duration(60.0)
) -> str:
    """Run a shell command on the host (env DRILLKIT_RUN_ID, DRILLKIT_APP_URL are set)."""
    import subprocess

    env = {**os.environ, "DRILLKIT_RUN_ID": ctx.stack.run_id, "DRILLKIT_APP_URL": ctx.stack.app_url}
    try:
        proc = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise StepFailed("host-exec", f"`{command}` overran {timeout:g} s") from exc
    if proc.returncode != expect_exit:
        raise StepFailed("host-exec", f"`{command}` exited {proc.returncode}: {proc.stderr[-400:]}")
    return proc.stdout


@FAULTS("hold")
@RECOVERY("hold")
def hold(ctx: DrillContext, duration: Duration) -> str:
    """Let the fault last (or let an operator observe) for a fixed time: a drill parameter, not a
    wait for a condition."""
    time.sleep(duration)
    return f"held {duration:g} s"
