"""The share lock xdist workers hold the engine by (drillkit/stack/share.py): shared
holders run together, a SOLO holder runs alone, and a waiting SOLO holder is not starved by
shared holders arriving after it. Threads stand in for the workers (each opens its own lock
files, so flock treats them as separate holders)."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from drillkit.plugin import engine_share, holding_engine
from drillkit.stack.share import EngineShare
from drillkit.wait import wait_for


def held_exclusively_by_someone(path: Path) -> bool:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_shared_holders_run_together_and_a_solo_holder_alone(tmp_path: Path) -> None:
    share = EngineShare(tmp_path)
    order: list[str] = []
    with share.hold(solo=False), share.hold(solo=False):  # two shared at once
        solo = threading.Thread(target=lambda: _hold(share, True, order, "solo"))
        solo.start()
        # the solo holder waits at the share lock, holding the turnstile
        wait_for(
            lambda: held_exclusively_by_someone(share.turnstile), what="solo waiting", timeout_s=5
        )
        late = threading.Thread(target=lambda: _hold(share, False, order, "late shared"))
        late.start()
        assert order == []  # neither got in while the first two hold the engine
    solo.join(5)
    late.join(5)
    assert order == ["solo", "late shared"]  # the waiting solo holder went first


def _hold(share: EngineShare, solo: bool, order: list[str], name: str) -> None:
    with share.hold(solo):
        order.append(name)


def test_a_nested_hold_takes_nothing_more(tmp_path: Path) -> None:
    """A drill inside a test module that holds the engine already: without the nesting count its
    second turnstile request would wait for a solo holder that waits for the outer hold."""
    share = EngineShare(tmp_path)
    order: list[str] = []
    with share.hold(solo=False):
        solo = threading.Thread(target=lambda: _hold(share, True, order, "solo"))
        solo.start()
        wait_for(
            lambda: held_exclusively_by_someone(share.turnstile), what="solo waiting", timeout_s=5
        )
        with share.hold(solo=True):  # nested: runs under the outer, shared hold at once
            order.append("nested")
        assert not held_exclusively_by_someone(share.share)  # still shared, not upgraded
    solo.join(5)
    assert order == ["nested", "solo"]


class _WorkerConfig:
    """The parts of a pytest config engine_share reads: an xdist worker's, one engine."""

    def __init__(self, root: Path, worker: bool = True) -> None:
        self.rootpath = root
        if worker:
            self.workerinput = {"testrunuid": "abc", "workerid": "gw0"}

    def getoption(self, name: str) -> None:
        return None

    def getini(self, name: str) -> list[str]:
        return []


def test_a_drill_tagged_solo_holds_the_engine_alone(tmp_path: Path) -> None:
    config = _WorkerConfig(tmp_path)
    share = engine_share(config)
    assert share is not None and share.share.parent == tmp_path / ".run" / "xdist-abc"
    with holding_engine(config, SimpleNamespace(tags=("quarterly", "solo"))):
        assert held_exclusively_by_someone(share.share)
    with holding_engine(config, SimpleNamespace(tags=("quarterly",))):
        assert not held_exclusively_by_someone(share.share)  # shared: another may join
        with open(share.share, "a") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # but none may hold it alone
    assert not held_exclusively_by_someone(share.share)


def test_no_share_without_xdist_workers(tmp_path: Path) -> None:
    """The controller, a run without -n, and a pytest started inside a worker hold nothing."""
    config = _WorkerConfig(tmp_path, worker=False)
    assert engine_share(config) is None
    with holding_engine(config, SimpleNamespace(tags=("solo",))):
        assert not (tmp_path / ".run").exists()
