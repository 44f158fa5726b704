"""Disk full: ballast on a service's filesystem (bounded: never the host's own disk), check, free."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from drillkit.catalog._common import data_dir
from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import StepFailed
from drillkit.stack.hostfs import LoopFs

BALLAST = "drillkit-ballast"
MIN_HOST_FREE_GIB = 4.0
"""What the host's disk keeps free whatever a fill asks: a fill that would leave less is refused."""
HOST_DISK = "/"


@dataclass
class DiskBallast:
    """The file fill-disk wrote (free-disk deletes it): a host path on the stack's loop
    filesystem, or a path inside `service`."""

    path: str | None = None
    service: str | None = None
    """Set when the ballast lies inside the service (written through the engine)."""


def _loopfs(ctx: DrillContext) -> LoopFs | None:
    """The stack's own data filesystem (stack option data_fs), if it has one."""
    try:
        return ctx.stack.loopfs
    except (KeyError, AttributeError):
        return None


def _fs_free(ctx: DrillContext, service: str, path: str) -> tuple[int, int]:
    """(free bytes for unprivileged writers, total bytes) of the filesystem holding `path` in
    the service (GNU stat; any Debian-based image has it)."""
    res = ctx.stack.exec(service, ["stat", "-f", "-c", "%a %b %S", path], user="root", timeout_s=10)
    parts = res.output.split()
    if res.exit_code != 0 or len(parts) != 3 or not all(x.isdigit() for x in parts):
        raise StepFailed("fill-disk", f"no filesystem at {path} in {service}: {res.output[:200]}")
    avail, blocks, size = (int(x) for x in parts)
    return avail * size, blocks * size


def fill_plan(free: int, leave_bytes: int, max_fill_mib: int, host_free: int) -> int:
    """How many bytes to write, or StepFailed with why a fill of this size is refused: more than
    max_fill_mib (the filesystem is not a bounded one made for the drill), or it would leave the
    host's disk under MIN_HOST_FREE_GIB free (the volume may be on it)."""
    amount = max(0, free - leave_bytes)
    if amount == 0:
        raise StepFailed(
            "fill-disk", f"nothing to fill: {free} bytes free, leave_bytes {leave_bytes}"
        )
    if amount > max_fill_mib * 2**20:
        raise StepFailed(
            "fill-disk",
            f"the filesystem has {free / 2**20:.0f} MiB free, more than max_fill_mib "
            f"({max_fill_mib}): refusing to fill what may be the host's disk; give the "
            "database a bounded filesystem (`stack: {data_fs: 96MiB}`) or mount a small "
            "volume at the path",
        )
    if host_free - amount < MIN_HOST_FREE_GIB * 2**30:
        raise StepFailed(
            "fill-disk",
            f"writing {amount / 2**20:.0f} MiB would leave the host's disk under "
            f"{MIN_HOST_FREE_GIB:g} GiB free ({host_free / 2**30:.1f} GiB now): refused",
        )
    return amount


@FAULTS("fill-disk")
def fill_disk(
    ctx: DrillContext,
    service: Service = Service("primary"),
    path: str = "",
    leave_bytes: int = 0,
    max_fill_mib: int = 1024,
) -> str:
    """Fill a real filesystem with a ballast file: the primary's data filesystem when the stack
    has one of its own (`stack: {data_fs: 96MiB}`: ext4 on a loop device), else the filesystem
    holding `path` in the service (default: a database's data directory), written inside the
    container with fallocate. Bounded: refused when more than max_fill_mib MiB are free or the
    host's disk would keep less than 4 GiB."""
    fs = _loopfs(ctx)
    if fs is not None and service == ctx.stack.databases[0] and not path:
        return _fill_loopfs(ctx, leave_bytes, max_fill_mib)
    if not path:
        if service not in ctx.stack.databases:
            raise StepFailed(
                "fill-disk", f"{service} is no database: give path (a directory in it)"
            )
        path = data_dir(ctx, service)
    ctx.stack.require_running(service)
    free, _total = _fs_free(ctx, service, path)
    amount = fill_plan(free, leave_bytes, max_fill_mib, shutil.disk_usage(HOST_DISK).free)
    ballast = f"{path.rstrip('/')}/{BALLAST}"
    q = shlex.quote(ballast)
    script = (
        f"fallocate -l {amount} {q} 2>/dev/null || "
        f"dd if=/dev/zero of={q} bs=65536 count={amount // 65536 + 1} 2>/dev/null; "
        f"dd if=/dev/zero of={q} bs=65536 oflag=append conv=notrunc 2>/dev/null; sync; "
        f"test -e {q}"
    )
    res = ctx.stack.exec(service, script, user="root", timeout_s=120)
    if res.exit_code != 0:
        raise StepFailed("fill-disk", f"could not write {ballast} in {service}: {res.output[:300]}")
    ctx.part(DiskBallast).path, ctx.part(DiskBallast).service = ballast, service
    left, _ = _fs_free(ctx, service, path)
    ctx.figure("ballast_bytes", free - left)
    return f"filled {free - left} bytes under {path} in {service}; {left} bytes left"


def _fill_loopfs(ctx: DrillContext, leave_bytes: int, max_fill_mib: int) -> str:
    fs = _loopfs(ctx)
    assert fs is not None
    ballast = Path(fs.mountpoint) / BALLAST
    free = fs.free_bytes()
    fill_plan(free, leave_bytes, max_fill_mib, shutil.disk_usage(HOST_DISK).free)
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        # real blocks, reserved at once; then byte writes take whatever fallocate left
        with contextlib.suppress(OSError):
            os.posix_fallocate(fd, 0, max(1, free - leave_bytes))
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):  # ENOSPC is the point
            while fs.free_bytes() > leave_bytes:
                os.lseek(fd, 0, os.SEEK_END)
                if os.write(fd, chunk) <= 0:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    ctx.part(DiskBallast).path, ctx.part(DiskBallast).service = str(ballast), None
    return f"filled {free} bytes; {fs.free_bytes()} bytes left on {fs.mountpoint}"


@RECOVERY("check-disk")
def check_disk(
    ctx: DrillContext, service: Service = Service("primary"), after: Duration = Duration(0.0)
) -> str:
    """df on the filled filesystem and what the service logged (errors, PANIC) since the fault.
    `after`: how long the fault stands before the operator looks."""
    time.sleep(after)
    ballast = ctx.part(DiskBallast)
    c = ctx.stack.container(service)
    fs = _loopfs(ctx)
    df = "n/a"
    if ballast.service is None and fs is not None:
        df = f"{fs.free_bytes()} bytes free"
    elif ballast.service is not None and ballast.path and c.status == "running":
        with contextlib.suppress(StepFailed):
            df = f"{_fs_free(ctx, ballast.service, str(Path(ballast.path).parent))[0]} bytes free"
    since = int(ctx.result.wall(ctx.result.markers.get("fault", ctx.clock()))) - 1
    logs = ctx.log_since(service, since)
    errs = [ln.strip() for ln in logs.splitlines() if "No space left" in ln or "PANIC" in ln]
    ctx.result.pg_errors.extend(errs[-10:])
    ctx.figure("disk_full_errors", len(errs))
    ctx.figure("postgres_panicked", any("PANIC" in e for e in errs))
    ctx.evidence(f"{service} under a full disk", "\n".join(errs[-20:]) or "(no errors logged)")
    return f"filled filesystem: {df}; container {c.status}; {len(errs)} disk errors logged"


@RECOVERY("free-disk")
def free_disk(ctx: DrillContext) -> str:
    """Delete the ballast fill-disk wrote (through a one-off container with the service's
    volumes when the service is down). Fails when there is none (nothing was freed)."""
    part = ctx.part(DiskBallast)
    ballast = part.path
    if not ballast:
        raise StepFailed("free-disk", "no ballast to remove (fill-disk did not run)")
    if part.service is None:
        try:
            size = Path(ballast).stat().st_size
            Path(ballast).unlink()
        except FileNotFoundError:
            raise StepFailed("free-disk", f"the ballast {ballast} is gone already") from None
        part.path = None
        return f"ballast removed ({size} bytes freed)"
    return _free_inside(ctx, part.service, ballast)


def _free_inside(ctx: DrillContext, service: str, ballast: str) -> str:
    from drillkit.catalog.commands import run_oneoff

    q = shlex.quote(ballast)
    script = f"test -e {q} || exit 3; s=$(stat -c %s {q}); rm -f {q} && echo $s"
    c = ctx.stack.container(service)
    if c.status == "running":
        res = ctx.stack.exec(service, script, user="root", timeout_s=60)
    else:
        res = run_oneoff(
            ctx,
            service,
            ["sh", "-c", script],
            volumes_from=service,
            env={},
            user="root",
            timeout_s=60,
        )
    if res.exit_code == 3:
        raise StepFailed("free-disk", f"the ballast {ballast} in {service} is gone already")
    if res.exit_code != 0:
        raise StepFailed(
            "free-disk", f"could not remove {ballast} in {service}: {res.output[:300]}"
        )
    ctx.part(DiskBallast).path = None
    return f"ballast removed from {service} ({res.output.strip().splitlines()[-1]} bytes freed)"
