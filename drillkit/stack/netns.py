"""A container's network namespace, from the host: its host pid, and commands run inside it."""

from __future__ import annotations

import subprocess

from docker.models.containers import Container

from drillkit.errors import EnvironmentBroken


def host_pid(c: Container) -> int:
    c.reload()
    pid = int(c.attrs["State"]["Pid"])
    if pid <= 0:
        raise EnvironmentBroken(f"{c.name} is not running (no host pid)")
    return pid


def nsenter(c: Container, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a host command inside the container's network namespace (iptables needs no capability
    in the container this way)."""
    return subprocess.run(
        ["nsenter", "-t", str(host_pid(c)), "-n", *argv], capture_output=True, text=True, timeout=10
    )
