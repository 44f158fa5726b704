"""What the runner records about where a drill ran and what the stack logged, and the guard
that keeps teardown from being interrupted."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import psycopg

from drillkit.stack import engine, engines
from drillkit.stack.stack import Stack


@contextlib.contextmanager
def signals_held() -> Iterator[list[int]]:
    """Teardown is not interruptible: Ctrl-C or SIGTERM arriving while it runs is recorded in the
    yielded list (the caller raises KeyboardInterrupt once its record is saved)."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {
        sig: signal.signal(sig, lambda signum, frame: pending.append(signum)) for sig in held
    }
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def pg_errors(logs: dict[str, str]) -> list[str]:
    """ERROR / PANIC / FATAL lines of every service's log but the app's (the last 30)."""
    out = []
    for service, text in logs.items():
        if service == "app":
            continue
        for line in text.splitlines():
            if any(w in line for w in ("ERROR:", "PANIC:", "FATAL:")) and "starting up" not in line:
                out.append(f"{service}: {line.strip()}"[:300])
    return out[-30:]


def environment(stack: Stack, project: Path) -> dict[str, str]:
    """Which engine (endpoint without credentials, id, host, xdist worker), engine, PostgreSQL
    and image versions, the host, where the database data directories are ("tmpfs" or
    "volumes"), and the git commit of the team's project (`project`; "unknown" when it is not a
    git work tree)."""
    env: dict[str, str] = dict(engines.record(engine.current()))  # which engine, no credential
    try:
        v = engine.client().version()
        env["docker_version"] = str(v.get("Version"))
        env["docker_api"] = str(v.get("ApiVersion"))
        primary = stack.databases[0]  # "primary", or a compose stack's overlay database
        env["postgres_version"] = str(stack.sql(primary, "SHOW server_version")[0][0])
    except (docker.errors.DockerException, psycopg.Error) as exc:
        env["error"] = str(exc)[:200]
    for name, tag in stack.image_tags.items():
        env[f"image_{name}"] = tag
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=5,
        )
        env["git_commit"] = proc.stdout.strip() if proc.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = "unknown"
    env["host"] = os.uname().nodename
    env["database_data"] = "tmpfs" if stack.data_in_memory else "volumes"
    return env
