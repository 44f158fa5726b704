"""The stack itself, live: replication, backups, the app, exposure, blast radius, teardown."""

import contextlib
import secrets
import subprocess

import docker.errors
import pytest
import requests

from drillkit.core.probes import AppClient
from drillkit.errors import BlastRadiusError
from drillkit.stack import engine
from drillkit.stack.reaping import leftovers
from drillkit.stack.seed import PROBE_USER, seed
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = "it" + secrets.token_hex(3)
    s = Stack(load_stack(), run_id, tmp_path_factory.mktemp("run") / run_id)
    try:
        s.up()
        with s.connect("primary") as conn:
            seed(conn, s.secrets["user_password"])
        yield s
    finally:
        s.down()
        assert leftovers(run_id) == [], "teardown left resources behind"


def test_replica_is_streaming(stack):
    rows = stack.sql(
        "primary", "SELECT application_name, state, sync_state FROM pg_stat_replication"
    )
    assert rows == [("replica", "streaming", "async")]
    assert stack.sql("replica", "SELECT pg_is_in_recovery()")[0][0] is True


def test_data_checksums_and_wal_archiving(stack):
    assert stack.sql("primary", "SHOW data_checksums")[0][0] == "on"
    assert stack.sql("primary", "SHOW wal_level")[0][0] == "replica"
    stack.pgbackrest("check")  # forces a WAL switch and proves it reached the repository


def test_baseline_backup_verifies(stack):
    out = stack.pgbackrest("backup", "--type=full")
    assert "WARN" not in out
    stack.pgbackrest("verify")
    info = stack.pgbackrest("info")
    assert "full backup" in info and "status: ok" in info


def test_login_create_and_read_back_through_the_app(stack):
    client = AppClient(lambda: stack.app_url, PROBE_USER, lambda: stack.secrets["user_password"], 5)
    r = client.create_order("it-order-1", "hello")
    assert r.status_code == 201
    again = client.create_order("it-order-1", "hello")
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]  # idempotent
    back = client.get_order(r.json()["id"])
    assert back.status_code == 200 and back.json()["payload"] == "hello"
    bad = requests.post(
        stack.app_url + "/api/auth/login",
        json={"email": PROBE_USER, "password": "wrong"},
        timeout=5,
    )
    assert bad.status_code == 401


def test_published_ports_are_on_loopback_only(stack):
    for c in stack.containers.values():
        c.reload()
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (c.name, b)


def test_drill_network_is_internal_and_edge_does_not_route_out(stack):
    stack.net.reload()
    stack.edge.reload()
    assert stack.net.attrs["Internal"] is True
    opts = stack.edge.attrs["Options"]
    assert opts["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    assert opts["com.docker.network.bridge.enable_icc"] == "false"
    for net in (stack.net, stack.edge):
        assert net.attrs["Labels"][engine.RUN_LABEL] == stack.run_id


def test_everything_carries_the_run_label(stack):
    flt = {"label": f"{engine.RUN_LABEL}={stack.run_id}"}
    client = engine.client()
    names = {c.name for c in client.containers.list(filters=flt)}
    assert names == {f"dk-{stack.run_id}-{s}" for s in ("primary", "replica", "app")}
    assert len(client.volumes.list(filters=flt)) >= 3


def test_secrets_are_files_and_never_logged(stack):
    env = stack.containers["app"].attrs["Config"]["Env"]
    values = stack.secrets.values()
    assert not any(v in e for v in values for e in env)
    for service in stack.services:
        logs = stack.logs(service, tail=2000)
        assert not [v for v in values if v in logs], f"a secret appears in {service}'s log"
    mode = (stack.secrets.root.stat().st_mode) & 0o777
    assert mode == 0o700


def test_actions_refuse_a_container_this_run_did_not_create(stack):
    client = engine.client()
    image = stack.image_tags["postgres"]
    outsider = client.containers.run(
        image,
        ["sleep", "60"],
        entrypoint=[],
        detach=True,
        network_mode="none",
        labels={engine.LABEL: "true", engine.RUN_LABEL: "someone-else"},
        name=f"dk-outsider-{stack.run_id}",
    )
    try:
        stack.containers["intruder"] = outsider
        with pytest.raises(BlastRadiusError, match="not created by this run"):
            stack.container("intruder")
        from drillkit.catalog.processes import kill_container
        from drillkit.core.context import DrillContext

        ctx = DrillContext(stack=stack, probes=None, result=None, clock=lambda: 0.0)  # type: ignore[arg-type]
        with pytest.raises(BlastRadiusError):
            kill_container(ctx, "intruder")
        outsider.reload()
        assert outsider.status == "running", "an outsider container was touched"
    finally:
        stack.containers.pop("intruder", None)
        with contextlib.suppress(docker.errors.APIError):
            outsider.remove(force=True)


def test_iptables_partition_cuts_and_heals(stack):
    from drillkit.stack.netns import nsenter

    app = stack.container("app")
    ip = stack.containers["primary"].attrs["NetworkSettings"]["Networks"][stack.net.name][
        "IPAddress"
    ]
    rule = [
        "OUTPUT",
        "-d",
        ip,
        "-m",
        "comment",
        "--comment",
        f"drillkit:{stack.run_id}",
        "-j",
        "DROP",
    ]
    assert nsenter(app, "iptables", "-w", "-I", *rule).returncode == 0
    try:
        r = requests.get(stack.app_url + "/api/health", timeout=10)
        assert r.status_code == 503  # the app fails fast instead of hanging
    finally:
        assert nsenter(app, "iptables", "-w", "-D", *rule).returncode == 0
    stack.wait_app(20)
    # the host's own tables are untouched: the rule lived only in the app's namespace
    host = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert f"drillkit:{stack.run_id}" not in host
