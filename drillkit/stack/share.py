"""The engine's share lock between xdist workers on one Docker engine (tests/conftest.py)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path


class EngineShare:
    """A readers-writer lock between xdist workers, on two lock files: a test takes the engine
    shared, a SOLO module exclusive. The turnstile gives a waiting SOLO module priority: a
    shared taker passes through it first, so it queues behind that module instead of starving
    it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.turnstile = folder / "engine-turnstile.lock"
        self.share = folder / "engine-share.lock"

    def hold(self, solo: bool) -> Iterator[None]:
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
