"""Process and service lifecycle: kill, stop, pause, restart, wait for health, maintenance mode."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from typing import Any

import docker.errors
import requests
from docker.models.containers import Container

from drillkit.catalog._common import data_dir, is_compose
from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import EnvironmentBroken, StepFailed
from drillkit.stack.services.payments import PROVIDERS
from drillkit.wait import wait_for

POSTMASTER_PID = r"""
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
  pid=
  for d in /proc/[0-9]*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    case "$c" in postgres|postmaster) ;; *) continue ;; esac
    pp=$(sed -n 's/^PPid:[[:space:]]*//p' "$d/status" 2>/dev/null)
    pc=$(cat "/proc/$pp/comm" 2>/dev/null)
    case "$pc" in postgres|postmaster) continue ;; esac
    pid=${d#/proc/}; break
  done
fi
[ -n "$pid" ] || exit 3
echo "$pid"
"""
"""The postmaster's pid inside a container: the first line of postmaster.pid in the data
directory ($1) when that process lives, else the postgres process whose parent is not one."""

PROCESS_TABLE = r""": drillkit-ps
for d in /proc/[0-9]*; do
  printf '%s\t' "${d#/proc/}"; tr '\0' ' ' < "$d/cmdline" 2>/dev/null; echo
done
"""
"""Every process of a container as `pid<TAB>command line` (/proc only: no procps needed)."""

SIGNALS = ("KILL", "TERM", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2")


def _running(ctx: DrillContext, service: str, step: str) -> Container:
    """The service's container, which must be running (a step with nothing to act on fails)."""
    c = ctx.stack.container(service)
    if c.status != "running":
        raise StepFailed(
            step, f"{service} is not running (container {c.status}): nothing to act on"
        )
    return c


def _gone(ctx: DrillContext, c: Container, service: str, pids: list[int]) -> bool:
    """The container stopped, or none of the pids lives any more."""
    c.reload()
    if c.status != "running":
        return True
    args = " ".join(str(p) for p in pids)
    check = f"for p in {args}; do kill -0 $p 2>/dev/null && exit 1; done; exit 0"
    return ctx.stack.exec(service, check, user="root", timeout_s=5).exit_code == 0


def _signal(c: Container, ctx: DrillContext, service: str, pids: list[int], sig: str) -> None:
    """Send the signal; pid 1 (the container's own process: a signal from inside its namespace
    is ignored) gets it from the engine, like `docker kill -s`."""
    inside = [p for p in pids if p != 1]
    if inside:
        args = " ".join(str(p) for p in inside)
        with contextlib.suppress(docker.errors.APIError):  # the container may die with them
            ctx.stack.exec(service, f"kill -{sig} {args}", user="root", timeout_s=10)
    if 1 in pids:
        with contextlib.suppress(docker.errors.APIError):  # it may be dead already
            c.kill(signal=f"SIG{sig}")


@FAULTS("kill-postmaster")
def kill_postmaster(ctx: DrillContext, service: Service = Service("primary")) -> str:
    """SIGKILL the PostgreSQL postmaster of a database service, found through postmaster.pid in
    its data directory (or the process table): the database crashes as on a power cut."""
    c = _running(ctx, service, "kill-postmaster")
    res = ctx.stack.exec(
        service,
        ["sh", "-c", POSTMASTER_PID, "sh", data_dir(ctx, service)],
        user="root",
        timeout_s=10,
    )
    if res.exit_code != 0 or not res.output.strip().isdigit():
        raise StepFailed(
            "kill-postmaster",
            f"no PostgreSQL postmaster in {service} (no live pid in "
            f"{data_dir(ctx, service)}/postmaster.pid, no postgres process): {res.output[:200]}",
        )
    pid = int(res.output.strip())
    _signal(c, ctx, service, [pid], "KILL")
    try:
        wait_for(
            lambda: _gone(ctx, c, service, [pid]),
            what=f"{service}'s postmaster to die",
            timeout_s=10,
            transient=(docker.errors.APIError,),
        )
    except EnvironmentBroken as exc:
        raise StepFailed("kill-postmaster", f"postmaster {pid} of {service} survived") from exc
    return f"postmaster (pid {pid}) of {service} killed with SIGKILL; container {c.status}"


def processes(ctx: DrillContext, service: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process in the service, the listing's own left out."""
    res = ctx.stack.exec(service, ["sh", "-c", PROCESS_TABLE], user="root", timeout_s=10)
    out = []
    for line in res.output.splitlines():
        pid, _, cmd = line.partition("\t")
        cmd = cmd.strip()
        if pid.isdigit() and cmd and "drillkit-ps" not in cmd and not cmd.startswith("tr "):
            out.append((int(pid), cmd))
    return out


@FAULTS("kill-process")
@RECOVERY("kill-process")
def kill_process(ctx: DrillContext, service: Service, process: str, signal: str = "KILL") -> str:
    """Send a signal (KILL, TERM, INT, HUP, QUIT, STOP, CONT, USR1, USR2) to every process of the
    service whose command line matches `process` (a regular expression). Fails when none does."""
    sig = signal.upper().removeprefix("SIG")
    if sig not in SIGNALS:
        raise StepFailed("kill-process", f"signal {signal!r}: expected one of {', '.join(SIGNALS)}")
    try:
        pattern = re.compile(process)
    except re.error as exc:
        raise StepFailed(
            "kill-process", f"process {process!r}: not a regular expression: {exc}"
        ) from None
    c = _running(ctx, service, "kill-process")
    table = processes(ctx, service)
    hit = [(pid, cmd) for pid, cmd in table if pattern.search(cmd)]
    if not hit:
        names = sorted({cmd.split(" ")[0] for _, cmd in table})
        raise StepFailed(
            "kill-process",
            f"no process matching {process!r} in {service} (running: {', '.join(names[:15])})",
        )
    pids = [pid for pid, _ in hit]
    _signal(c, ctx, service, pids, sig)
    if sig in ("KILL", "TERM", "INT", "QUIT"):
        try:
            wait_for(
                lambda: _gone(ctx, c, service, pids),
                what=f"{process!r} in {service} to end",
                timeout_s=15,
                transient=(docker.errors.APIError,),
            )
        except EnvironmentBroken as exc:
            raise StepFailed("kill-process", f"SIG{sig} did not end {pids} in {service}") from exc
    ctx.evidence(f"processes signalled in {service}", "\n".join(f"{p}\t{c}" for p, c in hit))
    return f"SIG{sig} sent to {len(pids)} process(es) matching {process!r} in {service}: {pids}"


@FAULTS("kill-container")
def kill_container(ctx: DrillContext, service: Service) -> str:
    """SIGKILL a service's whole container; it stays dead."""
    c = _running(ctx, service, "kill-container")
    c.kill(signal="SIGKILL")
    wait_for(lambda: (c.reload(), c.status != "running")[1], what=f"{service} to die", timeout_s=10)
    return f"container {c.name} killed"


@FAULTS("stop-container")
def stop_container(ctx: DrillContext, service: Service, grace: Duration = Duration(10.0)) -> str:
    """Stop a service's container as `docker stop` does (SIGTERM, SIGKILL after `grace`)."""
    c = _running(ctx, service, "stop-container")
    c.stop(timeout=int(grace))
    c.reload()
    return f"container {c.name} stopped ({c.status})"


@FAULTS("pause-container")
def pause_container(ctx: DrillContext, service: Service) -> str:
    """Freeze a service (cgroup freezer) until a recovery step unpauses it."""
    c = _running(ctx, service, "pause-container")
    c.pause()
    ctx.cleanups.append(lambda: _unpause_quietly(c))
    return f"{service} paused"


def _unpause_quietly(c: Container) -> None:
    with contextlib.suppress(docker.errors.APIError):
        c.reload()
        if c.status == "paused":
            c.unpause()


@RECOVERY("unpause-container")
def unpause_container(ctx: DrillContext, service: Service) -> str:
    """Unfreeze a paused service and wait until it serves. Fails when it is not paused."""
    c = ctx.stack.container(service)
    if c.status != "paused":
        raise StepFailed("unpause-container", f"{service} is not paused (container {c.status})")
    c.unpause()
    _wait_service(ctx, service)
    return f"{service} unpaused and serving"


@RECOVERY("start-container")
def start_container(ctx: DrillContext, service: Service) -> str:
    """Start a stopped or killed service's container and wait until it serves. Fails when it is
    running already (nothing to start)."""
    c = ctx.stack.container(service)
    if c.status in ("running", "paused"):
        raise StepFailed("start-container", f"{service} is {c.status} already: nothing to start")
    c.start()
    _wait_service(ctx, service)
    return f"{service} started and serving"


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
    if c.status == "running" and service in ctx.stack.databases:
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
    """Until the service serves: PostgreSQL accepts connections; an app answers its declared
    health check; another service runs (and is healthy, when its image has a healthcheck)."""
    stack = ctx.stack
    apps = getattr(stack.spec, "apps", None) or {}
    if service in stack.databases:
        stack.wait_pg(service, timeout_s)
    elif is_compose(ctx) and service in apps:
        wait_app_service(ctx, service, timeout_s)
    elif service == "app" and not is_compose(ctx):
        stack.wait_app(timeout_s)
    elif service == "web" and not is_compose(ctx):
        stack.wait_web(timeout_s)
    elif service in PROVIDERS and not is_compose(ctx):
        stack.wait_provider(service, timeout_s)
    else:
        wait_for(
            lambda: _up(ctx, service),
            what=f"{service} to run",
            timeout_s=timeout_s,
            context=stack.log_context(service),
        )


def _up(ctx: DrillContext, service: str) -> bool:
    ctx.stack.require_running(service)
    c = ctx.stack.container(service)
    health = (c.attrs.get("State") or {}).get("Health")
    return c.status == "running" and (health is None or health.get("Status") == "healthy")


def wait_app_service(ctx: DrillContext, service: str, timeout_s: float = 60) -> None:
    """Until a compose app answers its declared health check (apps[service].health)."""
    stack: Any = ctx.stack
    health = stack.spec.apps[service].health

    def healthy() -> bool:
        stack.require_running(service)
        r = requests.get(stack.url(service) + health.path, timeout=2)
        return health.verdict(r.status_code, r.text) is None

    wait_for(
        healthy,
        what=f"{service}'s health check to pass",
        timeout_s=timeout_s,
        transient=(requests.RequestException,),
        context=stack.log_context(service),
    )


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
