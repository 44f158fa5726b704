"""The traffic flood drill's pure parts: the flood client's bounds, HTTP reading and totals, the
rate limit's nginx configuration, the web log's top talkers, nginx worker listing."""

import asyncio
import json
from types import SimpleNamespace

import pytest

from drillkit.catalog import _flood_client as client
from drillkit.catalog.flood import (
    LIMITS_DIR,
    FloodStats,
    check_path,
    flood_endpoint,
    limit_conf,
    parse_stats,
    top_talkers,
    worker_pids,
)
from drillkit.errors import StepFailed
from drillkit.paths import IMAGES_DIR

ARGS = ["--target", "172.20.0.5", "--path", "/api/auth/login", "--concurrency", "8"]
ARGS += ["--duration", "5", "--max-requests", "100", "--rate", "50"]


def test_client_refuses_a_host_name_or_a_public_address() -> None:
    assert client.literal_ipv4("192.168.0.5") == "192.168.0.5"
    for bad in ("web", "8.8.8.8", "127.0.0.1", "example.com"):
        with pytest.raises(ValueError):
            client.literal_ipv4(bad)
    with pytest.raises(SystemExit):
        client.parse_args(["--target", "web", *ARGS[2:]])


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--concurrency", "0"),
        ("--concurrency", "100000"),
        ("--duration", "0"),
        ("--duration", "100000"),
        ("--max-requests", "0"),
        ("--rate", "0"),
        ("--rate", "1e9"),
    ],
)
def test_client_refuses_unbounded_floods(flag: str, value: str) -> None:
    argv = list(ARGS)
    argv[argv.index(flag) + 1] = value
    with pytest.raises(SystemExit):
        client.parse_args(argv)


def _read(data: bytes, origin: str = "") -> tuple[int, bool, bool, bytes]:
    """The client's reading of one response in `data`, and the bytes left after it."""

    async def read() -> tuple[int, bool, bool, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return (*await client.read_response(reader, origin), await reader.read())

    return asyncio.run(read())


def test_client_request_and_response() -> None:
    req = client.request_bytes("POST", "/api/auth/login", "10.0.0.2", '{"a": 1}')
    assert req.startswith(b"POST /api/auth/login HTTP/1.1\r\nHost: 10.0.0.2\r\n")
    assert b"Content-Length: 8\r\n\r\n" in req and req.endswith(b'{"a": 1}')

    body = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\n\r\nslow!NEXT"
    assert _read(body) == (429, True, False, b"NEXT")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    chunked += b"3\r\nabc\r\n0\r\n\r\nNEXT"
    assert _read(chunked) == (200, False, False, b"NEXT")


def test_client_tells_the_apps_answers_from_the_fronts() -> None:
    """An answer carrying the origin header is the app's (passed through); one without it is the
    front's own (its limit's refusal)."""

    app = b"HTTP/1.1 503 Service Unavailable\r\nX-App-Version: 1.4\r\nContent-Length: 0\r\n\r\n"
    front = b"HTTP/1.1 503 Service Temporarily Unavailable\r\nContent-Length: 0\r\n\r\n"
    assert _read(app, "x-app-version")[2] is True
    assert _read(front, "x-app-version")[2] is False
    assert _read(app)[2] is False  # no origin header named: nothing is the app's
    assert client.parse_args([*ARGS, "--origin-header", "X-App-Version"]).origin_header == (
        "x-app-version"
    )
    with pytest.raises(SystemExit):
        client.parse_args([*ARGS, "--origin-header", "X: y"])


def test_the_apps_own_503s_are_not_the_front_refusing() -> None:
    """Under a flood the app sheds load with 503s (its database pool busy): those answers carry
    its header, and a limit on the wrong path, which refuses nothing, is not taken for one that
    refuses the flood."""
    shed = FloodStats(t=4.0, done=1000, status={"401 app": 150, "503 app": 850}, running=True)
    assert shed.rejected == 0 and shed.rejected_share == 0.0
    limited = FloodStats(t=4.0, done=1000, status={"401 app": 50, "429": 950}, running=True)
    assert limited.rejected_share == 0.95


def test_totals_line_reads_back_as_stats() -> None:
    totals = client.Totals()
    totals.sent, totals.done, totals.errors = 12, 10, 1
    totals.status = {"401": 4, "429": 5, "503": 1}
    log = "starting\n" + totals.line(True) + "\nnot json {\n"
    stats = parse_stats(log)
    assert stats is not None and stats.running and stats.done == 10 and stats.rejected == 6
    assert parse_stats("nothing yet\n") is None
    assert json.loads(totals.line(False))["running"] is False


def test_stats_since_the_limit() -> None:
    at = FloodStats(t=2.0, sent=100, done=90, status={"401": 90}, running=True)
    now = FloodStats(t=6.0, sent=1300, done=1290, status={"401": 110, "429": 1180}, running=True)
    after = now.since(at)
    assert (after.t, after.done, after.rejected) == (4.0, 1200, 1180)
    assert after.status == {"401": 20, "429": 1180}
    assert "1200 requests in 4.0 s (300/s" in after.describe()


def test_limit_conf_limits_only_the_path_per_client_address() -> None:
    conf = limit_conf("/api/auth/login", 5.0, 10)
    assert '"/api/auth/login" $binary_remote_addr;' in conf
    assert 'default "";' in conf  # other paths: an empty key, never counted
    assert "rate=300r/m" in conf and "burst=10 nodelay" in conf
    assert "limit_req_status 429;" in conf
    for bad in ("api/auth", "/a b", "/x;}", '/x"', "/" + "a" * 300):
        with pytest.raises(StepFailed):
            check_path(bad, "rate-limit")
    for rate, burst in ((0.0, 10), (5000.0, 10), (5.0, -1), (5.0, 100_000)):
        with pytest.raises(StepFailed):
            limit_conf("/api/orders", rate, burst)


def test_nginx_conf_includes_the_limits_dir() -> None:
    conf = (IMAGES_DIR / "web" / "nginx.conf").read_text()
    http = conf[conf.index("http {") : conf.index("server {")]
    assert f"include {LIMITS_DIR}/*.conf;" in http


def test_top_talkers_by_address_and_path() -> None:
    line = '{ip} - - [02/Dec/2026:02:49:01 +0000] "{req} HTTP/1.1" {st} 30 "-" "drillkit-flood"'
    log = "\n".join(
        [line.format(ip="172.26.0.6", req="POST /api/auth/login", st=401)] * 5
        + [line.format(ip="172.27.0.1", req="GET /api/health?x=1", st=200)] * 2
        + ["2026/12/02 02:49:01 [warn] something", ""]
    )
    assert top_talkers(log) == [
        ("172.26.0.6", "POST /api/auth/login", 5),
        ("172.27.0.1", "GET /api/health", 2),
    ]


def test_worker_pids() -> None:
    ps = (
        "1 nginx: master process nginx -g daemon off; \n"
        "7 nginx: worker process is shutting down \n"
        "9 nginx: worker process \n"
        "12 sh -c for p in ...\n"
    )
    assert worker_pids(ps) == ({"9"}, {"7"})


@pytest.mark.parametrize(
    "params",
    [
        {"concurrency": 0},
        {"concurrency": 10_000},
        {"rate": 0.0},
        {"duration": 1000.0},
        {"max_requests": 10_000_000},
        {"method": "DELETE"},
        {"path": "http://elsewhere/"},
        {"body": "x\n" * 10},
    ],
)
def test_flood_step_refuses_bad_bounds_before_starting_anything(params: dict) -> None:
    ctx = SimpleNamespace(stack=None)  # nothing may be touched: no engine call happens
    with pytest.raises(StepFailed):
        flood_endpoint(ctx, **params)


class ReportingClient:
    """A flood client container whose log shows the next of `reports` at each read."""

    def __init__(self, *reports: dict) -> None:
        self.reports = list(reports)

    def logs(self, tail: int = 5) -> bytes:
        report = self.reports.pop(0) if len(self.reports) > 1 else self.reports[0]
        return (json.dumps({"sent": 0, "errors": 0, "running": True, **report}) + "\n").encode()


def test_the_limit_counts_from_the_first_report_after_it() -> None:
    """A report older than the reload counts requests answered before the limit as answered
    since: the limit's totals are the client's next report."""
    from drillkit.catalog.flood import Flood, _next_report

    old = {"t": 4.0, "done": 1200, "status": {"401": 1200}}
    new = {"t": 4.5, "done": 1350, "status": {"401": 1340, "429": 10}}
    flood = Flood(container=ReportingClient(old, old, new))
    at = _next_report(flood, 5.0)
    assert at is not None and (at.t, at.done) == (4.5, 1350)
    assert _next_report(Flood(container=ReportingClient(old)), 0.2) is None  # no report: none


def test_flood_contained_settles_once_the_refused_share_is_reached() -> None:
    from drillkit.catalog.flood import Flood, flood_settled

    at = FloodStats(t=4.5, done=1350, status={"401": 1350}, running=True)
    burst = {"t": 5.0, "done": 1500, "status": {"401": 1400, "429": 100}}  # 50 passed, 100 refused
    later = {"t": 8.0, "done": 2400, "status": {"401": 1410, "429": 990}}  # 94 % refused
    flood = Flood(container=ReportingClient(burst), at_limit=at)
    ctx = SimpleNamespace(part=lambda cls: flood)
    assert not flood_settled(ctx, 0.0)  # 67 %: observe on
    flood.container = ReportingClient(later)
    assert flood_settled(ctx, 0.0)
    assert flood_settled(SimpleNamespace(part=lambda cls: Flood()), 0.0)  # nothing to judge
