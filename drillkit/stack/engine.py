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
OWNER_PIDNS_LABEL = "io.drillkit.owner-pidns"
"""The owner's pid namespace (the inode of /proc/self/ns/pid): its pid means something only to a
reaper in the same namespace."""
OWNER_BOOT_LABEL = "io.drillkit.owner-boot"
"""The owner's kernel boot id: after a reboot every recorded pid is meaningless."""
OWNER_START_LABEL = "io.drillkit.owner-start"
"""The owner's start time (clock ticks since boot, /proc/self/stat): a reused pid is not the owner."""
CREATED_LABEL = "io.drillkit.created"
"""When the resource was created (unix seconds): a foreign owner's run is judged by its age."""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """The inode of this process's pid namespace ('' where /proc does not tell)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def start_ticks(pid: int | str = "self") -> str:
    """A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def owner_labels() -> dict[str, str]:
    """Who owns what this process creates: its pid, pid namespace, boot and start time."""
    import time

    return {
        OWNER_LABEL: str(os.getpid()),
        OWNER_PIDNS_LABEL: pid_namespace(),
        OWNER_BOOT_LABEL: boot_id(),
        OWNER_START_LABEL: start_ticks(),
        CREATED_LABEL: str(int(time.time())),
    }


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
