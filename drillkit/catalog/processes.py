"""Process and service lifecycle: kill, stop, pause, restart, wait for health, maintenance mode."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import docker.errors

from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import EnvironmentBroken, StepFailed
from drillkit.stack.services.payments import PROVIDERS
from drillkit.wait import wait_for


@FAULTS("kill-postmaster")
def kill_postmaster(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """SIGKILL the PostgreSQL postmaster (its container then exits, as a crashed database would)."""
    c = ctx.stack.container(service)
    res = ctx.stack.exec(service, "kill -KILL $(head -1 /pgdata/postmaster.pid)", timeout_s=10)
    # The outcome is the proof, not the exec's exit status: the postmaster's death stops the
    # container, which can take the exec'd shell with it before it reports (exit 137, no output).
    try:
        wait_for(
            lambda: (c.reload(), c.status != "running")[1], what=f"{service} to die", timeout_s=10
        )
    except EnvironmentBroken as exc:
        raise StepFailed(
            "kill-postmaster",
            f"{service} still running after the kill (exit "
            f"{res.exit_code}: {res.output.strip()[:300]})",
        ) from exc
    return f"postmaster of {service} killed with SIGKILL; container {c.status}"


@FAULTS("kill-container")
def kill_container(ctx: DrillContext, service: Service) -> str:
    """SIGKILL a service's whole container; it stays dead."""
    c = ctx.stack.container(service)
    c.kill(signal="SIGKILL")
    wait_for(lambda: (c.reload(), c.status != "running")[1], what=f"{service} to die", timeout_s=10)
    return f"container {c.name} killed"


@FAULTS("stop-services")
def stop_services(ctx: DrillContext, services: list[str]) -> str:
    """Stop several services at once (a complete outage)."""
    threads = [
        threading.Thread(target=lambda s=s: ctx.stack.container(s).kill("SIGKILL"))
        for s in services
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return f"killed {', '.join(services)}"


@FAULTS("pause-service")
def pause_service(ctx: DrillContext, service: Service, duration: Duration) -> str:
    """Freeze a service (SIGSTOP via the cgroup freezer) for exactly `duration`: an outage of known
    length, used to measure the harness's own clock accuracy."""
    c = ctx.stack.container(service)
    c.pause()

    def resume() -> None:
        with contextlib.suppress(docker.errors.APIError):
            c.unpause()

    _undo_after(ctx, duration, resume)
    return f"{service} paused for {duration:g} s"


def _undo_after(ctx: DrillContext, duration: float, undo: Callable[[], object]) -> None:
    """Undo a fault exactly `duration` after now, in the background, and record the true outage
    length (figure `true_outage_s`). Teardown ends the timer early if the drill stops first."""
    t_start = ctx.clock()
    done = threading.Event()

    def run() -> None:
        done.wait(max(0.0, duration - (ctx.clock() - t_start)))
        undo()
        ctx.figure("true_outage_s", ctx.clock() - t_start)

    timer = threading.Thread(target=run, daemon=True)
    timer.start()
    ctx.cleanups.append(lambda: (done.set(), timer.join()))


@RECOVERY("check-service-status")
def check_service_status(ctx: DrillContext, service: Service) -> str:
    """The runbook's first look: container state and pg_isready (never fails the step)."""
    c = ctx.stack.container(service)
    line = f"{service}: container {c.status}"
    if c.status == "running":
        res = ctx.stack.exec(service, "pg_isready -h /run/postgresql", timeout_s=5)
        line += f"; pg_isready: {res.output.strip()}"
    return line


@RECOVERY("restart-service")
def restart_service(ctx: DrillContext, service: Service) -> str:
    """Start (or restart) a service's container and wait until it serves again."""
    c = ctx.stack.container(service)
    if c.status == "running":
        c.restart(timeout=10)
    else:
        c.start()
    _wait_service(ctx, service)
    return f"{service} restarted"


def _wait_service(ctx: DrillContext, service: str, timeout_s: float = 60) -> None:
    if service == "app":
        ctx.stack.wait_app(timeout_s)
    elif service == "web":
        ctx.stack.wait_web(timeout_s)
    elif service in PROVIDERS:
        ctx.stack.wait_provider(service, timeout_s)
    else:
        ctx.stack.wait_pg(service, timeout_s)


@RECOVERY("restart-services")
def restart_services(ctx: DrillContext, order: list[str]) -> str:
    """Start services one after another in dependency order, each ready before the next."""
    for service in order:
        restart_service(ctx, Service(service))
    return f"restarted in order: {', '.join(order)}"


@RECOVERY("wait-app-healthy")
def wait_app_healthy(ctx: DrillContext, timeout: Duration = Duration(60.0)) -> str:
    """Verify the app answers its health check (it reconnects to the database by itself)."""
    ctx.stack.wait_app(timeout)
    return ctx.stack.app_health().text.strip()


@RECOVERY("set-maintenance", needs=("reference-app",))
def set_maintenance(ctx: DrillContext, enabled: bool) -> str:
    """Maintenance mode: the app refuses writes with 503 (seed 002 data-corruption step 1)."""
    ctx.stack.set_maintenance(enabled)
    if enabled:
        r = ctx.app_client().create_order(f"maintenance-check-{ctx.clock()}", "must be refused")
        if r.status_code != 503:
            raise StepFailed("set-maintenance", f"app still accepts writes ({r.status_code})")
        return f"maintenance on: writes answer {r.status_code} {r.text.strip()}"
    return "maintenance off"


@RECOVERY("stop-service")
def stop_service(ctx: DrillContext, service: Service) -> str:
    """Stop a service's container gracefully (20 s), if it runs."""
    c = ctx.stack.container(service)
    if c.status == "running":
        c.stop(timeout=20)
    return f"{service} stopped"


@RECOVERY("reload-app")
def reload_app(ctx: DrillContext) -> str:
    """SIGHUP the app: it re-reads its secret files and reconnects with the new credentials."""
    ctx.stack.reload_app()
    ctx.stack.wait_app(30)
    return "app reloaded and healthy"


@RECOVERY("ensure-running")
def ensure_running(ctx: DrillContext, service: Service) -> str:
    """Start the service if it died (e.g. PostgreSQL PANICked on a full disk), then wait for it."""
    c = ctx.stack.container(service)
    state = c.status
    if state != "running":
        c.start()
    _wait_service(ctx, service)
    return f"{service} was {state}; now serving"


@RECOVERY("check-stack-status")
def check_stack_status(ctx: DrillContext) -> str:
    """The runbook's `docker compose ps`: every service's container state (never fails)."""
    lines = []
    for service in ctx.stack.services:
        c = ctx.stack.container(service)
        state = c.attrs.get("State", {})
        lines.append(f"{service}: {c.status} (exit code {state.get('ExitCode')})")
    report = "\n".join(lines)
    ctx.evidence("service status at the start of recovery", report)
    return report
