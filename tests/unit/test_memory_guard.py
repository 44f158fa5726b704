"""Unit tests of the memory drill without containers: the reference app's leak and memory guard
(sizes, RSS, the guard's trigger, its config files, the connection drain) and the catalogue's
judgement of the memory samples."""

import socket
from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

from drillkit.catalog.memory import MIB, MemorySample, judge_memory, parse_size, window_start
from drillkit.errors import StepFailed

APP_PATH = Path(__file__).resolve().parents[2] / "images" / "app" / "app.py"


def _load_app() -> ModuleType:
    return load_image_module("drillkit_reference_app_memory", APP_PATH)


app = _load_app()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("400M", 400 << 20),
        ("512K", 512 << 10),
        ("1G", 1 << 30),
        ("64MiB", 64 << 20),
        ("256KiB", 256 << 10),
        (" 1000 ", 1000),
        ("2mb", 2 << 20),
    ],
)
def test_app_reads_sizes_as_pm2_writes_them(text: str, expected: int) -> None:
    assert app.parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5M", "400 megabytes", "1T"])
def test_app_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        app.parse_memory_size(text)


def test_rss_from_proc_status() -> None:
    status = "Name:\tpython3\nVmPeak:\t  99999 kB\nVmRSS:\t   40960 kB\nThreads:\t3\n"
    assert app.rss_from_status(status) == 40 << 20
    with pytest.raises(ValueError):
        app.rss_from_status("Name:\tpython3\n")
    assert app.current_rss() > 0  # this process's own /proc/self/status


def test_guard_acts_at_its_size_only_after_the_minimum_uptime() -> None:
    guard = 64 << 20
    assert app.guard_due(guard, guard, app.GUARD_MIN_UPTIME_S)
    assert not app.guard_due(guard - 1, guard, 10.0)
    assert not app.guard_due(guard * 2, guard, app.GUARD_MIN_UPTIME_S / 2)  # no restart loop
    assert not app.guard_due(guard * 2, None, 10.0)  # no guard configured


def test_memory_config_files(tmp_path: Path) -> None:
    leak, guard = tmp_path / "memory_leak", tmp_path / "max_memory_restart"
    assert app.load_memory_config(str(leak), str(guard)) == app.MemoryConfig()
    leak.write_text("256KiB\n")
    guard.write_text("64M\n")
    config = app.load_memory_config(str(leak), str(guard))
    assert (config.leak_per_request, config.guard_bytes, config.problems) == (
        256 << 10,
        64 << 20,
        (),
    )
    guard.write_text("8M")  # below the floor: a restart loop, refused
    leak.write_text("lots")
    config = app.load_memory_config(str(leak), str(guard))
    assert config.guard_bytes is None and config.leak_per_request == 0
    assert len(config.problems) == 2 and "floor" in config.problems[1]


def test_the_leak_retains_real_buffers_per_request(tmp_path: Path) -> None:
    leak = tmp_path / "memory_leak"
    env = {"MEMORY_LEAK_FILE": str(leak), "MAX_MEMORY_RESTART_FILE": str(tmp_path / "none")}
    control = app.MemoryControl(env)
    control.on_request()
    assert control.snapshot()["retained_bytes"] == 0  # off: nothing kept
    leak.write_text("64K")
    control.reload()
    for _ in range(3):
        control.on_request()
    snap = control.snapshot()
    assert snap["retained_bytes"] == 3 * (64 << 10) and snap["retained_chunks"] == 3
    assert snap["leak_bytes_per_request"] == 64 << 10 and snap["max_memory_restart_bytes"] is None


def test_guard_restarts_are_counted_across_exec() -> None:
    env = {"MEMORY_LEAK_FILE": "/nonexistent/a", "MAX_MEMORY_RESTART_FILE": "/nonexistent/b"}
    assert app.MemoryControl({**env, app.GUARD_RESTARTS_ENV: "3"}).guard_restarts == 3
    assert app.MemoryControl({**env, app.GUARD_RESTARTS_ENV: "x"}).guard_restarts == 0
    assert app.inherited_listen_socket({}) is None


def test_a_restart_hands_over_idle_connections_not_busy_ones() -> None:
    conns = app.Connections()
    pairs = [socket.socketpair() for _ in range(3)]
    (idle, _), (busy, busy_peer), (gone, gone_peer) = pairs
    try:
        for server_side, _ in pairs:
            conns.opened(server_side)
        assert not conns.await_request(idle, 0.05)  # nothing sent: idle until its timeout
        busy_peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert conns.await_request(busy, 1.0)  # a request arrived: now busy
        gone_peer.close()
        conns.closed(gone)  # its handler ended
        handed = conns.freeze(0.05)  # the busy request outlives the budget: not handed over
        assert handed == [idle] and conns.count() == 2
        conns.done(busy)
        assert set(map(id, conns.freeze(0.05))) == {id(idle), id(busy)}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_handed_over_connections_are_adopted_from_the_environment() -> None:
    class Server:
        def __init__(self) -> None:
            self.served: list[object] = []

        def process_request(self, sock: socket.socket, peer: object) -> None:
            self.served.append(sock)

    server = Server()
    assert app.adopt_connections(server, {}) == 0
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        env = {app.HANDOVER_FDS_ENV: f"{accepted.detach()},x"}
        assert app.adopt_connections(server, env) == 1 and len(server.served) == 1
    finally:
        for sock in [client, listener, *server.served]:
            sock.close()  # type: ignore[attr-defined]


def test_catalogue_sizes() -> None:
    assert parse_size("128MiB", "limit", "s") == 128 * MIB
    assert parse_size("256KiB", "leak", "s") == 256 * 1024
    for bad in ("128M", "0MiB", "1.5MiB", "lots"):
        with pytest.raises(StepFailed, match="expected a size"):
            parse_size(bad, "limit", "s")


def _s(
    t: float, rss_mib: float | None, restarts: int = 0, status: str = "running", rc: int = 0
) -> MemorySample:
    return MemorySample(
        t=t,
        status=status,
        oom_killed=False,
        restart_count=rc,
        rss_bytes=None if rss_mib is None else int(rss_mib * MIB),
        guard_bytes=64 * MIB,
        guard_restarts=None if rss_mib is None else restarts,
    )


def test_guard_held_memory() -> None:
    samples = [_s(0, 40), _s(1, 63, 0), _s(2, 45, 1), _s(3, 62, 1), _s(4, 41, 2)]
    v = judge_memory(samples, 64 * MIB, 128 * MIB, oom_kills=0)
    assert v.ok and v.guard_restarts == 2 and v.peak_bytes == 63 * MIB


@pytest.mark.parametrize(
    ("samples", "guard", "kills", "reason"),
    [
        ([_s(0, 40), _s(1, 90)], 64 * MIB, 0, "above the guard"),
        ([_s(0, 40), _s(1, 60)], 64 * MIB, 1, "OOM-killed again"),
        ([_s(0, 40), _s(1, 60)], None, 0, "no memory guard"),
        ([_s(0, 40), _s(1, None, status="exited")], 64 * MIB, 0, "container stopped"),
        ([_s(0, 40), _s(1, 41, rc=1)], 64 * MIB, 0, "1 restart(s) by its policy"),
        ([_s(0, None, status="exited")], 64 * MIB, 0, "never reported its memory"),
        ([_s(0, 40), _s(1, 130)], 256 * MIB, 0, "the memory limit"),
    ],
)
def test_memory_not_held(
    samples: list[MemorySample], guard: int | None, kills: int, reason: str
) -> None:
    v = judge_memory(samples, guard, 128 * MIB, oom_kills=kills)
    assert not v.ok and reason in v.detail


def test_window_starts_when_the_app_runs_again() -> None:
    samples = [_s(0, None, status="exited"), _s(1, None, status="exited"), _s(2, 40), _s(3, 50)]
    assert window_start(samples) == 2
    assert window_start([_s(5, 40)]) == 5  # it never went down
    assert window_start([_s(0, None, status="exited")]) is None
    assert window_start([]) is None


def test_oom_events_after_the_restart_exclude_the_kill_just_before_it() -> None:
    """memory-within-guard counts the `oom` events since the guarded restart: the kill that made
    the restart necessary, often in the same second, is not one of them (the engine gives each
    event's time in nanoseconds; only a whole-second time is taken for the whole second)."""
    from types import SimpleNamespace

    from drillkit.catalog.memory import oom_events

    restart = 1_700_000_100.40
    events = [
        {"time": 1_700_000_100, "timeNano": int(1_700_000_100.10 * 1e9)},  # the first kill
        {"time": 1_700_000_101, "timeNano": int(1_700_000_101.20 * 1e9)},  # after the restart
        {"time": 1_700_000_100},  # no nanoseconds: that second counts
        {"time": 1_700_000_099},
    ]
    client = SimpleNamespace(events=lambda **kw: iter(events))
    stack = SimpleNamespace(containers={"app": SimpleNamespace(id="c1")}, client=client)
    found = oom_events(SimpleNamespace(stack=stack), "app", restart)
    assert found == [pytest.approx(1_700_000_101.20), 1_700_000_100.0]


def test_a_sample_taken_while_the_app_goes_down_keeps_the_sampler_alive() -> None:
    """The container was running at the reload, then lost its published port before the app was
    asked (its restart policy restarting it): a status-only sample, not an exception that ends
    the sampler thread."""
    from types import SimpleNamespace

    from drillkit.catalog import memory
    from drillkit.errors import EnvironmentBroken

    class Stack:
        def __init__(self) -> None:
            app = SimpleNamespace(reload=lambda: None, status="running", attrs={})
            self.containers = {"app": app}
            self.secrets = {"admin_token": "t"}

        @property
        def app_url(self) -> str:
            raise EnvironmentBroken("dk-x-app has no published port 8080 (is it running?)")

    ctx = SimpleNamespace(stack=Stack(), clock=lambda: 12.5)
    sample = memory._sample(ctx, memory.MemoryWatch())
    assert (sample.t, sample.status, sample.rss_bytes) == (12.5, "running", None)
