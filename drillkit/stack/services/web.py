"""The web kind (`stack: {web: true}`) and the web front's content: its known-good backup and SHA-256
manifest, and comparing content with it.

The web kind (`Web`, at the end) starts the web front (images/web: nginx serving /var/www/site,
/api/ proxied to the app) and, once it serves, takes the known-good backup: the content tree read out of the
container as a tarball, kept in the harness's run dir (off the web host, out of an attacker's
reach), with a manifest of every file's SHA-256 in `sha256sum` format. The defacement drill's
detection, restore, verification, probe and checklist all compare against that manifest.

Everything here but take_backup and the kind is pure (no engine), so it is unit-tested without
containers.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import requests

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

if TYPE_CHECKING:
    from docker.models.containers import Container

    from drillkit.stack.stack import Stack

WEB_IMAGE = "web"
WEB_PORT = 80
"""The public site (maintenance-aware)."""
WEB_PREVIEW_PORT = 8081
"""The same content, never behind the maintenance page: restored content is verified here as
served before the public site comes back."""
WEB_ROOT = "/var/www/site"
"""The served content (a labelled volume in the stack; the image's files populate it)."""
MAINTENANCE_FLAG = "/run/drillkit-web/maintenance"
"""While this file exists nginx answers 503 with the maintenance page on every site path."""
MAINTENANCE_PAGE = "/var/www/maintenance/maintenance.html"

Manifest = dict[str, str]
"""Relative path (POSIX, no leading './') -> SHA-256 hex of the file's bytes."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _relative(name: str, strip: int) -> str | None:
    """A tar member's name below its first `strip` components, or None when nothing is left."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if ".." in parts:
        raise ValueError(f"unsafe path in archive: {name!r}")
    rest = parts[strip:]
    return "/".join(rest) if rest else None


def manifest_from_tar(data: bytes, strip: int = 1) -> Manifest:
    """The manifest of every regular file in a tar (as `docker cp`/get_archive returns a directory:
    its own name is the first component, dropped by `strip`)."""
    out: Manifest = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = _relative(member.name, strip)
            f = tar.extractfile(member)
            if rel is None or f is None:
                continue
            out[rel] = sha256(f.read())
    return out


def format_sha256sum(manifest: Manifest) -> str:
    """The manifest as `sha256sum` writes it (checkable with `sha256sum -c` from the content dir)."""
    return "".join(f"{digest}  ./{path}\n" for path, digest in sorted(manifest.items()))


def parse_sha256sum(text: str) -> Manifest:
    """Parse `sha256sum` output (`<hex>  ./path` or `<hex> *path`); paths relative, without './'.

    A line sha256sum escaped (a leading backslash: the name held a newline or a backslash) keeps
    the escaped name, so it never matches a manifest entry and shows up as a difference."""
    out: Manifest = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        digest = digest.lstrip("\\")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256sum line: {line[:120]!r}")
        name = name[1:] if name[:1] in (" ", "*") else name
        while name.startswith("./"):
            name = name[2:]
        out[name] = digest
    return out


@dataclass(frozen=True)
class ManifestDiff:
    """How content differs from the known-good manifest."""

    modified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.modified or self.missing or self.added)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted({*self.modified, *self.missing, *self.added}))

    def describe(self) -> str:
        if self.clean:
            return "every file matches the known-good manifest"
        parts = []
        for label, paths in (
            ("modified", self.modified),
            ("missing", self.missing),
            ("added", self.added),
        ):
            if paths:
                parts.append(f"{label}: {', '.join(paths)}")
        return "; ".join(parts)


def compare(expected: Manifest, actual: Manifest) -> ManifestDiff:
    """Files whose digest differs, files of the manifest that are absent, files not in it."""
    return ManifestDiff(
        modified=tuple(sorted(p for p in expected if p in actual and actual[p] != expected[p])),
        missing=tuple(sorted(p for p in expected if p not in actual)),
        added=tuple(sorted(p for p in actual if p not in expected)),
    )


def served_paths(manifest: Manifest, index: str = "index.html") -> dict[str, str]:
    """URL path -> manifest entry whose bytes it must serve: every file at its own path, and each
    directory's index file at the directory's URL ('/' serves index.html)."""
    out = {"/" + path: path for path in sorted(manifest)}
    for path in sorted(manifest):
        p = PurePosixPath(path)
        if p.name == index:
            parent = p.parent.as_posix()
            out["/" if parent == "." else f"/{parent}/"] = path
    return out


def select_tar(data: bytes, files: list[str] | None, strip: int = 1) -> tuple[bytes, list[str]]:
    """A tar holding only the named files (relative paths; None: every file) and the directories
    above them, names kept as in `data`; with the relative paths it holds. Unknown names raise
    KeyError naming them."""
    out = io.BytesIO()
    taken: list[str] = []
    with (
        tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        members = src.getmembers()
        by_rel = {_relative(m.name, strip): m for m in members if m.isfile()}
        wanted = sorted(p for p in by_rel if p) if files is None else list(files)
        unknown = [f for f in wanted if f not in by_rel]
        if unknown:
            raise KeyError(f"not in the backup: {', '.join(unknown)}")
        dirs = {
            PurePosixPath(by_rel[f].name).parents[i].as_posix()
            for f in wanted
            for i in range(len(PurePosixPath(by_rel[f].name).parents) - 1)
        }
        for m in members:
            if m.isdir() and PurePosixPath(m.name).as_posix() in dirs:
                dst.addfile(m)
        for rel in wanted:
            m = by_rel[rel]
            dst.addfile(m, src.extractfile(m))
            taken.append(rel)
    return out.getvalue(), taken


@dataclass(frozen=True)
class WebBackup:
    """One known-good backup of the web content: `id` is its UTC timestamp (the runbook's
    `restore-web-content.sh [backup-timestamp]`)."""

    id: str
    tarball: Path
    manifest: Manifest
    taken_wall: float

    def tar_bytes(self) -> bytes:
        return self.tarball.read_bytes()


def backup_id(wall: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall))


def take_backup(container: Container, dest: Path, root: str = WEB_ROOT) -> WebBackup:
    """Read the content tree out of the web container (Docker's archive API) into
    `dest/<id>/site.tar`, and write its manifest beside it as `SHA256SUMS`."""
    wall = time.time()
    stream, _stat = container.get_archive(root)
    data = b"".join(stream)
    manifest = manifest_from_tar(data)
    if not manifest:
        raise ValueError(f"{container.name}:{root} holds no file to back up")
    bid = backup_id(wall)
    folder = dest / bid
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / "site.tar"
    tarball.write_bytes(data)
    (folder / "SHA256SUMS").write_text(format_sha256sum(manifest))
    return WebBackup(id=bid, tarball=tarball, manifest=manifest, taken_wall=wall)


@service_kind
class Web(ServiceKind):
    """The web front: the public site on port 80, a staff preview of the same content (never
    behind the maintenance page) on 8081; the content in a labelled volume that the image's site
    fills on first mount. Once it serves, its content is backed up into the run dir."""

    name = "web"
    order = 30
    start_rank = 40
    ready_rank = 40

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.backups: list[WebBackup] = []
        """The content's known-good backups, oldest first."""

    def services(self) -> tuple[str, ...]:
        return ("web",)

    def images(self) -> dict[str, str]:
        return {"web": WEB_IMAGE}

    def start(self) -> None:
        s = self.stack
        content = s.volume("web-content", "web")
        s.create(
            "web",
            s.image_tags["web"],
            env={},
            mounts={content.name: {"bind": WEB_ROOT, "mode": "rw"}},
            ports={
                f"{WEB_PORT}/tcp": ("127.0.0.1", None),
                f"{WEB_PREVIEW_PORT}/tcp": ("127.0.0.1", None),
            },
        )

    def wait_ready(self) -> None:
        self.wait()
        self.backups.append(
            take_backup(self.stack.container("web"), self.stack.run_dir / "web-backup")
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port('web', WEB_PORT)}"

    def health(self, timeout_s: float = 2.0) -> requests.Response:
        """The home page (200 when it serves the site; 503 in maintenance)."""
        return requests.get(self.url + "/", timeout=timeout_s)

    def wait(self, timeout_s: float | None = None) -> None:
        """Until nginx answers its own liveness URL (also while the site is in maintenance)."""
        s = self.stack

        def serving() -> bool:
            s.require_running("web")
            return requests.get(self.url + "/healthz", timeout=1.0).status_code == 200

        wait_for(
            serving,
            what="the web front (nginx) to answer",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            context=s.log_context("web"),
        )
