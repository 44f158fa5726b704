"""The Docker engine: one client per process, with the checks every drill needs before it starts."""

from __future__ import annotations

import functools
import os
import shutil
import signal

import docker
import docker.errors

from drillkit.errors import EnvironmentBroken

LABEL = "io.drillkit"
"""Every container, network and volume drillkit creates carries this label (value: 'true')."""
RUN_LABEL = "io.drillkit.run"
"""The run id of the drill that created the resource."""
SERVICE_LABEL = "io.drillkit.service"
OWNER_LABEL = "io.drillkit.owner-pid"
"""pid of the harness process that created the resource: a dead owner means an orphan to reap."""

# testcontainers (drillkit.fixtures, a team's own containers): Ryuk's image cannot be pulled (we
# reap by our labels), and on this VM it would resolve the engine host from inside-container
# heuristics (the bridge gateway): talk to the engine's host, reach ports on 127.0.0.1.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")


@functools.cache
def client() -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (or the default socket), API version negotiated."""
    try:
        c = docker.from_env(version="auto", timeout=120)
        c.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise EnvironmentBroken(
            f"no Docker engine answers ({exc}); run `make engine` (root on Debian installs and "
            "starts one), start Docker yourself, or set DOCKER_HOST"
        ) from exc
    return c


def check_guardrails(min_free_disk_gib: float = 2.0, path: str = "/var/lib/docker") -> None:
    """Refuse to inject anything when the engine is unhealthy or the host is short of disk."""
    try:
        client().ping()
    except docker.errors.DockerException as exc:
        raise EnvironmentBroken(f"Docker engine stopped answering: {exc}") from exc
    probe = path if os.path.exists(path) else "/"
    free_gib = shutil.disk_usage(probe).free / 2**30
    if free_gib < min_free_disk_gib:
        raise EnvironmentBroken(
            f"only {free_gib:.1f} GiB free on {probe}; a drill needs {min_free_disk_gib:g} GiB "
            "(free space, or lower --drill-min-free-disk)"
        )


def kill_exec(api: docker.APIClient, exec_id: str) -> None:
    """Kill a running `docker exec` and its children (the process group of the `timeout` that
    wraps every exec): used when the step that started it is stopped. The exec's Pid is a host
    pid; it is killed only when /proc shows it inside the exec's container (a harness in another
    pid namespace kills nothing by mistake)."""
    info = api.exec_inspect(exec_id)
    pid, container = int(info.get("Pid") or 0), str(info.get("ContainerID") or "")
    if not info.get("Running") or pid <= 0 or not container:
        return
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            if container not in f.read():
                return
        os.killpg(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        return
