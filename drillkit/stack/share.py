"""The engine's share lock between xdist workers on one Docker engine: a drill holds it shared,
a drill tagged `solo` (SOLO_TAG) alone (drillkit.plugin), and a module of drillkit's own tests
by its kind (tests/conftest.py)."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SOLO_TAG = "solo"
"""A scenario tag: the drill holds the engine alone while drills run side by side on it. For a
fault that loads the machine itself (a flood) or a verdict that another stack's load can change
(a probabilistic fault's detection, a window of milliseconds)."""

_held = threading.local()
"""How deep this thread's holds of each lock are nested (`depth`: share lock path -> count):
only the outermost takes the lock."""


class EngineShare:
    """A readers-writer lock between xdist workers, on two lock files: a drill takes the engine
    shared, a solo one exclusive. The turnstile gives a waiting solo holder priority: a shared
    taker passes through it first, so it queues behind that holder instead of starving it.

    A hold inside another hold of the same thread (a drill in a test module that holds the
    engine already) takes nothing more: it runs under the outer hold, shared or not. Taking the
    turnstile again there could deadlock against a solo holder waiting for the outer hold."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.turnstile = folder / "engine-turnstile.lock"
        self.share = folder / "engine-share.lock"

    @contextmanager
    def hold(self, solo: bool) -> Iterator[None]:
        depths: dict[Path, int] = _held.__dict__.setdefault("depth", {})
        depth = depths.get(self.share, 0)
        depths[self.share] = depth + 1
        try:
            if depth:
                yield
            else:
                yield from self._take(solo)
        finally:
            depths[self.share] = depth

    def _take(self, solo: bool) -> Iterator[None]:
        with open(self.turnstile, "a") as gate, open(self.share, "a") as share:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(share, fcntl.LOCK_EX if solo else fcntl.LOCK_SH)
            finally:
                if not solo:
                    fcntl.flock(gate, fcntl.LOCK_UN)
            try:
                yield
            finally:
                fcntl.flock(share, fcntl.LOCK_UN)
                fcntl.flock(gate, fcntl.LOCK_UN)
