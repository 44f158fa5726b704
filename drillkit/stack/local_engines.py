"""Extra Docker engines on this machine: separate dockerd processes, each with its own socket,
data root, exec root (and its own containerd), pid file, cgroup parent and address pool. They
prove and benchmark `--drill-engines` on one host (tests/integration/test_engines.py,
bench/engines.py); root only.

Each extra engine runs with `--iptables=false --bridge=none`: a dockerd that manages iptables
removes and recreates the shared DOCKER chains when it starts, which would drop the main engine's
rules under its running containers. The cost: on an extra engine Docker itself does not enforce
`internal` networks' forwarding block nor the edge network's `icc=false`; drill networks keep
their own subnets from the engine's pool (10.(200+N).0.0/16), published ports stay on 127.0.0.1
(docker-proxy), and partitions (iptables inside a container's own namespace) work as on the main
engine. With br_netfilter loaded (the main engine loads it) bridged frames pass the host's FORWARD
chain, whose policy the main engine sets to DROP: so the engine's start adds one rule, accepting
only frames bridged within one of the engine's networks (`-m physdev --physdev-is-bridged`, source
and destination in its pool; nothing routed between networks or out), and its stop removes it.

    python -m drillkit.stack.local_engines start 1 2   # prints the engines' URLs
    python -m drillkit.stack.local_engines stop 1 2
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drillkit.errors import EnvironmentBroken

BASE = Path(os.environ.get("DRILLKIT_ENGINES_BASE", "/tmp"))
IMAGE_CACHE = Path(os.environ.get("DRILLKIT_ENGINE_IMAGE_CACHE", "/var/tmp/drillkit-engine-images"))


@dataclass(frozen=True)
class LocalEngine:
    index: int
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def answers(self) -> bool:
        return self.socket.exists() and _docker(self, "version", "--format", "{{.Server.Version}}")


def engine(index: int, base: Path = BASE) -> LocalEngine:
    if not 1 <= index <= 50:  # pools 10.201.0.0/16 .. 10.250.0.0/16
        raise ValueError(f"extra engine index {index}: expected 1..50")
    return LocalEngine(index, base / f"dk-eng-{index}")


def _docker(eng: LocalEngine, *args: str, timeout: float = 10) -> bool:
    try:
        proc = subprocess.run(
            ["docker", "-H", eng.url, *args], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def start(index: int, base: Path = BASE, timeout_s: float = 60.0) -> LocalEngine:
    """Start extra engine `index` (stopping and removing what an earlier one left first); waits
    until it answers."""
    if os.geteuid() != 0:
        raise EnvironmentBroken("starting another dockerd needs root")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EnvironmentBroken("dockerd is not installed (Debian: apt-get install docker.io)")
    eng = engine(index, base)
    stop(eng)
    eng.root.mkdir(parents=True)
    cmd = [
        dockerd,
        f"--data-root={eng.root / 'data'}",
        f"--exec-root={eng.root / 'exec'}",
        f"--pidfile={eng.pidfile}",
        f"--host={eng.url}",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        f"--default-address-pool=base=10.{200 + index}.0.0/16,size=24",
        f"--cgroup-parent=/dk-eng-{index}",
        "--log-level=warn",
    ]
    _forward(eng, "-I")
    with eng.log.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while not eng.answers():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = eng.log.read_text(errors="replace").splitlines()[-15:]
            stop(eng)
            raise EnvironmentBroken(
                f"extra dockerd {index} did not answer within {timeout_s:g} s (exit "
                f"{proc.poll()}):\n" + "\n".join(tail)
            )
        time.sleep(0.2)  # dockerd has no readiness signal to wait on but its socket answering
    return eng


def stop(eng: LocalEngine, timeout_s: float = 30.0) -> None:
    """Stop the engine (SIGTERM, then SIGKILL), unmount what it left under its root, remove the
    root. Safe to call when it never started."""
    pid = eng.pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while eng.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if eng.pid() is not None:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            time.sleep(0.5)
    while _forward(eng, "-D"):  # every copy an earlier start left
        pass
    if not eng.root.exists():
        return
    for target in sorted(_mounts_under(eng.root), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    shutil.rmtree(eng.root, ignore_errors=True)
    if eng.root.exists():
        raise EnvironmentBroken(f"could not remove {eng.root} (still mounted?)")


def _forward(eng: LocalEngine, op: str) -> bool:
    """Insert (-I) or delete (-D) the engine's FORWARD rule; False when iptables refused (for -D:
    no such rule left)."""
    pool = f"10.{200 + eng.index}.0.0/16"
    rule = ["-s", pool, "-d", pool, "-m", "physdev", "--physdev-is-bridged"]
    rule += ["-m", "comment", "--comment", f"drillkit dk-eng-{eng.index}", "-j", "ACCEPT"]
    try:
        proc = subprocess.run(
            ["iptables", "-w", op, "FORWARD", *rule], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        if op == "-I":
            raise EnvironmentBroken(f"iptables: {exc}") from exc
        return False
    if op == "-I" and proc.returncode != 0:
        raise EnvironmentBroken(f"iptables -I FORWARD failed: {proc.stderr.strip()}")
    return proc.returncode == 0


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix) or target == str(root):
            out.append(target)
    return out


def image_archive(tags: list[str], cache: Path = IMAGE_CACHE) -> Path:
    """`docker save` of `tags` from the main engine, cached by their image ids (so a later run
    loads the same file; older archives are removed)."""
    ids = []
    for tag in sorted(tags):
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise EnvironmentBroken(f"image {tag} is not on the main engine: run `drillkit build`")
        ids.append(f"{tag}={proc.stdout.strip()}")
    key = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    archive = cache / f"images-{key}.tar"
    if archive.is_file():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("images-*.tar"):
        old.unlink()
    partial = archive.with_suffix(".partial")
    subprocess.run(["docker", "save", "-o", str(partial), *sorted(tags)], check=True)
    partial.rename(archive)
    return archive


def load_images(eng: LocalEngine, archive: Path) -> None:
    proc = subprocess.run(
        ["docker", "-H", eng.url, "load", "-q", "-i", str(archive)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise EnvironmentBroken(f"loading images into {eng.url} failed: {proc.stderr[-500:]}")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m drillkit.stack.local_engines start|stop N [N ...]", file=sys.stderr)
        return 2
    for index in map(int, argv[1:]):
        if argv[0] == "start":
            print(start(index).url)
        else:
            stop(engine(index))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
