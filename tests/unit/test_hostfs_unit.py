"""drillkit.stack.hostfs without loop devices: the wait for a device nobody holds."""

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
