"""The share lock `make test`'s two workers hold the engine by (drillkit/stack/share.py): shared
holders run together, a SOLO holder runs alone, and a waiting SOLO holder is not starved by
shared holders arriving after it. Threads stand in for the workers (each opens its own lock
files, so flock treats them as separate holders)."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drillkit.stack.share import EngineShare
from drillkit.wait import wait_for


@contextmanager
def holding(share: EngineShare, solo: bool) -> Iterator[None]:
    gen = share.hold(solo)
    next(gen)
    try:
        yield
    finally:
        next(gen, None)


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
    with holding(share, solo=False), holding(share, solo=False):  # two shared at once
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
    with holding(share, solo):
        order.append(name)
