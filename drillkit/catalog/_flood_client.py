"""The flood client: a bounded HTTP/1.1 load generator run inside a drill container (standard library
only; drillkit/catalog/flood.py passes this file's source to `python3 -c` in the app image).

It sends one request (method, path, body) over `concurrency` keep-alive connections to one literal
IPv4 address (the web front's address on the run's internal network; a host name is refused, so it
can never resolve elsewhere), at most `rate` requests per second in all, until `duration` seconds
have passed or `max_requests` were sent, whichever comes first. Every `interval` seconds it prints
one JSON line of running totals (the harness reads the last one from the container log):

    {"t": 3.5, "sent": 1400, "done": 1390, "status": {"401": 1200, "429": 190}, "errors": 0,
     "running": true}

and a last line with "running": false when it ends by itself. With `--origin-header NAME`, an
answer carrying that header (one the app sets and the front passes through) is counted under
"<status> app" ("503 app": the app itself shed the request), so the front's own answers (its
limit's 429 or 503) stay apart from the app's.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time

REQUEST_TIMEOUT_S = 10.0
MAX_CONCURRENCY = 512
MAX_DURATION_S = 600.0
MAX_REQUESTS = 2_000_000
MAX_RATE = 5000.0


class Totals:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.sent = 0
        self.done = 0
        self.status: dict[str, int] = {}
        self.errors = 0

    def line(self, running: bool) -> str:
        return json.dumps(
            {
                "t": round(time.monotonic() - self.t0, 3),
                "sent": self.sent,
                "done": self.done,
                "status": dict(sorted(self.status.items())),
                "errors": self.errors,
                "running": running,
            },
            separators=(",", ":"),
        )


def literal_ipv4(text: str) -> str:
    """The address itself; a host name or anything but a private IPv4 address is refused."""
    addr = ipaddress.IPv4Address(text)
    if not addr.is_private or addr.is_loopback:
        raise ValueError(f"{text} is not a private (container network) address")
    return str(addr)


def request_bytes(method: str, path: str, host: str, body: str) -> bytes:
    data = body.encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: drillkit-flood\r\n"
    if data:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


async def read_response(reader: asyncio.StreamReader, origin: str = "") -> tuple[int, bool, bool]:
    """(status, whether the server keeps the connection open, whether the answer carries the
    `origin` header: lower case; never when empty)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split(b" ", 2)[1])
    length, keep = 0, True
    chunked = from_origin = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value == "close":
            keep = False
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif origin and name == origin:
            from_origin = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep, from_origin


class Flood:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.totals = Totals()
        self.request = request_bytes(args.method, args.path, args.target, args.body)
        self.deadline = self.totals.t0 + args.duration
        self.next_slot = self.totals.t0
        self.gap = 1.0 / args.rate

    async def slot(self) -> bool:
        """Wait for this worker's turn under the rate bound; False once the flood is over."""
        a, now = self.args, time.monotonic()
        if now >= self.deadline or self.totals.sent >= a.max_requests:
            return False
        at = max(now, self.next_slot)
        self.next_slot = at + self.gap
        self.totals.sent += 1
        if at > now:
            await asyncio.sleep(at - now)
        return True

    async def worker(self) -> None:
        a, t = self.args, self.totals
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while await self.slot():
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(a.target, a.port), REQUEST_TIMEOUT_S
                    )
                writer.write(self.request)
                status, keep, from_origin = await asyncio.wait_for(
                    read_response(reader, a.origin_header), REQUEST_TIMEOUT_S
                )
                key = f"{status} app" if from_origin else str(status)
                t.status[key] = t.status.get(key, 0) + 1
                if not keep:
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, ValueError, IndexError, EOFError):
                t.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
            t.done += 1
        if writer is not None:
            writer.close()

    async def report(self) -> None:
        while True:
            print(self.totals.line(True), flush=True)
            await asyncio.sleep(self.args.interval)

    async def run(self) -> None:
        reporter = asyncio.create_task(self.report())
        await asyncio.gather(*(self.worker() for _ in range(self.args.concurrency)))
        reporter.cancel()
        print(self.totals.line(False), flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="drillkit-flood")
    p.add_argument("--target", type=literal_ipv4, required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--method", choices=("GET", "POST"), default="GET")
    p.add_argument("--path", required=True)
    p.add_argument("--body", default="")
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--max-requests", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--origin-header", type=str.lower, default="")
    args = p.parse_args(argv)
    bounds = (
        (1 <= args.concurrency <= MAX_CONCURRENCY, "concurrency"),
        (0 < args.duration <= MAX_DURATION_S, "duration"),
        (1 <= args.max_requests <= MAX_REQUESTS, "max-requests"),
        (0 < args.rate <= MAX_RATE, "rate"),
        (args.path.startswith("/") and args.path.isprintable() and " " not in args.path, "path"),
        (all(c.isalnum() or c == "-" for c in args.origin_header), "origin-header"),
    )
    for ok, name in bounds:
        if not ok:
            p.error(f"--{name} out of bounds")
    return args


def main(argv: list[str]) -> None:
    asyncio.run(Flood(parse_args(argv)).run())


if __name__ == "__main__":
    main(sys.argv[1:])
