"""The WAL-volume-full fault's causality, live: the batch job that fills the volume behind a
stuck archive is harmless while archiving works (each checkpoint recycles what was archived), and
the pg_wal volume is a real filesystem of its own that grows offline and is gone after teardown."""

import secrets

import pytest

from drillkit.catalog.wal import ready_segments
from drillkit.stack.reaping import leftovers
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions
from drillkit.wait import wait_for

MIB = 2**20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = "wv" + secrets.token_hex(3)
    s = Stack(
        load_stack(),
        run_id,
        tmp_path_factory.mktemp("run") / run_id,
        StackOptions(wal_fs_mib=160),
    )
    try:
        s.up()
        yield s
    finally:
        s.down()
        assert leftovers(run_id) == []
        assert s.walfs is None


def test_pg_wal_lives_on_its_own_volume(stack):
    mount = str(stack.walfs.mountpoint)
    mounts = [ln.split()[1] for ln in open("/proc/mounts")]
    assert mount in mounts
    segments = list((stack.walfs.mountpoint / "wal").glob("0000000*"))
    assert segments, "no WAL segment on the WAL volume"
    current = stack.sql("primary", "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    assert (stack.walfs.mountpoint / "wal" / current).exists()


def test_the_batch_job_does_not_fill_the_volume_while_archiving_works(stack):
    fs = stack.walfs
    size = fs.size_bytes()
    lowest = fs.free_bytes()
    with stack.connect("primary") as conn:
        for _ in range(24):  # 24 x 16 MiB = 384 MiB of segments through a 144 MiB volume
            conn.execute("SELECT pg_logical_emit_message(false, 'drillkit', 'batch job')")
            conn.execute("SELECT pg_switch_wal()")
            lowest = min(lowest, fs.free_bytes())
            # a working archive drains the backlog (with the archive stuck this never holds)
            wait_for(lambda: len(ready_segments(fs)) <= 1, what="archiving", timeout_s=20)
            conn.execute("CHECKPOINT")
            lowest = min(lowest, fs.free_bytes())
    # every switch completed (with the archive stuck PostgreSQL PANICs after ~7), with room to spare
    assert lowest >= 32 * MIB, f"only {lowest // MIB} of {size // MIB} MiB free at the lowest"
    assert stack.sql("primary", "SELECT failed_count FROM pg_stat_archiver")[0][0] == 0
    assert len(ready_segments(fs)) <= 1


def test_the_volume_grows_offline_and_keeps_its_wal(stack):
    fs = stack.walfs
    c = stack.container("primary")
    c.stop(timeout=10)
    before = fs.size_bytes()
    fs.grow_offline(32)
    assert fs.size_bytes() - before >= 28 * MIB  # 32 MiB less the new block groups' metadata
    c.start()
    stack.wait_pg("primary")
    assert stack.sql("primary", "SELECT count(*) FROM orders")[0][0] >= 0
