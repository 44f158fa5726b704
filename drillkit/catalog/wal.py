"""WAL volume full: the primary's pg_wal on its own filesystem (stack option `wal_fs`) fills
with WAL that cannot be recycled because archiving is stuck (seed 001/002/003 resource exhaustion;
DESIGN.md "WAL volume full").

PostgreSQL keeps every segment whose `.ready` file says it is not yet archived, so a broken
`archive_command` turns ordinary WAL traffic into a pile-up. In production that takes hours
(`archive_timeout` alone switches a segment a minute); the fault compresses it into about a second
with a batch job that switches segments and checkpoints, which is exactly the traffic that would be
harmless with a working archive (each checkpoint recycles the archived segments). When the volume
is full PostgreSQL PANICs ("could not write to file pg_wal/xlogtemp…: No space left on device"),
and it will not start again while the volume is full.

The runbook: look at the volume and the archiver (pg_wal usage, the `.ready` backlog, the failed
archive commands in the log), repair the archive destination, extend the volume (deleting WAL by
hand is the classic way to lose a database), start PostgreSQL, wait until the backlog is archived
and a checkpoint has recycled it.
"""

from __future__ import annotations

import time

import psycopg

from drillkit.core.context import DrillContext
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY, Duration
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.hostfs import LoopFs
from drillkit.wait import wait_for

ARCHIVE_DIR = "/var/lib/pgbackrest/archive/main"
"""pgBackRest's WAL archive of the stanza (in the repository volume the primary pushes to)."""
ARCHIVE_FAILURE_MARKERS = ("archive command failed", "No space left", "PANIC")
MIB = 2**20


def wal_volume(ctx: DrillContext) -> LoopFs:
    fs = ctx.stack.walfs
    if fs is None:
        raise EnvironmentBroken(
            "this step needs the primary's pg_wal on its own filesystem: add "
            "`stack: {wal_fs: 160MiB}` to the scenario"
        )
    return fs


def ready_segments(fs: LoopFs) -> list[str]:
    """WAL segments PostgreSQL has marked ready for archiving and not yet archived, oldest first
    (read from the mounted volume on the host, so it works while PostgreSQL is down)."""
    status = fs.mountpoint / "wal" / "archive_status"
    return sorted(p.name.removesuffix(".ready") for p in status.glob("*.ready"))


def _archive_mode(ctx: DrillContext, mode: str) -> None:
    """chmod the archive directory from a one-off container with the primary's volumes (works
    whether or not the primary runs); the directory is postgres's, so no root is needed."""
    ctx.stack.run_tool("primary", ["chmod", mode, ARCHIVE_DIR], timeout_s=30)


@FAULTS("stall-wal-archive", needs=("wal_fs", "pgbackrest"))
def stall_wal_archive(ctx: DrillContext, max_segments: int = 64) -> str:
    """Break the archive destination (the repository's archive directory loses its permissions,
    so every `archive-push` fails), then run a batch job that switches WAL segments and
    checkpoints until PostgreSQL can no longer create a segment (at most `max_segments`)."""
    fs = wal_volume(ctx)
    res = ctx.stack.exec("primary", ["chmod", "000", ARCHIVE_DIR], timeout_s=10)
    if res.exit_code != 0:
        raise EnvironmentBroken(f"chmod of {ARCHIVE_DIR} in primary failed: {res.output[-300:]}")
    free_before = fs.free_bytes()
    switched = 0
    try:
        with ctx.stack.connect("primary") as conn:
            for switched in range(1, max_segments + 1):  # noqa: B007 (reported below)
                conn.execute("SELECT pg_logical_emit_message(false, 'drillkit', 'batch job')")
                conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
    except psycopg.OperationalError as exc:
        died = (
            f"PostgreSQL went away after {switched} segment switches ({str(exc).splitlines()[0]})"
        )
    else:
        raise StepFailed(
            "stall-wal-archive",
            f"{max_segments} segment switches did not fill the WAL volume "
            f"({fs.free_bytes() // MIB} MiB still free): is archiving really stuck?",
        )
    backlog = ready_segments(fs)
    ctx.figure("wal_backlog_segments", len(backlog))
    return (
        f"archive directory unwritable; {died}; pg_wal volume {free_before // MIB} MiB free before, "
        f"{fs.free_bytes() // MIB} MiB now; {len(backlog)} segments waiting to be archived"
    )


@RECOVERY("check-wal-volume", needs=("wal_fs",))
def check_wal_volume(ctx: DrillContext, after: Duration = Duration(0.0)) -> str:
    """df of the WAL volume, the archiver's backlog and what PostgreSQL logged (failed archive
    commands, ENOSPC, PANIC) since the fault. `after`: how long the fault stands first."""
    time.sleep(after)
    fs = wal_volume(ctx)
    backlog = ready_segments(fs)
    c = ctx.stack.container("primary")
    since = int(ctx.result.wall(ctx.result.markers.get("fault", ctx.clock()))) - 1
    logs = ctx.log_since("primary", since).splitlines()
    seen = [ln.strip() for ln in logs if any(m in ln for m in ARCHIVE_FAILURE_MARKERS)]
    ctx.result.pg_errors.extend(seen[-10:])
    failed_pushes = sum("archive command failed" in ln for ln in seen)
    ctx.figure("archive_failures_logged", failed_pushes)
    ctx.figure("postgres_panicked", any("PANIC" in ln for ln in seen))
    ctx.figure("wal_volume_free_bytes", fs.free_bytes())
    ctx.evidence(
        "WAL volume and archiver at diagnosis",
        "\n".join(
            [
                f"pg_wal volume: {fs.free_bytes()} of {fs.size_bytes()} bytes free",
                f"segments waiting to be archived ({len(backlog)}): {', '.join(backlog)}",
                "",
                *seen[-20:],
            ]
        ),
    )
    c.reload()
    return (
        f"pg_wal volume {fs.free_bytes() // MIB} of {fs.size_bytes() // MIB} MiB free; "
        f"{len(backlog)} segments unarchived; {failed_pushes} failed archive commands logged; "
        f"primary container {c.status}"
    )


@RECOVERY("repair-wal-archive", needs=("pgbackrest",))
def repair_wal_archive(ctx: DrillContext) -> str:
    """Give the archive directory its permissions back (what the failed archive-push named)."""
    _archive_mode(ctx, "750")
    return f"{ARCHIVE_DIR} writable by postgres again"


@RECOVERY("extend-volume", needs=("wal_fs",))
def extend_volume(ctx: DrillContext, add_mib: int = 64) -> str:
    """Grow the WAL volume by `add_mib` MiB. This kernel refuses online resize2fs, so the volume is
    grown offline: the primary's container must be stopped (it is, after the PANIC; it is
    stopped here if it still runs)."""
    if add_mib < 16:
        raise StepFailed("extend-volume", f"add_mib {add_mib}: at least one 16 MiB WAL segment")
    fs = wal_volume(ctx)
    c = ctx.stack.container("primary")
    c.reload()
    was = c.status
    if was == "running":
        c.stop(timeout=10)
    before = fs.size_bytes()
    fs.grow_offline(add_mib)
    return f"primary was {was}; pg_wal volume {before // MIB} → {fs.size_bytes() // MIB} MiB"


@RECOVERY("wait-wal-archived", needs=("wal_fs",))
def wait_wal_archived(ctx: DrillContext, timeout: Duration = Duration(60.0)) -> str:
    """Until the archiver has pushed the whole backlog (no `.ready` left and the newest push is
    after the newest failure), then CHECKPOINT so the archived segments are recycled."""
    fs = wal_volume(ctx)
    start_backlog = len(ready_segments(fs))

    def drained() -> bool:
        if ready_segments(fs):
            return False
        row = ctx.stack.sql(
            "primary",
            "SELECT last_archived_time, last_failed_time, archived_count FROM pg_stat_archiver",
        )[0]
        return row[1] is None or (row[0] is not None and row[0] > row[1])

    wait_for(drained, what="the WAL backlog to be archived", timeout_s=timeout)
    free_before = fs.free_bytes()
    ctx.stack.sql("primary", "CHECKPOINT")
    ctx.figure("wal_volume_free_after_bytes", fs.free_bytes())
    return (
        f"{start_backlog} segments archived; checkpoint: pg_wal volume "
        f"{free_before // MIB} → {fs.free_bytes() // MIB} MiB free"
    )


@CHECKS(
    "wal-archiving",
    title="WAL archiving works again (pgbackrest check; no unarchived backlog)",
    needs=("pgbackrest",),
)
def wal_archiving(ctx: DrillContext) -> str:
    """`pgbackrest check` (a segment switched and seen in the archive within 10 s) and no segment
    left waiting to be archived: the cause of the pile-up is gone, not only its symptom."""
    backlog = ready_segments(wal_volume(ctx)) if ctx.stack.walfs else []
    res = ctx.stack.exec(
        ctx.primary, ["pgbackrest", "--stanza=main", "--archive-timeout=10", "check"], timeout_s=30
    )
    problems = []
    if res.exit_code != 0:
        lines = [ln.strip() for ln in res.output.splitlines() if ln.strip()]
        first_error = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "")
        problems.append(f"pgbackrest check exited {res.exit_code}: {first_error[:240]}")
    if backlog:
        problems.append(f"{len(backlog)} segments still waiting to be archived ({backlog[0]}…)")
    if problems:
        raise CheckFailed("; ".join(problems))
    return "pgbackrest check passed; no unarchived segments"
