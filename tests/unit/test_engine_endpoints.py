"""--drill-engines without containers: parsing endpoints, a worker's engine, what a remote engine
refuses, the record's engine fields (no credential), the list `drillkit clean` reaps."""

from pathlib import Path

import pytest

from drillkit import catalog
from drillkit.core.scenario import load_scenario
from drillkit.errors import EnvironmentBroken, ValidationError
from drillkit.plugin import host_actions
from drillkit.stack import engine, engines

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]


def tls_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tls"
    d.mkdir()
    for name in engines.TLS_FILES:
        (d / name).write_text("-----BEGIN-----\n")
    return d


def test_parse_unix_ssh_and_tcp_with_tls(tmp_path):
    d = tls_dir(tmp_path)
    eps = engines.parse(
        f"unix:///var/run/docker.sock, ssh://drill@build-2\ntcp://build-3:2376 tls={d}"
    )
    assert [e.scheme for e in eps] == ["unix", "ssh", "tcp"]
    assert [e.local for e in eps] == [True, False, False]
    assert eps[1].host == "build-2" and eps[2].host == "build-3"
    assert eps[2].tls_dir == d
    assert len({e.id for e in eps}) == 3
    assert engines.parse(["unix:///a.sock", "unix:///b.sock"])[1].url == "unix:///b.sock"
    assert engines.parse(None) == [] and engines.parse([]) == []


def test_tcp_certificates_from_docker_cert_path_per_host(tmp_path, monkeypatch):
    base = tmp_path / "certs"
    (base / "build-3").mkdir(parents=True)
    for name in engines.TLS_FILES:
        (base / "build-3" / name).write_text("x")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(base))
    (ep,) = engines.parse("tcp://build-3:2376")
    assert ep.tls_dir == base / "build-3"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("tcp://build-3:2375", "only over TLS"),
        ("tcp://build-3", "needs its port"),
        ("tcp://u:pw@build-3:2376", "TLS certificate"),
        ("ssh://drill:hunter2@build-2", "no password"),
        ("http://build-2:80", "unknown scheme"),
        ("unix://relative.sock", "unix:///ABSOLUTE/PATH"),
        ("unix:///a.sock tls=/x", "tcp endpoints only"),
        ("ssh://drill@build-2 verify=no", "unknown setting"),
        ("ssh://drill@bad_host!", "no valid host name"),
        ("ssh://drill@build-2/path", "nothing more"),
        ("unix:///a.sock,unix:///a.sock", "listed twice"),
    ],
)
def test_bad_endpoints_are_refused_with_the_reason(entry, says, monkeypatch):
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    with pytest.raises(ValidationError) as exc:
        engines.parse(entry)
    text = "\n".join(exc.value.problems)
    assert says in text
    assert "hunter2" not in text and ":pw@" not in text


def test_every_problem_at_once(monkeypatch):
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    with pytest.raises(ValidationError) as exc:
        engines.parse("tcp://a:2375, http://b, unix:///ok.sock")
    assert len(exc.value.problems) == 2


def test_redact_removes_passwords_and_queries():
    assert engines.redact("tcp://u:secret@h:2376") == "tcp://u:***@h:2376"
    assert engines.redact("ssh://drill@h") == "ssh://drill@h"
    assert engines.redact("unix:///tmp/x.sock") == "unix:///tmp/x.sock"
    assert engines.redact("tcp://h:2376?token=abc") == "tcp://h:2376"
    assert engines.engine_id("tcp://u:a@h:1") == engines.engine_id("tcp://u:b@h:1")


def test_worker_i_takes_engine_i_mod_n():
    eps = engines.parse("unix:///e0.sock,unix:///e1.sock,unix:///e2.sock")
    picked = [engines.for_worker(eps, f"gw{i}") for i in range(5)]
    assert [p.url for p in picked if p] == [
        "unix:///e0.sock",
        "unix:///e1.sock",
        "unix:///e2.sock",
        "unix:///e0.sock",
        "unix:///e1.sock",
    ]
    assert engines.for_worker([], "gw1") is None
    assert engines.for_worker(eps[:1], "") == eps[0]  # one engine: no xdist needed


def test_several_engines_without_xdist_are_refused(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    eps = engines.parse("unix:///e0.sock,unix:///e1.sock")
    with pytest.raises(ValidationError, match="-n 2"):
        engines.for_worker(eps)
    with pytest.raises(ValidationError, match="gw<number>"):
        engines.for_worker(eps, "main")


def test_remote_engines_are_refused_before_a_drill_naming_the_reason():
    local, remote = engines.parse("unix:///e0.sock,ssh://drill@build-2")
    assert engines.refusal(local, ["partition"]) is None
    assert engines.HOST_ACCESS in local.provides() and not remote.provides()
    ports = engines.refusal(remote, [])
    assert ports is not None and "127.0.0.1" in ports and "ssh://drill@build-2" in ports
    host = engines.refusal(remote, ["partition", "stack: data_fs_mib"])
    assert host is not None and "partition, stack: data_fs_mib" in host and "host-access" in host


def test_the_record_names_the_engine_and_worker_without_credentials(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    (ep,) = engines.parse("unix:///tmp/dk-eng-2/docker.sock")
    rec = engines.record(ep)
    assert rec["docker_endpoint"] == "unix:///tmp/dk-eng-2/docker.sock"
    assert rec["docker_engine_local"] == "true" and rec["xdist_worker"] == "gw2"
    tcp = engines.Endpoint("tcp://u:secret@h:2376", "tcp", "h")
    assert "secret" not in str(engines.record(tcp))


def test_merged_environment_lists_every_engine():
    envs = [
        {"docker_endpoint": "unix:///a", "docker_engine_id": "1", "xdist_worker": "gw0", "x": "1"},
        {"docker_endpoint": "unix:///b", "docker_engine_id": "2", "xdist_worker": "gw1", "x": "1"},
        {"docker_endpoint": "unix:///a", "docker_engine_id": "1", "xdist_worker": "gw0", "x": "1"},
    ]
    env = engines.merged_environment(envs)
    assert env["docker_endpoint"] == "unix:///a, unix:///b"
    assert env["docker_engine_id"] == "1, 2" and "xdist_worker" not in env and env["x"] == "1"
    assert engines.merged_environment(envs[:1]) == envs[0]
    assert engines.merged_environment([]) == {}


def test_clean_reaps_the_default_the_listed_and_the_remembered_engines(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DRILLKIT_ENGINES", "unix:///env.sock")
    engines.remember(tmp_path, engines.parse("unix:///seen.sock,ssh://drill@build-2"))
    engines.remember(tmp_path, engines.parse("unix:///seen.sock"))  # once only
    assert len(engines.remembered(tmp_path)) == 2
    urls = [e.url for e in engines.to_clean(tmp_path, "unix:///given.sock")]
    assert urls == [
        engines.DEFAULT_SOCKET,
        "unix:///env.sock",
        "unix:///given.sock",
        "unix:///seen.sock",
        "ssh://drill@build-2",
    ]


def test_the_process_engine_and_a_block_on_another(tmp_path):
    a, b = engines.parse(f"unix://{tmp_path}/a.sock,unix://{tmp_path}/b.sock")
    engine.use(a)
    try:
        assert engine.current() == a
        with pytest.raises(EnvironmentBroken, match=f"{tmp_path}/b.sock does not answer"):
            with engine.on(b):
                pass
        assert engine.current() == a
        with pytest.raises(EnvironmentBroken, match=r"a\.sock does not answer"):
            engine.check_guardrails()
    finally:
        engine.use(None)
    assert engine.current() == engines.default_endpoint()


def test_a_remote_engine_is_refused_before_the_stack_starts():
    (remote,) = engines.parse("ssh://drill@build-2")
    engine.use(remote)
    try:
        with pytest.raises(EnvironmentBroken, match="not on this host"):
            engine.check_reachable()
    finally:
        engine.use(None)


def test_host_actions_of_the_built_in_scenarios():
    catalog.load((), root=ROOT)

    def acts(sid: str) -> list[str]:
        return host_actions(load_scenario(ROOT / "scenarios" / f"{sid}.yaml"))

    assert "partition" in acts("partition-app-db")
    assert acts("disk-full") == ["stack: data_fs_mib"]
    assert acts("db-kill-restart") == []


def test_drill_engines_option_errors_are_usage_errors(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this tree's drillkit in the subprocess
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--drill-engines=tcp://h:2375")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*only over TLS*"])
    two = pytester.runpytest_subprocess("--drill-engines=unix:///a.sock,unix:///b.sock")
    assert two.ret == pytest.ExitCode.USAGE_ERROR
    two.stderr.fnmatch_lines(["*not a pytest-xdist worker: run with -n 2*"])


def test_drillkit_engines_ini_lines(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\ndrillkit_engines =\n    unix:///one.sock\n")
    pytester.makeconftest(
        "from drillkit.stack import engine\n"
        "def pytest_sessionstart(session):\n"
        "    print('ENGINE', engine.current().url)\n"
    )
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-s")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*ENGINE unix:///one.sock*"])
