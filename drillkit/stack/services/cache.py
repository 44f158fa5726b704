"""The cache kind (`stack: {cache: true}`): Redis (images/redis, Debian's redis-server) on the
run's internal network as `cache`, which the reference app uses as a read-through cache of order
reads when its config dir holds a `cache` file (host:port).

Its password (requirepass) is a run secret issued here (`redis_password`, the server's copy, read
by the image's start script from its read-only secrets mount; `app_redis_password`, the app's
copy in the app's secrets dir). The harness talks to Redis through its port published on
127.0.0.1 (the drills' checks read INFO, ACL and CLIENT LIST), with `Resp`, a small RESP2
client: no Redis library in the harness either.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from drillkit.errors import EnvironmentBroken
from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.stack.services.app import write_atomic
from drillkit.wait import wait_for

CACHE = "cache"
CACHE_IMAGE = "redis"
CACHE_PORT = 6379
SERVER_SECRET = "redis_password"
APP_SECRET = "app_redis_password"
APP_CONFIG_FILE = "cache"
"""The app's config file naming the cache (host:port); absent: the app runs without one."""
APP_CLIENT_NAME = "drillkit-app"
"""The name the reference app gives its Redis connections (CLIENT SETNAME)."""
MAX_REPLY = 1 << 20


class RespError(Exception):
    """An error reply from Redis (e.g. WRONGPASS, NOAUTH); its text carries no secret."""


class Resp:
    """A blocking RESP2 connection: `call(*args)` sends one command, returns its reply (str for
    simple and bulk strings, int, None, list), raises RespError for an error reply and OSError
    when the connection fails."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buf = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *args: str | int) -> Any:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            data = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
            if len(self.buf) > MAX_REPLY:
                raise ConnectionError("redis reply too long")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:].decode("utf-8", "replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"unexpected redis reply type {kind!r}")


def parse_info(text: str) -> dict[str, str]:
    """INFO's `key:value` lines (sections and blanks skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def parse_clients(text: str) -> list[dict[str, str]]:
    """CLIENT LIST: one dict per connection (id, addr, name, age, user, ...)."""
    out = []
    for line in text.splitlines():
        fields = dict(f.partition("=")[::2] for f in line.split() if "=" in f)
        if fields:
            out.append(fields)
    return out


@service_kind
class Cache(ServiceKind):
    name = "cache"
    order = 60
    start_rank = 20
    ready_rank = 10

    def services(self) -> tuple[str, ...]:
        return (CACHE,)

    def images(self) -> dict[str, str]:
        return {"redis": CACHE_IMAGE}

    def configure(self) -> None:
        s = self.stack
        app = s.kinds.get("app")
        if app is None:
            raise EnvironmentBroken("the cache kind needs the reference app (a stack with `app`)")
        password = s.secrets.generate()
        s.secrets.set(SERVER_SECRET, password)
        s.secrets.set(APP_SECRET, password)
        os.chmod(s.secrets.cache_dir, 0o755)
        app.config_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(app.config_dir / APP_CONFIG_FILE, f"{CACHE}:{CACHE_PORT}\n")

    def start(self) -> None:
        s = self.stack
        s.create(
            CACHE,
            s.image_tags["redis"],
            env={},
            mounts={str(s.secrets.cache_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"}},
            ports={f"{CACHE_PORT}/tcp": ("127.0.0.1", None)},
        )

    def wait_ready(self) -> None:
        s = self.stack

        def serving() -> bool:
            s.require_running(CACHE)
            return self.call("PING") == "PONG"

        wait_for(
            serving,
            what="redis to answer PING",
            timeout_s=s.options.ready_timeout_s,
            context=s.log_context(CACHE),
        )

    # ----- access -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.stack.port(CACHE, CACHE_PORT)

    def connect(self, password: str | None = None, timeout_s: float = 2.0) -> Resp:
        """An authenticated connection (the server's current password unless `password`)."""
        conn = Resp("127.0.0.1", self.port, timeout_s)
        try:
            conn.call("AUTH", password or self.stack.secrets[SERVER_SECRET])
        except BaseException:
            conn.close()
            raise
        return conn

    def call(self, *args: str | int) -> Any:
        """One command on a fresh authenticated connection."""
        with self.connect() as conn:
            return conn.call(*args)

    def info(self, section: str = "stats") -> dict[str, str]:
        return parse_info(str(self.call("INFO", section)))

    def clients(self) -> list[dict[str, str]]:
        return parse_clients(str(self.call("CLIENT", "LIST")))
