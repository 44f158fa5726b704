"""Stack images, built without a registry and cached by the hash of their build inputs.

The base is `debian:bookworm-slim` when it is present or a registry serves it; otherwise a minimal
bookworm root is bootstrapped from Debian packages (`debootstrap --variant=minbase`) and imported as
`drillkit/base:bookworm`. Each service image is tagged `drillkit/<name>:<hash>`, where the hash covers
every file of its build context and the base image id: an unchanged tree rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors

from drillkit.errors import EnvironmentBroken
from drillkit.paths import IMAGES_DIR
from drillkit.stack import engine

BOOTSTRAP_TAG = "drillkit/base:bookworm"
REGISTRY_BASE = "debian:bookworm-slim"
DEBIAN_MIRROR = os.environ.get("DRILLKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")

Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(f"drillkit: {line}", file=sys.stderr, flush=True)


def _local(tag: str) -> str | None:
    try:
        return str(engine.client().images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None


def base_image(progress: Progress = _stderr) -> str:
    """The base image's tag, bootstrapping it first if no usable base exists locally or remotely."""
    override = os.environ.get("DRILLKIT_BASE_IMAGE")
    if override:
        if _local(override) is None:
            raise EnvironmentBroken(
                f"DRILLKIT_BASE_IMAGE={override} is not an image on this engine"
            )
        return override
    for tag in (REGISTRY_BASE, BOOTSTRAP_TAG):
        if _local(tag):
            return tag
    try:
        progress(f"pulling {REGISTRY_BASE} ...")
        engine.client().images.pull(REGISTRY_BASE)
        return REGISTRY_BASE
    except docker.errors.APIError as exc:
        progress(f"no registry answers ({str(exc).splitlines()[0][:120]}); bootstrapping the base")
    bootstrap_base(progress)
    return BOOTSTRAP_TAG


def bootstrap_base(progress: Progress = _stderr) -> None:
    """debootstrap a minimal bookworm root and import it as BOOTSTRAP_TAG (~1 min the first time)."""
    if shutil.which("debootstrap") is None:
        raise EnvironmentBroken(
            "no registry answers and debootstrap is not installed: `apt-get install debootstrap`, "
            f"or load {REGISTRY_BASE} into the engine, or set DRILLKIT_BASE_IMAGE"
        )
    if os.geteuid() != 0:
        raise EnvironmentBroken("bootstrapping the base image needs root (debootstrap chroots)")
    with tempfile.TemporaryDirectory(prefix="drillkit-rootfs-") as tmp:
        root = Path(tmp) / "root"
        cmd = ["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR]
        progress(f"bootstrapping Debian bookworm: {' '.join(cmd)}")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if line.startswith(("I: Retrieving", "I: Installing", "I: Configuring", "I: Base")):
                progress(f"  debootstrap {line[3:].strip()}")
        if proc.wait() != 0:
            raise EnvironmentBroken("debootstrap failed:\n" + "\n".join(tail))
        (root / "etc/apt/sources.list").write_text(
            f"deb {DEBIAN_MIRROR} bookworm main\n"
            f"deb {DEBIAN_MIRROR} bookworm-updates main\n"
            f"deb {DEBIAN_MIRROR}-security bookworm-security main\n"
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / cache).glob("*"):
                if f.is_file():
                    f.unlink()
        tarball = Path(tmp) / "root.tar"
        progress("importing the bootstrapped root into the engine ...")
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."], check=True
        )
        repo, tag = BOOTSTRAP_TAG.split(":")
        engine.client().api.import_image(
            src=str(tarball), repository=repo, tag=tag, changes=["ENV LANG=C.UTF-8"]
        )
    progress(f"base image {BOOTSTRAP_TAG} ready")


def context_hash(context: Path, base_id: str) -> str:
    """SHA-256 over the base image id and every file (path, executable or not, content) of a build
    context. The mode counts only as git and wheels keep it (0o755 or 0o644), so a checkout and an
    installed wheel of the same tree hash alike whatever the umask was."""
    h = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        rel = path.relative_to(context).as_posix()
        if "__pycache__" in rel:
            continue
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        h.update(rel.encode() + b"\0" + oct(mode).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def ensure_image(name: str, progress: Progress = _stderr) -> str:
    """The tag of service image `name` (a folder of images/), built only if its inputs changed."""
    context = IMAGES_DIR / name
    if not (context / "Dockerfile").is_file():
        raise EnvironmentBroken(f"no Dockerfile for image '{name}' in {context}")
    base = base_image(progress)
    base_id = _local(base) or base
    tag = f"drillkit/{name}:{context_hash(context, base_id)}"
    if _local(tag):
        return tag
    progress(f"building {tag} from {context} (first use: a few minutes) ...")
    _build(context, tag, {"BASE_IMAGE": base}, progress)
    return tag


def ensure_context(
    context: Path,
    name: str,
    *,
    dockerfile: str = "Dockerfile",
    buildargs: dict[str, str] | None = None,
    progress: Progress = _stderr,
) -> str:
    """The tag of an image built from a team's build context (a compose service's `build`),
    `drillkit/<name>:<hash>`: the hash covers the context's files, the Dockerfile's name, the
    build args and the base image id, so an unchanged context rebuilds nothing. BASE_IMAGE is
    passed as a build arg (the file's own args win)."""
    base = base_image(progress)
    base_id = _local(base) or base
    extra = "\0".join([dockerfile, *(f"{k}={v}" for k, v in sorted((buildargs or {}).items()))])
    digest = hashlib.sha256((context_hash(context, base_id) + "\0" + extra).encode())
    tag = f"drillkit/{name}:{digest.hexdigest()[:16]}"
    if _local(tag):
        return tag
    progress(f"building {tag} from {context} ...")
    _build(context, tag, {"BASE_IMAGE": base, **(buildargs or {})}, progress, dockerfile)
    return tag


def _build(
    context: Path,
    tag: str,
    buildargs: dict[str, str],
    progress: Progress,
    dockerfile: str = "Dockerfile",
) -> None:
    step = "(before the first step)"
    output: list[str] = []
    api = engine.client().api
    for chunk in api.build(
        path=str(context),
        dockerfile=dockerfile,
        tag=tag,
        buildargs=buildargs,
        rm=True,
        forcerm=True,
        decode=True,
        labels={engine.LABEL + ".image": "true"},
    ):
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                if line.startswith("Step "):
                    step = line
                    output = []
                    progress(f"  {line[:150]}")
                elif line.strip():
                    output = [*output[-40:], line]
        if "error" in chunk:
            raise EnvironmentBroken(
                f"building {tag} failed at {step}\n{chunk['error']}\n--- output of that step ---\n"
                + "\n".join(output)
            )
    if _local(tag) is None:
        raise EnvironmentBroken(f"building {tag} reported success but the image is absent")


IMAGE_NAMES: tuple[str, ...] = (
    "postgres",
    "app",
    "toxiproxy",
    "web",
    "payments",
    "statuspage",
    "redis",
)
"""Every image drillkit builds from images/ (`drillkit build`, `drillkit prune-images`)."""


def ensure_all(
    names: tuple[str, ...] = IMAGE_NAMES,
    progress: Progress = _stderr,
) -> dict[str, str]:
    """Build (or find cached) every named image; returns name -> tag."""
    return {name: ensure_image(name, progress) for name in names}


IMAGE_KEEP_S = 24 * 3600.0
"""An image younger than this is never pruned: another checkout (other image inputs, so another
hash) may have just built it for a session that is using it."""


def image_age_s(attrs: dict[str, Any], now: float | None = None) -> float:
    """Seconds since the image was built (its Created time); 0 when it cannot be read."""
    created = str(attrs.get("Created") or "")[:19]
    try:
        built = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - built)


def prunable(
    attrs: dict[str, Any],
    tag: str,
    current: str,
    used: set[str],
    now: float | None = None,
    keep_s: float = IMAGE_KEEP_S,
) -> bool:
    """Whether `tag` of an image may go: drillkit built it (its label), it is not this
    checkout's current build, no container (running or stopped) uses it, and it is older than
    `keep_s`."""
    labels = (attrs.get("Config") or {}).get("Labels") or attrs.get("Labels") or {}
    return (
        labels.get(engine.LABEL + ".image") == "true"
        and tag != current
        and attrs.get("Id") not in used
        and image_age_s(attrs, now) >= keep_s
    )


def prune_stale(
    names: tuple[str, ...] = IMAGE_NAMES,
    keep_s: float = IMAGE_KEEP_S,
) -> list[str]:
    """Remove drillkit/<name> images built from older inputs that `prunable` lets go; returns
    the removed tags. The base image is kept; so is any image a container uses or that is
    younger than `keep_s` (built by another checkout, perhaps in use by its session)."""
    base = _local(BOOTSTRAP_TAG) or _local(REGISTRY_BASE)
    removed: list[str] = []
    client = engine.client()
    used = {str(c.attrs.get("Image")) for c in client.containers.list(all=True)}
    for name in names:
        context = IMAGES_DIR / name
        if base is None or not (context / "Dockerfile").is_file():
            continue
        current = f"drillkit/{name}:{context_hash(context, base)}"
        for image in client.images.list(name=f"drillkit/{name}"):
            for tag in image.tags:
                if not prunable(image.attrs, tag, current, used, keep_s=keep_s):
                    continue
                try:
                    client.images.remove(tag)
                    removed.append(tag)
                except docker.errors.APIError:
                    pass  # a container took it meanwhile: kept
    pruned = client.images.prune(
        filters={
            "dangling": True,
            "label": f"{engine.LABEL}.image=true",
            "until": f"{int(keep_s)}s",
        }
    )
    removed += [d.get("Deleted", "") for d in pruned.get("ImagesDeleted") or [] if d.get("Deleted")]
    return removed


def resolve(ref: str, progress: Progress = _stderr) -> str:
    """A stack file's image: a folder of images/ (built, cached) or an existing image reference."""
    if (IMAGES_DIR / ref / "Dockerfile").is_file():
        return ensure_image(ref, progress)
    if _local(ref) is None:
        raise EnvironmentBroken(
            f"image '{ref}' is neither a folder of {IMAGES_DIR} nor an image on this engine "
            "(build or load it first)"
        )
    return ref


def main() -> None:
    tags = ensure_all()
    for name, tag in tags.items():
        _stderr(f"image {name}: {tag}")


if __name__ == "__main__":
    main()
