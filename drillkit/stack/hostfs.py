"""Host filesystem state a drill creates: small ext4 filesystems on loop devices (disk-full drills)
and a tmpfs for the databases' data directories.

Loop devices and mounts outlive containers, so each lies under the run directory (a loop device
recorded by its backing file) and is reaped by `reap_loopfs()` (make clean, or the next run's
start) after a crash.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drillkit.errors import EnvironmentBroken
from drillkit.wait import wait_for

EXCLUSIVE_WAIT_S = 10.0
"""How long an unmounted loop device may stay held by someone else before fsck is tried anyway."""


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        said = "\n".join(x for x in (proc.stdout.strip(), proc.stderr.strip()) if x)
        raise EnvironmentBroken(f"`{' '.join(argv)}` failed ({proc.returncode}): {said}")
    return proc.stdout.strip()


def _exclusive(device: str) -> bool:
    """The block device can be opened exclusively: no mount, in any namespace, holds it."""
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL))
    except OSError:
        return False
    return True


def await_exclusive(device: str, timeout_s: float = EXCLUSIVE_WAIT_S) -> None:
    """Until nothing holds the device. Unmounted here, the filesystem can still be mounted for a
    moment elsewhere: a container created at that moment (another drill's, on the same engine)
    starts with a copy of the host's mounts, and e2fsck then refuses the device ("Cannot
    continue, aborting")."""
    with contextlib.suppress(EnvironmentBroken):  # e2fsck says what holds it
        wait_for(
            lambda: _exclusive(device),
            what=f"{device} to be free",
            timeout_s=timeout_s,
            transient=(),
        )


@dataclass
class LoopFs:
    image: Path
    mountpoint: Path
    device: str

    @classmethod
    def create(cls, image: Path, mountpoint: Path, size_mib: int) -> LoopFs:
        image.parent.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        with image.open("wb") as f:
            f.truncate(size_mib * 2**20)
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            str(image),
        )
        device = _run("losetup", "--find", "--show", str(image))
        try:
            _run("mount", device, str(mountpoint))
        except EnvironmentBroken:
            _run("losetup", "-d", device)
            raise
        return cls(image, mountpoint, device)

    def free_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def size_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_blocks * st.f_frsize

    def grow_offline(self, add_mib: int) -> None:
        """Extend the filesystem by `add_mib` MiB: unmount, enlarge the backing file and the loop
        device, fsck, resize2fs, mount again. Offline because this kernel refuses online
        resize2fs (EPERM); nothing may hold the mount (stop the container that binds it)."""
        _run("umount", str(self.mountpoint))
        try:
            with self.image.open("r+b") as f:
                f.truncate(self.image.stat().st_size + add_mib * 2**20)
            _run("losetup", "-c", self.device)
            await_exclusive(self.device)
            _run("e2fsck", "-f", "-y", self.device)
            _run("resize2fs", self.device)
        finally:
            _run("mount", self.device, str(self.mountpoint))

    def destroy(self) -> None:
        with contextlib.suppress(EnvironmentBroken):
            _run("umount", "-l", str(self.mountpoint))
        with contextlib.suppress(EnvironmentBroken):
            _run("losetup", "-d", self.device)
        self.image.unlink(missing_ok=True)


@dataclass
class MemFs:
    """A tmpfs mounted under the run directory: data directories bound from it into containers
    survive their restarts (it is the host's mount), and a new stack copies its template into
    memory rather than into a fresh ext4 volume. `size_mib` is a bound, not an allocation: pages
    are taken as files are written, charged to the memory cgroup of the container that writes."""

    mountpoint: Path

    @classmethod
    def create(cls, mountpoint: Path, size_mib: int) -> MemFs:
        mountpoint.mkdir(parents=True, exist_ok=True)
        _run(
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size_mib}m,mode=0755",
            "drillkit-data",
            str(mountpoint),
        )
        return cls(mountpoint)

    def destroy(self) -> None:
        with contextlib.suppress(EnvironmentBroken):
            _run("umount", "-l", str(self.mountpoint))


def reap_loopfs(root: Path) -> list[str]:
    """Unmount and detach every loop filesystem whose backing file lies under `root`."""
    reaped: list[str] = []
    root = root.resolve()
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            mnt = line.split()[1]
            if mnt.startswith(str(root) + "/"):
                with contextlib.suppress(EnvironmentBroken):
                    _run("umount", "-l", mnt)
                    reaped.append(f"mount {mnt}")
    with contextlib.suppress(EnvironmentBroken, FileNotFoundError):
        for line in _run("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].strip().startswith(str(root) + "/"):
                with contextlib.suppress(EnvironmentBroken):
                    _run("losetup", "-d", parts[0])
                    reaped.append(f"loop {parts[0]}")
    return reaped
