"""Disk full: ballast on the data volume, check and free."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from drillkit.core.context import DrillContext
from drillkit.core.registry import FAULTS, RECOVERY, Duration, Service
from drillkit.errors import EnvironmentBroken, StepFailed


@dataclass
class DiskBallast:
    """The file fill-disk wrote (free-disk deletes it)."""

    path: str | None = None


@FAULTS("fill-disk", needs=("data_fs",))
def fill_disk(ctx: DrillContext, leave_bytes: int = 0) -> str:
    """Fill the primary's data filesystem (a real ext4 on a loop device) with a ballast file."""
    fs = ctx.stack.loopfs
    if fs is None:
        raise EnvironmentBroken(
            "fill-disk needs the stack option data_fs (the data directory on its "
            "own filesystem); add `stack: {data_fs: 96MiB}` to the scenario"
        )
    ballast = Path(fs.mountpoint) / "drillkit-ballast"
    free = fs.free_bytes()
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
    ctx.part(DiskBallast).path = str(ballast)
    return f"filled {free} bytes; {fs.free_bytes()} bytes left on {fs.mountpoint}"


@RECOVERY("check-disk", needs=("data_fs",))
def check_disk(
    ctx: DrillContext, service: Service = Service("primary"), after: Duration = Duration(0.0)
) -> str:
    """df on the data filesystem and what PostgreSQL logged (errors, PANIC) since the fault.
    `after`: how long the fault stands before the operator looks."""
    time.sleep(after)
    fs = ctx.stack.loopfs
    df = f"{fs.free_bytes()} bytes free" if fs else "n/a"
    c = ctx.stack.container(service)
    since = int(ctx.result.wall(ctx.result.markers.get("fault", ctx.clock()))) - 1
    logs = ctx.log_since(service, since)
    errs = [ln.strip() for ln in logs.splitlines() if "No space left" in ln or "PANIC" in ln]
    ctx.result.pg_errors.extend(errs[-10:])
    ctx.figure("disk_full_errors", len(errs))
    ctx.figure("postgres_panicked", any("PANIC" in e for e in errs))
    ctx.evidence("PostgreSQL under a full disk", "\n".join(errs[-20:]) or "(no errors logged)")
    return f"data filesystem: {df}; container {c.status}; {len(errs)} disk errors logged"


@RECOVERY("free-disk")
def free_disk(ctx: DrillContext) -> str:
    """Delete the ballast fill-disk wrote. Fails when there is none (nothing was freed)."""
    ballast = ctx.part(DiskBallast).path
    if not ballast:
        raise StepFailed("free-disk", "no ballast to remove (fill-disk did not run)")
    try:
        size = Path(ballast).stat().st_size
        Path(ballast).unlink()
    except FileNotFoundError:
        raise StepFailed("free-disk", f"the ballast {ballast} is gone already") from None
    ctx.part(DiskBallast).path = None
    return f"ballast removed ({size} bytes freed)"
