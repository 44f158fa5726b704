"""The post-suite secret scan (`drillkit finish`): every file under the reports folder, a PDF's
text included, searched for every secret the session's runs issued, by digest
(drillkit.core.leaks): the scan never holds a secret, only what the runs recorded of them.

A PDF is searched as bytes and as its extracted text (pypdf), once as extracted and once with
whitespace removed (a long token wrapped across lines is still found).

Only files changed since the session's first run began are read (each digest line keeps its
run's start): a file whose status last changed before that (its ctime, which writing, copying
with the old times kept and `touch -d` all move to now) cannot hold a secret issued later.
Without that, every night's scan read every earlier night's reports again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from drillkit.core import leaks

MAX_SCAN_BYTES = 256 * 1024 * 1024
"""A file larger than this is reported as not scanned (a leak scan that gives up says so)."""


CLOCK_MARGIN_S = 60.0
"""How long before the session's first run began a file's ctime still counts as changed in
the session: the kernel stamps ctime from a coarse clock, and a clock correction may step it."""


def pdf_texts(path: Path) -> Iterator[bytes]:
    """The PDF's text, as extracted and with whitespace removed; a PDF pypdf cannot read yields
    nothing (its bytes are still scanned)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        text = "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
    except (PyPdfError, ValueError, OSError):
        return
    yield text.encode("utf-8")
    yield re.sub(r"\s+", "", text).encode("utf-8")


def scan_file(path: Path, digests: set[leaks.Digest]) -> int:
    """How many times a secret occurs in the file (its bytes, and a PDF's text)."""
    data = path.read_bytes()
    hits = sum(1 for _ in leaks.find(data, digests))
    if data.startswith(b"%PDF"):
        hits += sum(1 for text in pdf_texts(path) for _ in leaks.find(text, digests))
    return hits


def scan_tree(
    root: Path, digests: set[leaks.Digest], since: float | None = None
) -> tuple[list[tuple[str, int]], list[str], int]:
    """(files holding a secret with their counts, files too large to scan, how many files were
    left unread as unchanged since `since`), paths relative to `root`, sorted. The digest file
    itself is skipped; symlinks are not followed."""
    found: list[tuple[str, int]] = []
    skipped: list[str] = []
    older = 0
    if not digests:
        return found, skipped, older
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.name == leaks.DIGESTS_FILE:
            continue
        st = path.stat()
        if since is not None and st.st_ctime < since:
            older += 1
            continue
        rel = path.relative_to(root).as_posix()
        if st.st_size > MAX_SCAN_BYTES:
            skipped.append(rel)
            continue
        n = scan_file(path, digests)
        if n:
            found.append((rel, n))
    return found, skipped, older
