"""What a post-suite secret scan needs, without keeping a secret on disk: the SHA-256 of every
secret a run issued, with its length and its character class, appended to the session's results
folder (`.secret-digests.jsonl`, mode 0600). `find` slides a window of each length over the runs
of that class in a text and hashes each window: a secret shows up by its digest only.

The harness's secrets are 32 letters and digits (drillkit.stack.secrets); another secret (a
team's) is looked for among runs of printable non-space ASCII. A secret that was encoded
(base64, hex) before it leaked is not found: the scan sees text as written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DIGESTS_FILE = ".secret-digests.jsonl"
MIN_SECRET_LEN = 8
"""Shorter values are not scanned for (they would match everywhere and reveal little)."""
CLASSES = {"alnum": re.compile(rb"[A-Za-z0-9]+"), "printable": re.compile(rb"[!-~]+")}


@dataclass(frozen=True, order=True)
class Digest:
    length: int
    cls: str
    sha256: str


def digest(secret: str) -> Digest | None:
    """The secret's digest entry (None for one too short to scan for)."""
    raw = secret.encode("utf-8")
    if len(raw) < MIN_SECRET_LEN:
        return None
    cls = "alnum" if CLASSES["alnum"].fullmatch(raw) else "printable"
    return Digest(len(raw), cls, hashlib.sha256(raw).hexdigest())


def record(results_dir: Path, secrets: Iterable[str], issued_after: float | None = None) -> int:
    """Append the digests of `secrets` to the session's list (one line each, O_APPEND: xdist
    workers may write at once); returns how many were written. `issued_after` (seconds since
    the epoch: the run's start) is kept with each, for `issued_since`."""
    found = {digest(s) for s in secrets}
    after = {} if issued_after is None else {"after": round(issued_after, 3)}
    lines = [
        json.dumps({"len": d.length, "cls": d.cls, "sha256": d.sha256, **after}) + "\n"
        for d in sorted(x for x in found if x is not None)
    ]
    if not lines:
        return 0
    results_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(results_dir / DIGESTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, "".join(lines).encode())
    finally:
        os.close(fd)
    return len(lines)


def load(results_dir: Path) -> set[Digest]:
    path = results_dir / DIGESTS_FILE
    if not path.is_file():
        return set()
    out: set[Digest] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("cls") in CLASSES and isinstance(row.get("len"), int):
            out.add(Digest(int(row["len"]), str(row["cls"]), str(row["sha256"])))
    return out


def issued_since(results_dir: Path) -> float | None:
    """The earliest start of a run whose secrets the session recorded (seconds since the epoch):
    no secret of the session existed before it. None when a line does not say (an older
    drillkit's) or none was recorded."""
    path = results_dir / DIGESTS_FILE
    if not path.is_file():
        return None
    starts = [
        json.loads(line).get("after") for line in path.read_text(encoding="utf-8").splitlines()
    ]
    if not starts or not all(isinstance(t, int | float) for t in starts):
        return None
    return float(min(starts))


def find(data: bytes, digests: set[Digest]) -> Iterator[Digest]:
    """Each digest whose secret occurs in `data` (once per occurrence)."""
    wanted: dict[tuple[str, int], set[str]] = {}
    for d in digests:
        wanted.setdefault((d.cls, d.length), set()).add(d.sha256)
    for (cls, length), hashes in wanted.items():
        for run in CLASSES[cls].finditer(data):
            chunk = run.group()
            for i in range(len(chunk) - length + 1):
                h = hashlib.sha256(chunk[i : i + length]).hexdigest()
                if h in hashes:
                    yield Digest(length, cls, h)
