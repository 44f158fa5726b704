"""drillkit.stack.hostfs without loop devices: the wait for a device nobody holds, the tmpfs."""

import os

import pytest

from drillkit.stack import hostfs


def test_await_exclusive_waits_until_the_device_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, False, True])
    asked: list[str] = []

    def exclusive(device: str) -> bool:
        asked.append(device)
        return next(answers)

    monkeypatch.setattr(hostfs, "_exclusive", exclusive)
    hostfs.await_exclusive("/dev/loop7", timeout_s=5)
    assert asked == ["/dev/loop7"] * 3


def test_await_exclusive_gives_up_and_lets_fsck_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(hostfs, "_exclusive", lambda d: asked.append(d) or False)
    hostfs.await_exclusive("/dev/loop7", timeout_s=0.1)  # no raise: e2fsck reports the holder
    assert len(asked) >= 2


def test_run_reports_stdout_and_stderr() -> None:
    with pytest.raises(hostfs.EnvironmentBroken, match=r"failed \(3\): out\nerr"):
        hostfs._run("sh", "-c", "echo out; echo err >&2; exit 3")


def test_a_missing_device_is_not_exclusive(tmp_path) -> None:
    assert hostfs._exclusive(str(tmp_path / "no-such-device")) is False


TMPFS_MAGIC = 0x01021994


def _fs_type(path) -> int:
    import ctypes
    import ctypes.util

    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = StatFs()
    assert libc.statfs(str(path).encode(), ctypes.byref(buf)) == 0
    return buf.f_type


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_memfs_is_a_tmpfs_under_the_run_dir_and_the_reaper_unmounts_it(tmp_path) -> None:
    fs = hostfs.MemFs.create(tmp_path / "run" / "db-data", 16)
    try:
        assert _fs_type(fs.mountpoint) == TMPFS_MAGIC
        (fs.mountpoint / "primary").mkdir()
        (fs.mountpoint / "primary" / "PG_VERSION").write_text("15\n")
        # a crashed run leaves it mounted: the reaper of its run dir unmounts it
        assert hostfs.reap_loopfs(tmp_path / "run") == [f"mount {fs.mountpoint}"]
        assert _fs_type(fs.mountpoint) != TMPFS_MAGIC
        assert not (fs.mountpoint / "primary").exists()
    finally:
        fs.destroy()  # a second unmount is no error


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_memfs_size_is_a_bound(tmp_path) -> None:
    fs = hostfs.MemFs.create(tmp_path / "db-data", 1)
    try:
        with pytest.raises(OSError, match="No space left"):
            (fs.mountpoint / "big").write_bytes(b"x" * (2 * 2**20))
    finally:
        fs.destroy()
