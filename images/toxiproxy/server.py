#!/usr/bin/env python3
"""A small Toxiproxy 2.x compatible server: the HTTP API (:8474) and TCP proxies with toxics.

Python 3.11 standard library only. It follows Shopify/toxiproxy: the same routes, JSON, status
codes and error bodies, and the same toxic semantics (per connection and direction, upstream =
client->server; toxicity = the chance a link gets the toxic; changes reach open connections).
Each direction of a connection is a link: socket -> toxic stages (an asyncio task each, FIFO
between them) -> other socket; with no active toxic, bytes go straight through. As in Toxiproxy,
the end of one direction closes the connection's other socket too.

With --token-file (drillkit always passes it) the API answers only a caller that sends
`Authorization: Bearer <token>`: anything else is a 401 (GET /version stays open, as a liveness
answer). The app on the proxy's network can reach the API's port but cannot fault its own
database. Without it the server is open, as Toxiproxy is. Request bodies are bounded (MAX_BODY);
a Content-Length that is not a non-negative integer is a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import http
import json
import os
import random
import signal
import socket
import struct
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

VERSION = "2.9.0"  # the Toxiproxy API level this server speaks
HIGH_WATER = 4 * 1024 * 1024  # bytes held in a link's toxic chain before its reader pauses
LOW_WATER = 1024 * 1024
MAX_BODY = 8 * 1024 * 1024
TEXT = "text/plain; charset=utf-8"
TOXIC_TYPES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
EOF = "EOF"  # end of a direction's stream (the link closes its destination)
RESET = "RESET"  # reset_peer: close both sockets with SO_LINGER 0 (TCP RST)


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(time.time() % 1 * 1000):03d}"
    print(f"{stamp} {message}", flush=True)


class ApiError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class NoRoute(Exception):
    pass


def bad_body(reason: str) -> ApiError:
    return ApiError(f"bad request body: {reason}", 400)


def split_hostport(addr: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' -> (host, port); a bad address is a 400."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise bad_body(f"address {addr}: missing or invalid port in address")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Chunk:
    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data, self.ts = data, ts  # ts: when the chunk is due (arrival + latency so far)


Item = Chunk | str


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]

    @property
    def upstream(self) -> bool:
        return self.stream.lower() == "upstream"

    def to_json(self) -> dict[str, Any]:
        toxicity = int(self.toxicity) if float(self.toxicity).is_integer() else self.toxicity
        return asdict(self) | {"toxicity": toxicity}


def slice_bounds(size: int, average: int, variation: int) -> list[tuple[int, int]]:
    """Toxiproxy's slicer split: halve around the middle (± variation) down to ~average bytes."""
    if average <= 0 or size <= 0:
        return [(0, size)]
    variation, out, todo = max(0, variation), [], [(0, size)]
    while todo:
        start, end = todo.pop()
        if (end - start) - average <= variation:
            out.append((start, end))
            continue
        mid = start + (end - start) // 2
        mid += random.randrange(-variation, variation) if variation else 0
        mid = min(max(mid, start + 1), end - 1)
        todo += [(mid, end), (start, mid)]
    return out


class Stage:
    """One toxic on one link: a FIFO queue and a task that applies the toxic to each item."""

    def __init__(self, link: Link, toxic: Toxic) -> None:
        self.link, self.toxic = link, toxic
        self.next: Stage | None = None
        self.queue: deque[Item] = deque()
        self.held: Item | None = None  # the item being worked on (sent on if interrupted)
        self.offset = 0  # bytes of `held` already passed on (bandwidth, slicer)
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.active = self.closed = False
        self.sent = 0  # limit_data: bytes passed so far (kept across updates)
        self.free_at = 0.0  # bandwidth: when the previous bytes have been "sent"
        self.begin()

    def begin(self) -> None:
        self.active = random.random() < self.toxic.toxicity
        if self.active:
            self.task = asyncio.get_running_loop().create_task(self.run())
        else:
            for item in self.drain():
                self.emit(item)

    def halt(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def drain(self) -> list[Item]:
        """Take what the stage holds and has queued (the unsent rest of a chunk first)."""
        items: list[Item] = []
        if isinstance(self.held, Chunk) and self.offset < len(self.held.data):
            items.append(Chunk(self.held.data[self.offset :], self.held.ts))
        elif isinstance(self.held, str):
            items.append(self.held)
        items += self.queue
        self.queue.clear()
        self.held, self.offset = None, 0
        return items

    def restart(self, toxic: Toxic) -> None:
        """An updated toxic: the stage starts over with the new settings (and a new roll)."""
        if self.closed:
            return
        self.halt()
        self.queue.extendleft(reversed(self.drain()))
        self.toxic = toxic
        self.begin()

    def push(self, item: Item) -> None:
        if not self.active:
            self.emit(item)
        elif self.closed:
            self.link.discard(item)
        else:
            self.queue.append(item)
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    def emit(self, item: Item) -> None:
        if self.next is not None:
            self.next.push(item)
        else:
            self.link.sink(item)

    def out(self, item: Item) -> None:
        self.held, self.offset = None, 0
        self.emit(item)

    def close(self, how: str = EOF) -> None:
        """The toxic ends the stream (EOF) or resets it; later input is dropped."""
        for item in self.drain():
            self.link.discard(item)
        self.closed = True
        self.emit(how)

    async def take(self) -> Item:
        while not self.queue:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        self.held, self.offset = self.queue.popleft(), 0
        return self.held

    async def run(self) -> None:
        try:
            await getattr(self, "run_" + self.toxic.type)()
        except Exception as exc:  # a bug must not leave the connection half open
            log(f"toxic {self.toxic.name} failed: {exc!r}; closing the connection")
            self.link.conn.abort()

    def attr(self, key: str) -> int:
        return self.toxic.attributes[key]

    async def run_latency(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.take()
            if isinstance(item, Chunk):
                jitter = self.attr("jitter")
                delay = self.attr("latency") + (
                    random.randrange(-jitter, jitter) if jitter > 0 else 0
                )
                due = item.ts + delay / 1000
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                item.ts = due  # a later latency toxic adds to this one
            self.out(item)

    async def run_bandwidth(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.take()
            rate = self.attr("rate")  # KB/s, 1 KB = 1000 bytes; 0 = unlimited
            if isinstance(item, Chunk) and rate > 0:
                step = rate * 100  # at most 100 ms worth of bytes at a time, as Toxiproxy does
                while self.offset < len(item.data):
                    piece = item.data[self.offset : self.offset + step]
                    self.free_at = max(self.free_at, loop.time()) + len(piece) / (rate * 1000)
                    if self.free_at > loop.time():
                        await asyncio.sleep(self.free_at - loop.time())
                    self.offset += len(piece)
                    self.emit(Chunk(piece, item.ts))
                self.held, self.offset = None, 0
            else:
                self.out(item)

    async def run_slow_close(self) -> None:
        while True:
            item = await self.take()
            if item is EOF:
                await asyncio.sleep(self.attr("delay") / 1000)
            self.out(item)

    async def run_timeout(self) -> None:
        timeout = self.attr("timeout") / 1000  # 0: hold the connection (data dropped) forever
        while True:
            try:
                item = await (asyncio.wait_for(self.take(), timeout) if timeout else self.take())
            except TimeoutError:
                return self.close()
            if not isinstance(item, Chunk):
                return self.close(item)
            self.held = None
            self.link.discard(item)

    async def run_reset_peer(self) -> None:
        await self.take()  # as Toxiproxy: the first data (or EOF) starts the countdown
        await asyncio.sleep(self.attr("timeout") / 1000)
        self.close(RESET)

    async def run_slicer(self) -> None:
        while True:
            item = await self.take()
            if not isinstance(item, Chunk):
                self.out(item)
                continue
            bounds = slice_bounds(
                len(item.data), self.attr("average_size"), self.attr("size_variation")
            )
            for start, end in bounds:
                self.offset = end
                self.emit(Chunk(item.data[start:end], item.ts))
                await asyncio.sleep(self.attr("delay") / 1e6)  # microseconds
            self.held, self.offset = None, 0

    async def run_limit_data(self) -> None:
        while True:
            item = await self.take()
            self.held = None
            if not isinstance(item, Chunk):
                return self.close(item)
            room = max(0, self.attr("bytes") - self.sent)
            if room < len(item.data):
                self.link.discard(Chunk(item.data[room:], item.ts))
                item = Chunk(item.data[:room], item.ts)
            self.sent += len(item.data)
            if item.data:
                self.emit(item)
            if self.attr("bytes") - self.sent <= 0:
                return self.close()


class Side(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the upstream's)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.reader: Link | None = None  # the link this socket's bytes go into
        self.writer: Link | None = None  # the link that writes to this socket
        self.early: list[bytes | str] = []  # what came before the links existed
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self is self.conn.client:
            self.conn.accepted()

    def data_received(self, data: bytes) -> None:
        if self.reader is not None:
            self.reader.feed(data)
        else:
            self.early.append(data)

    def eof_received(self) -> bool:
        if self.reader is not None:
            self.reader.feed_eof()
        else:
            self.early.append(EOF)
        return True  # the link decides when this socket closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.writer is not None:
            self.writer.done = True
        if self.reader is not None:
            self.reader.feed_eof()
        self.conn.side_lost()

    def pause_writing(self) -> None:
        if self.writer is not None:
            self.writer.dst_full = True
            self.writer.flow()

    def resume_writing(self) -> None:
        if self.writer is not None:
            self.writer.dst_full = False
            self.writer.flow()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class Link:
    """One direction of a connection: src socket -> toxic stages -> dst socket."""

    def __init__(self, conn: Conn, upstream: bool, src: Side, dst: Side) -> None:
        self.conn, self.upstream, self.src, self.dst = conn, upstream, src, dst
        self.loop = asyncio.get_running_loop()
        self.stages: list[Stage] = []
        self.buffered = self.bytes = 0
        self.dst_full = self.chain_full = self.paused = self.done = self.eof = False
        src.reader, dst.writer = self, self

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if not self.stages:
            if not self.done:
                self.dst.write(data)
            return
        self.buffered += len(data)
        self.stages[0].push(Chunk(data, self.loop.time()))
        self.flow()

    def feed_eof(self) -> None:
        if not self.eof:
            self.eof = True
            self.stages[0].push(EOF) if self.stages else self.sink(EOF)

    def sink(self, item: Item) -> None:
        if isinstance(item, Chunk):
            self.buffered -= len(item.data)
            if not self.done:
                self.dst.write(item.data)
            self.flow()
        elif not self.done:
            self.done = True
            if item is RESET:
                self.conn.reset()
            elif self.dst.transport is not None:
                self.dst.transport.close()  # once the buffered bytes are sent

    def discard(self, item: Item) -> None:
        if isinstance(item, Chunk):
            self.buffered -= len(item.data)
            self.flow()

    def flow(self) -> None:
        if self.buffered > HIGH_WATER:
            self.chain_full = True
        elif self.buffered <= LOW_WATER:
            self.chain_full = False
        pause = self.dst_full or self.chain_full
        transport = self.src.transport
        if pause != self.paused and transport is not None and not transport.is_closing():
            self.paused = pause
            transport.pause_reading() if pause else transport.resume_reading()

    def add(self, toxic: Toxic) -> None:
        stage = Stage(self, toxic)
        if self.stages:
            self.stages[-1].next = stage
        self.stages.append(stage)

    def find(self, name: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.toxic.name == name)

    def remove(self, name: str) -> None:
        i = self.find(name)
        stage = self.stages.pop(i)
        stage.halt()
        items = stage.drain()
        if stage.active and not stage.closed and stage.toxic.type == "timeout":
            for item in items:  # as Toxiproxy: removing a timeout closes the connection
                self.discard(item)
            items = [EOF]
        for item in items:
            stage.emit(item)
        if i > 0:
            self.stages[i - 1].next = stage.next

    def halt(self) -> None:
        for stage in self.stages:
            stage.halt()


class Conn:
    """A proxied connection: the client's socket, the upstream's socket and the two links."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.client, self.server = Side(self), Side(self)
        self.links: list[Link] = []
        self.peer = "?"
        self.started = time.monotonic()
        self.closed = False

    def accepted(self) -> None:
        assert self.client.transport is not None
        self.peer = join_hostport(*self.client.transport.get_extra_info("peername")[:2])
        # Until the upstream answers. Not pause_reading() here: before 3.11.5 or so (Debian has
        # 3.11.2) the transport starts reading after connection_made() even when paused.
        asyncio.get_running_loop().call_soon(self.client.transport.pause_reading)
        self.proxy.conns.add(self)
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        proxy, loop = self.proxy, asyncio.get_running_loop()
        try:
            host, port = split_hostport(proxy.upstream)
            await loop.create_connection(lambda: self.server, host, port)
        except (OSError, ApiError) as exc:
            log(f"proxy {proxy.name}: client {self.peer}: upstream {proxy.upstream} failed: {exc}")
            self.abort()
            return
        if self.closed or self.client.lost:
            self.abort()
            return
        up = Link(self, True, self.client, self.server)
        down = Link(self, False, self.server, self.client)
        self.links = [up, down]
        for toxic in proxy.toxics:
            (up if toxic.upstream else down).add(toxic)
        for data in self.client.early:
            if isinstance(data, bytes):
                up.feed(data)
            else:
                up.feed_eof()
        log(f"proxy {proxy.name}: open {self.peer} -> {proxy.listen} -> {proxy.upstream}")
        assert self.client.transport is not None
        self.client.transport.resume_reading()

    def side_lost(self) -> None:
        # One socket gone: the other closes when its link ends (or at once when never connected).
        if self.client.lost and (self.server.lost or self.server.transport is None):
            self.finish()

    def finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.conns.discard(self)
        for link in self.links:
            link.halt()
        if self.links:
            up, down = self.links
            took = time.monotonic() - self.started
            log(
                f"proxy {self.proxy.name}: close {self.peer} after {took:.3f}s "
                f"(upstream {up.bytes} B, downstream {down.bytes} B)"
            )

    def abort(self) -> None:
        """Close both sockets now (proxy disabled or deleted, upstream unreachable)."""
        for link in self.links:
            link.halt()
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.abort()
        if self.server.transport is None:
            self.finish()

    def reset(self) -> None:
        linger = struct.pack("ii", 1, 0)
        for side in (self.client, self.server):
            if side.transport is not None:
                sock = side.transport.get_extra_info("socket")
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.abort()


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str) -> None:
        self.name, self.listen, self.upstream = name, listen, upstream
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.server: asyncio.Server | None = None
        self.conns: set[Conn] = set()

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.toxics, key=lambda t: not t.upstream)  # upstream ones first
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in ordered],
        }

    async def start(self) -> None:
        if self.enabled:
            return
        host, port = split_hostport(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:  # one socket (a name resolving to v4 and v6 would get two ports with port 0)
            sock = socket.create_server((host or "0.0.0.0", port), family=family, backlog=1024)
        except OSError as exc:
            reason = f"bind: {os.strerror(exc.errno).lower()}" if exc.errno else str(exc)
            raise ApiError(f"listen tcp {self.listen}: {reason}", 500) from exc
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Conn(self).client, sock=sock)
        self.listen = join_hostport(*sock.getsockname()[:2])
        self.enabled = True
        log(f"proxy {self.name}: started on {self.listen} -> {self.upstream}")

    def stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.conns):
            conn.abort()
        log(f"proxy {self.name}: stopped ({self.listen})")

    def toxic(self, name: str) -> Toxic:
        for toxic in self.toxics:
            if toxic.name == name:
                return toxic
        raise ApiError("toxic not found", 404)

    def each_link(self, toxic: Toxic) -> list[Link]:
        return [c.links[0 if toxic.upstream else 1] for c in list(self.conns) if c.links]

    def add_toxic(self, toxic: Toxic) -> None:
        self.toxics.append(toxic)
        for link in self.each_link(toxic):
            link.add(toxic)

    def update_toxic(self, old: Toxic, new: Toxic) -> None:
        self.toxics[self.toxics.index(old)] = new
        for link in self.each_link(new):
            link.stages[link.find(new.name)].restart(new)

    def remove_toxic(self, toxic: Toxic) -> None:
        self.toxics.remove(toxic)
        for link in self.each_link(toxic):
            link.remove(toxic.name)


def parse_json(body: bytes, kind: type = dict) -> Any:
    if not body.strip():
        raise bad_body("EOF")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise bad_body(str(exc)) from exc
    if not isinstance(value, kind):
        raise bad_body("expected a JSON " + ("object" if kind is dict else "array"))
    return value


def get_field(obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_body(f"field {key!r} must be of type {kind.__name__}")
    return value


def parse_attributes(raw: Any, base: dict[str, int]) -> dict[str, int]:
    if raw is None:
        return dict(base)
    if not isinstance(raw, dict):
        raise bad_body("attributes must be an object")
    attrs = dict(base)
    for key in base.keys() & raw.keys():
        value = raw[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_body(f"attribute {key!r} must be an integer")
        attrs[key] = value
    return attrs


def parse_toxicity(raw: Any, default: float) -> float:
    if raw is None:
        return default
    if not isinstance(raw, int | float) or isinstance(raw, bool) or not 0 <= raw <= 1:
        raise bad_body("toxicity must be a number between 0 and 1")
    return float(raw)


class Api:
    def __init__(self, token: bytes = b"") -> None:
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.token = token

    def authorized(self, authorization: str) -> bool:
        if not self.token:
            return True
        scheme, _, given = authorization.partition(" ")
        return scheme == "Bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    def proxy(self, name: str) -> Proxy:
        if name not in self.proxies:
            raise ApiError("proxy not found", 404)
        return self.proxies[name]

    @staticmethod
    def proxy_input(obj: Any, where: str = "") -> tuple[str, str, str, bool]:
        if not isinstance(obj, dict):
            raise bad_body("expected a JSON object")
        name = get_field(obj, "name", str, "")
        listen = get_field(obj, "listen", str, "")
        upstream = get_field(obj, "upstream", str, "")
        enabled = get_field(obj, "enabled", bool, True)
        for key, value in (("name", name), ("upstream", upstream)):
            if not value:
                raise ApiError(f"missing required field: {key}{where}", 400)
        split_hostport(upstream)
        split_hostport(listen or ":0")
        return name, listen or ":0", upstream, enabled

    async def dispatch(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        """(status, JSON value or None) for an API route; raises ApiError."""
        match parts:
            case ["reset"] if method == "POST":
                for proxy in self.proxies.values():
                    await proxy.start()
                    for toxic in list(proxy.toxics):
                        proxy.remove_toxic(toxic)
                return 204, None
            case ["proxies"] if method == "GET":
                return 200, {name: p.to_json() for name, p in self.proxies.items()}
            case ["proxies"] if method == "POST":
                name, listen, upstream, enabled = self.proxy_input(parse_json(body))
                if name in self.proxies:
                    raise ApiError("proxy already exists", 409)
                proxy = Proxy(name, listen, upstream)
                if enabled:
                    await proxy.start()
                self.proxies[name] = proxy
                return 201, proxy.to_json()
            case ["populate"] if method == "POST":
                return await self.populate(parse_json(body, list))
            case ["proxies", name] if method == "GET":
                return 200, self.proxy(name).to_json()
            case ["proxies", name] if method in ("POST", "PATCH"):
                proxy = self.proxy(name)
                obj = parse_json(body)
                listen = get_field(obj, "listen", str, proxy.listen)
                upstream = get_field(obj, "upstream", str, proxy.upstream)
                enabled = get_field(obj, "enabled", bool, proxy.enabled)
                split_hostport(listen)
                split_hostport(upstream)
                if (listen, upstream) != (proxy.listen, proxy.upstream):
                    proxy.stop()
                    proxy.listen, proxy.upstream = listen, upstream
                if enabled:
                    await proxy.start()
                else:
                    proxy.stop()
                return 200, proxy.to_json()
            case ["proxies", name] if method == "DELETE":
                self.proxy(name).stop()
                del self.proxies[name]
                return 204, None
            case ["proxies", name, "toxics"] if method == "GET":
                return 200, self.proxy(name).to_json()["toxics"]
            case ["proxies", name, "toxics"] if method == "POST":
                proxy = self.proxy(name)
                toxic = self.new_toxic(proxy, parse_json(body))
                proxy.add_toxic(toxic)
                return 200, toxic.to_json()
            case ["proxies", name, "toxics", toxic_name] if method == "GET":
                return 200, self.proxy(name).toxic(toxic_name).to_json()
            case ["proxies", name, "toxics", toxic_name] if method in ("POST", "PATCH"):
                proxy = self.proxy(name)
                old = proxy.toxic(toxic_name)
                obj = parse_json(body)
                attrs = parse_attributes(obj.get("attributes"), old.attributes)
                toxicity = parse_toxicity(obj.get("toxicity"), old.toxicity)
                new = Toxic(old.name, old.type, old.stream, toxicity, attrs)
                proxy.update_toxic(old, new)
                return 200, new.to_json()
            case ["proxies", name, "toxics", toxic_name] if method == "DELETE":
                proxy = self.proxy(name)
                proxy.remove_toxic(proxy.toxic(toxic_name))
                return 204, None
        raise NoRoute(method)

    @staticmethod
    def new_toxic(proxy: Proxy, obj: dict[str, Any]) -> Toxic:
        stream = get_field(obj, "stream", str, "downstream")
        if stream.lower() not in ("upstream", "downstream"):
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        type_ = get_field(obj, "type", str, "")
        name = get_field(obj, "name", str, "") or f"{type_}_{stream}"
        if type_ not in TOXIC_TYPES:
            raise ApiError("invalid toxic type", 400)
        if any(t.name == name for t in proxy.toxics):
            raise ApiError("toxic already exists", 409)
        attrs = parse_attributes(obj.get("attributes"), TOXIC_TYPES[type_])
        return Toxic(name, type_, stream, parse_toxicity(obj.get("toxicity"), 1.0), attrs)

    async def populate(self, items: list[Any]) -> tuple[int, Any]:
        wanted = [self.proxy_input(obj, f" at proxy {i + 1}") for i, obj in enumerate(items)]
        if len({w[0] for w in wanted}) != len(wanted):
            raise bad_body("duplicate proxy name")
        done: list[Proxy] = []
        for name, listen, upstream, enabled in wanted:
            old = self.proxies.get(name)
            if old is not None and (old.listen, old.upstream) == (listen, upstream):
                done.append(old)
                continue
            if old is not None:
                old.stop()
                del self.proxies[name]
            proxy = Proxy(name, listen, upstream)
            try:
                if enabled:
                    await proxy.start()
            except ApiError as exc:
                body = {"error": exc.message, "status": exc.status}
                return exc.status, body | {"proxies": [p.to_json() for p in done]}
            self.proxies[name] = proxy
            done.append(proxy)
        return 201, {"proxies": [p.to_json() for p in done]}

    async def handle(
        self, method: str, target: str, body: bytes, agent: str, authorization: str = ""
    ) -> tuple[int, bytes, str]:
        """One HTTP request -> (status, body, content type)."""
        parts = [unquote(p) for p in urlsplit(target).path.split("/")[1:]]
        if agent.startswith("Mozilla/"):  # Toxiproxy refuses browsers (CSRF protection)
            return 403, b"User agent not allowed\n", TEXT
        if parts != ["version"] and not self.authorized(authorization):
            body = b'{"error":"the API needs the harness\'s token","status":401}'
            return 401, body, "application/json"
        if parts == ["version"]:
            if method != "GET":
                return 405, b"", TEXT
            return 200, f'{{"version": "{VERSION}"}}\n'.encode(), "application/json;charset=utf-8"
        try:
            async with self.lock:
                status, value = await self.dispatch(method, parts, body)
        except ApiError as exc:
            status, value = exc.status, {"error": exc.message, "status": exc.status}
        except NoRoute:
            n = len(parts)
            known = parts in (["reset"], ["proxies"], ["populate"]) or (
                parts[:1] == ["proxies"] and (n == 2 or (n in (3, 4) and parts[2] == "toxics"))
            )
            if known and all(parts):
                return 405, b"", TEXT
            return 404, b"404 page not found\n", TEXT
        except Exception as exc:  # a bug: answer as Toxiproxy does for unexpected errors
            log(f"api {method} {target}: internal error {exc!r}")
            status, value = 500, {"error": str(exc), "status": 500}
        payload = b"" if value is None else json.dumps(value, separators=(",", ":")).encode()
        return status, payload, "application/json"


async def serve_http(api: Api, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    client = join_hostport(*peer[:2]) if peer else "?"
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request, *lines = head.decode("latin-1").split("\r\n")
            method, target, version = [*request.split(" "), "", "", ""][:3]
            headers = {}
            for line in lines:
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            started = time.monotonic()
            raw_length = headers.get("content-length", "0").strip() or "0"
            if not (raw_length.isascii() and raw_length.isdigit()):
                raise ValueError(f"bad Content-Length {raw_length[:20]!r}")
            length = int(raw_length)
            if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
                raise ValueError("chunked or too large a body")
            body = await reader.readexactly(length)
            status, payload, ctype = await api.handle(
                method,
                target,
                body,
                headers.get("user-agent", ""),
                headers.get("authorization", ""),
            )
            connection = headers.get("connection", "").lower()
            keep = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
            out = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
            if status != 204:
                out += [f"Content-Type: {ctype}", f"Content-Length: {len(payload)}"]
            out += ["Connection: " + ("keep-alive" if keep else "close"), "", ""]
            writer.write("\r\n".join(out).encode("latin-1") + payload)
            took = (time.monotonic() - started) * 1000
            log(f"api {client} {method} {target} -> {status} ({took:.1f} ms)")
            await writer.drain()
            if not keep:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    except ValueError as exc:
        with contextlib.suppress(ConnectionError):
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
        log(f"api {client}: bad request: {exc}")
    finally:
        writer.close()


async def serve(host: str, port: int, config: str | None, token: bytes = b"") -> None:
    api = Api(token)
    loop = asyncio.get_running_loop()
    stopping = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping.done() or stopping.set_result(None))
    if config:
        try:
            with open(config, "rb") as file:
                status, result = await api.populate(parse_json(file.read(), list))
            log(f"populated {len(result['proxies'])} proxies from {config} (status {status})")
        except (OSError, ApiError) as exc:
            log(f"failed to populate proxies from {config}: {exc}")
    server = await asyncio.start_server(
        lambda r, w: serve_http(api, r, w), host, port, reuse_address=True
    )
    log(f"Starting Toxiproxy HTTP server on {host}:{port} (version {VERSION})")
    await stopping
    server.close()
    for proxy in api.proxies.values():
        proxy.stop()
    log("Shutting down")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Toxiproxy-compatible TCP fault proxy")
    parser.add_argument("--host", "-host", default="127.0.0.1", help="API host (127.0.0.1)")
    parser.add_argument("--port", "-port", type=int, default=8474, help="API port (8474)")
    parser.add_argument("--config", "-config", help="JSON file of proxies to create at start")
    parser.add_argument("--token-file", help="the API answers only callers bearing this token")
    args = parser.parse_args(argv)
    token = b""
    if args.token_file:
        with open(args.token_file, "rb") as file:
            token = file.read().strip()
        if not token:
            parser.error(f"--token-file {args.token_file} is empty")
    asyncio.run(serve(args.host, args.port, args.config, token))


if __name__ == "__main__":
    main()
