"""The cache (issue 19 item 5) without containers: the app's RESP client and its degraded mode,
the harness's RESP parsing, the kind's registration and its secrets."""

import socket
from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

from drillkit.catalog import load
from drillkit.core.needs import missing_needs
from drillkit.core.registry import CHECKS, OPTIONAL_SERVICES, PROBES, RECOVERY
from drillkit.core.scenario import load_scenario
from drillkit.paths import SCENARIOS_DIR
from drillkit.stack.kinds import SERVICE_KINDS
from drillkit.stack.secrets import Secrets
from drillkit.stack.services.cache import Resp, RespError, parse_clients, parse_info
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions

APP_PATH = Path(__file__).resolve().parents[2] / "images" / "app" / "app.py"


def _load_app() -> ModuleType:
    return load_image_module("drillkit_reference_app_cache", APP_PATH)


app = _load_app()


def _reader(data: bytes) -> "app.RespReader":
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]  # replies split across reads
    return app.RespReader(lambda _n: chunks.pop(0) if chunks else b"")


def test_app_resp_command_and_replies() -> None:
    assert app.resp_command("GET", "order:1") == b"*2\r\n$3\r\nGET\r\n$7\r\norder:1\r\n"
    r = _reader(b'+OK\r\n:42\r\n$-1\r\n$5\r\n{"a":\r\n*2\r\n$1\r\nx\r\n:1\r\n')
    assert r.reply() == "OK"
    assert r.reply() == 42
    assert r.reply() is None
    assert r.reply() == '{"a":'
    assert r.reply() == ["x", 1]
    with pytest.raises(app.CacheDownError, match="closed"):
        r.reply()


def test_app_error_reply_names_only_its_code() -> None:
    r = _reader(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    with pytest.raises(app.CacheDownError) as info:
        r.reply()
    assert str(info.value) == "cache refused: WRONGPASS"


def test_app_cache_target() -> None:
    assert app.parse_cache_target("cache:6380\n") == ("cache", 6380)
    assert app.parse_cache_target("cache") == ("cache", 6379)
    for bad in ("", "ca che:1", "cache:0", "cache:x"):
        with pytest.raises(ValueError):
            app.parse_cache_target(bad)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused at once
    return port


def test_app_degrades_to_the_database_and_retries_at_most_every_interval(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text(f"127.0.0.1:{_closed_port()}\n")
    (tmp_path / "pw").write_text("not-the-password\n")
    cache = app.OrderCache(str(tmp_path / "cache"), str(tmp_path / "pw"))
    assert cache.get_order(1) is None  # the read goes to the database
    assert cache.get_order(1) is None  # within the retry interval: not even tried
    snap = cache.snapshot()
    assert (snap["state"], snap["fallbacks"], snap["errors"]) == ("degraded", 2, 1)
    assert "ConnectionRefusedError" in snap["reason"]
    assert cache.health_fields() == {"cache": "degraded", "cache_fallbacks": 2}
    assert "not-the-password" not in repr(cache.config)
    cache.put_order(1, {"id": 1})  # a failed store is no error


def test_app_without_a_cache_file_has_no_cache(tmp_path: Path) -> None:
    cache = app.OrderCache(str(tmp_path / "absent"), str(tmp_path / "pw"))
    assert cache.get_order(1) is None
    assert cache.health_fields() == {}
    assert cache.snapshot()["state"] == "off"
    assert cache.snapshot()["fallbacks"] == 0


def test_harness_resp_client_over_a_socket_pair() -> None:
    a, b = socket.socketpair()
    conn = Resp.__new__(Resp)
    conn.sock, conn.buf = a, b""
    b.sendall(b"+PONG\r\n-WRONGPASS bad\r\n*2\r\n$9\r\npasswords\r\n*0\r\n")
    assert conn.call("PING") == "PONG"
    assert b.recv(100) == b"*1\r\n$4\r\nPING\r\n"
    with pytest.raises(RespError, match="WRONGPASS"):
        conn.call("AUTH", "x")
    assert conn.call("ACL", "GETUSER", "default") == ["passwords", []]
    conn.close()
    b.close()


def test_info_and_client_list_parsing() -> None:
    info = parse_info("# Stats\r\nkeyspace_hits:12\r\nkeyspace_misses:3\r\n\r\n")
    assert info == {"keyspace_hits": "12", "keyspace_misses": "3"}
    clients = parse_clients(
        "id=3 addr=10.0.0.4:4100 name=drillkit-app age=5 user=default\n"
        "id=7 addr=10.0.0.1:4200 name= age=0 user=default cmd=client|list\n"
    )
    assert [(c["id"], c["name"]) for c in clients] == [("3", "drillkit-app"), ("7", "")]


def test_cache_kind_and_catalogue_are_registered() -> None:
    load()
    assert "cache" in SERVICE_KINDS
    assert OPTIONAL_SERVICES["cache"] == ("cache",)
    assert "cache" in PROBES.entries
    for name in (
        "check-cache-status",
        "verify-cache",
        "rotate-cache-password",
        "deliver-cache-password",
        "revoke-old-cache-password",
    ):
        assert "cache" in RECOVERY.entries[name].needs, name
    for name in ("cache-degraded-gracefully", "cache-in-use", "old-cache-password-rejected"):
        assert "cache" in CHECKS.entries[name].needs, name


def test_redis_password_server_and_app_copies_are_separate_files(tmp_path: Path) -> None:
    s = Secrets(tmp_path / "run")
    assert "redis_password" not in s._current  # issued only by the cache kind
    s.set("redis_password", "server-pw")
    s.set("app_redis_password", "app-pw")
    assert (s.cache_dir / "redis_password").read_text() == "server-pw\n"
    assert (s.app_dir / "app_redis_password").read_text() == "app-pw\n"
    assert not (s.app_dir / "redis_password").exists()
    assert {"server-pw", "app-pw"} <= set(s.values())  # scanned for leaks in reports


def test_cache_kind_configures_the_app_and_both_password_copies(tmp_path: Path) -> None:
    stack = Stack(load_stack(), "ut0", tmp_path, StackOptions(optional=frozenset({"cache"})))
    assert "cache" in stack.services and "cache" not in stack.databases
    stack.prepare()
    app_dir = stack.kinds["app"].config_dir
    assert (app_dir / "cache").read_text() == "cache:6379\n"
    server = (stack.secrets.cache_dir / "redis_password").read_text()
    assert server == (stack.secrets.app_dir / "app_redis_password").read_text()
    assert server.strip() == stack.secrets["redis_password"]


def test_cache_steps_are_refused_on_a_stack_without_the_cache() -> None:
    load()
    sc = load_scenario(SCENARIOS_DIR / "cache-outage.yaml")
    lacking = missing_needs(sc, frozenset({"reference-app", "postgres", "journey"}))
    assert {path for path, _ in lacking} >= {"recovery[0]", "recovery[2]", "checklist[10]"}
    assert all("add stack: {cache: true}" in why for _, why in lacking)
