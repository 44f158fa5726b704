"""Generic steps that run a team's own commands: in a service, on the host (opt-in), or a hold."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

from drillkit.catalog._common import bounded, redact
from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import EnvironmentBroken, StepFailed
from drillkit.stack.stack import ExecResult


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
    time.sleep(duration)
    return f"held {duration:g} s"


# ----- the team's own runbook scripts ---------------------------------------------------------

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TIMED_OUT = (124, 137)
"""Exit codes of a command killed by its timeout (`timeout -s KILL` answers 137)."""


def _outcome(
    ctx: DrillContext, step: str, what: str, res: ExecResult, expect_exit: int, timeout: float
) -> str:
    """The step's record: exit code and output (bounded, secrets redacted); StepFailed unless
    the command exited with expect_exit."""
    out = bounded(redact(ctx, res.output.rstrip()))
    if res.exit_code != expect_exit:
        why = (
            f"was killed at its timeout of {timeout:g} s"
            if res.exit_code in TIMED_OUT and expect_exit not in TIMED_OUT
            else f"exited {res.exit_code} (expected {expect_exit})"
        )
        raise StepFailed(step, f"{what} {why}: {out[-1500:] or '(no output)'}")
    return f"{what} exited {res.exit_code}\n{out}".rstrip()


@RECOVERY("run-script")
@FAULTS("run-script")
def run_script(
    ctx: DrillContext,
    service: Service,
    script: str = "",
    command: list[str] | None = None,
    user: str = "",
    expect_exit: int = 0,
    timeout: Duration = Duration(120.0),
) -> str:
    """Run the team's own runbook script inside a service: `script`, a path inside the container
    (it must exist and be executable), or `command`, an argv list (no shell unless it names one).
    As the service's own user unless `user` (e.g. root). The step fails unless it exits with
    expect_exit; the output is recorded bounded, with the run's secrets redacted."""
    if bool(script) == bool(command):
        raise StepFailed("run-script", "give exactly one of script (a path) or command (an argv)")
    ctx.stack.require_running(service)
    as_user = user or service_user(ctx, service)
    if script:
        if not script.startswith("/"):
            raise StepFailed("run-script", f"script {script!r}: expected an absolute path")
        probe = ctx.stack.exec(
            service,
            ["sh", "-c", 'test -e "$1" || exit 3; test -x "$1" || exit 4', "sh", script],
            user=as_user,
            timeout_s=10,
        )
        if probe.exit_code == 3:
            raise StepFailed("run-script", f"no script {script} in {service}")
        if probe.exit_code == 4:
            raise StepFailed(
                "run-script",
                f"{script} in {service} is not executable by {as_user} (chmod +x it, or give "
                f"command: [sh, {script}])",
            )
        argv = [script]
    else:
        argv = list(command or [])
    res = ctx.stack.exec(service, argv, user=as_user, timeout_s=float(timeout))
    return _outcome(
        ctx,
        "run-script",
        f"`{shlex.join(argv)[:200]}` in {service} as {as_user}",
        res,
        expect_exit,
        float(timeout),
    )


def oneoff_env(ctx: DrillContext, env: list[str], source: str | None) -> dict[str, str]:
    """`KEY=VALUE` items as given; a bare `KEY` copies that variable from the source service's
    container (the service the image or the volumes come from): how a restore script gets the
    database password without the scenario holding it."""
    out: dict[str, str] = {}
    given: dict[str, str] = {}
    if source is not None and any("=" not in item for item in env):
        config = ctx.stack.container(source).attrs.get("Config") or {}
        given = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    for item in env:
        key, sep, value = item.partition("=")
        if not ENV_NAME.fullmatch(key):
            raise StepFailed("run-container", f"env {item[:60]!r}: expected KEY=VALUE or KEY")
        if sep:
            out[key] = value
        elif key in given:
            out[key] = given[key]
        else:
            raise StepFailed(
                "run-container",
                f"env {key}: {source or 'no service'} has no variable {key} to copy"
                if source
                else f"env {key}: a bare name copies from a service (volumes_from or a "
                "service as image); give KEY=VALUE",
            )
    return out


def run_oneoff(
    ctx: DrillContext,
    image: str,
    command: list[str],
    *,
    volumes_from: str | None,
    env: dict[str, str],
    user: str | None,
    timeout_s: float,
) -> ExecResult:
    """stack.run_oneoff (a labelled container on the run's internal network, the command run as
    given, removed after), with an image that is neither a service nor local as the step's
    failure: drillkit pulls nothing."""
    try:
        return ctx.stack.run_oneoff(
            image, command, volumes_from=volumes_from, env=env, user=user, timeout_s=timeout_s
        )
    except EnvironmentBroken as exc:
        if "neither a service" in str(exc):
            raise StepFailed("run-container", str(exc)) from None
        raise


@RECOVERY("run-container")
@FAULTS("run-container")
def run_container(
    ctx: DrillContext,
    image: str,
    command: list[str],
    volumes_from: str = "",
    env: list[str] | None = None,
    user: str = "",
    expect_exit: int = 0,
    timeout: Duration = Duration(300.0),
) -> str:
    """Run a one-off container of `image` (a service's name: its image; or a local image) on the
    stack's internal network, with `volumes_from` a service's volumes (its container may be
    stopped): the team's restore.sh with pg_restore, a pg_dump into the backup volume. `env`:
    KEY=VALUE, or a bare KEY copied from that service. Fails unless it exits with expect_exit;
    output recorded bounded, secrets redacted; the container is removed after."""
    if not command:
        raise StepFailed("run-container", "command: give the argv to run (a non-empty list)")
    services = ctx.stack.services
    if volumes_from and volumes_from not in services:
        raise StepFailed(
            "run-container",
            f"volumes_from {volumes_from!r}: no such service (the stack has: {', '.join(services)})",
        )
    source = volumes_from or (image if image in services else None)
    res = run_oneoff(
        ctx,
        image,
        list(command),
        volumes_from=volumes_from or None,
        env=oneoff_env(ctx, list(env or []), source),
        user=user or None,
        timeout_s=float(timeout),
    )
    where = f" with {volumes_from}'s volumes" if volumes_from else ""
    return _outcome(
        ctx,
        "run-container",
        f"`{shlex.join(command)[:200]}` in a one-off {image}{where}",
        res,
        expect_exit,
        float(timeout),
    )
