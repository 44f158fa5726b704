"""The Docker engine: one client per process, with the checks every drill needs before it starts.

Without `--drill-engines` the engine is DOCKER_HOST's (or the default socket). With it, the plugin
calls `use()` once per process with the engine the xdist worker takes (drillkit.stack.engines),
and every `client()` of the process is that engine's. `on(endpoint)` switches it for a block (the
per-engine loop of `drillkit clean`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator

import docker
import docker.errors
import docker.tls

from drillkit.errors import EnvironmentBroken
from drillkit.stack import engines
from drillkit.stack.engines import Endpoint

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


_lock = threading.Lock()
_chosen: Endpoint | None = None
_override: list[Endpoint] = []
_clients: dict[str, docker.DockerClient] = {}


def use(endpoint: Endpoint | None) -> None:
    """Make `endpoint` this process's engine (None: back to DOCKER_HOST / the default socket)."""
    global _chosen
    with _lock:
        _chosen = endpoint


def current() -> Endpoint:
    """The engine `client()` talks to."""
    with _lock:
        if _override:
            return _override[-1]
        return _chosen if _chosen is not None else engines.default_endpoint()


@contextlib.contextmanager
def on(endpoint: Endpoint) -> Iterator[docker.DockerClient]:
    """`client()` is `endpoint`'s inside the block (for one thread's loop over engines)."""
    with _lock:
        _override.append(endpoint)
    try:
        yield client()
    finally:
        with _lock:
            _override.remove(endpoint)


def client() -> docker.DockerClient:
    """A client for the current engine (API version negotiated), one per engine per process."""
    ep = current()
    with _lock:
        cached = _clients.get(ep.url)
    if cached is not None:
        return cached
    try:
        c = _connect(ep)
        c.ping()
    except (docker.errors.DockerException, OSError) as exc:
        if ep == engines.default_endpoint() and _chosen is None:
            raise EnvironmentBroken(
                f"no Docker engine answers ({exc}); run `make engine` (root on Debian installs "
                "and starts one), start Docker yourself, or set DOCKER_HOST"
            ) from exc
        raise EnvironmentBroken(f"Docker engine {ep.shown} does not answer: {exc}") from exc
    with _lock:
        return _clients.setdefault(ep.url, c)


def _connect(ep: Endpoint) -> docker.DockerClient:
    if ep == engines.default_endpoint() and ep.tls_dir is None:
        return docker.from_env(version="auto", timeout=120)  # DOCKER_HOST, DOCKER_TLS_VERIFY ...
    if ep.scheme == "ssh":
        return docker.DockerClient(
            base_url=ep.url, version="auto", timeout=120, use_ssh_client=True
        )
    tls: docker.tls.TLSConfig | bool = False
    if ep.scheme == "tcp" and ep.tls_dir is not None:
        tls = docker.tls.TLSConfig(
            client_cert=(str(ep.tls_dir / "cert.pem"), str(ep.tls_dir / "key.pem")),
            ca_cert=str(ep.tls_dir / "ca.pem"),
            verify=True,
        )
    return docker.DockerClient(base_url=ep.url, version="auto", timeout=120, tls=tls)


def check_reachable() -> None:
    """Refuse, before a stack starts, an engine whose 127.0.0.1 ports and host files are not this
    machine's (engines.refusal)."""
    reason = engines.refusal(current(), [])
    if reason:
        raise EnvironmentBroken(reason)


def check_guardrails(min_free_disk_gib: float = 2.0, path: str = "/var/lib/docker") -> None:
    """Refuse to inject anything when the engine is unhealthy or not on this host, or the host is
    short of disk."""
    check_reachable()
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
