"""Issue 16 on a live stack (primary, app, fault proxy, payment stubs; no replica): a stopped
step's `docker exec` dies, harness statements time out, a failed password rotation leaves no
password in PostgreSQL's log, and the control surfaces answer only the harness: from inside the
app's container the fault proxy's API and the stubs' fault control refuse, the app never holds
their tokens, and the app refuses a bad Content-Length."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import socket
import threading
import time
from types import SimpleNamespace

import docker.errors
import psycopg
import pytest
import requests

from drillkit import cancel
from drillkit.catalog.credentials import rotate_db_password
from drillkit.stack.reaping import leftovers
from drillkit.stack.secrets import Secrets
from drillkit.stack.services.payments import PROVIDERS, control_headers, set_fault
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions
from drillkit.wait import wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = "it" + secrets.token_hex(3)
    spec = load_stack()
    spec = dataclasses.replace(spec, database=dataclasses.replace(spec.database, replica=False))
    s = Stack(
        spec,
        run_id,
        tmp_path_factory.mktemp("run") / run_id,
        StackOptions(optional=frozenset({"payments", "proxy"})),
    )
    try:
        s.up()
        yield s
    finally:
        s.down()
        assert leftovers(run_id) == [], "teardown left resources behind"


def sleepers(stack: Stack) -> str:
    return stack.exec("primary", "pgrep -f 'slee[p] 3600' || true", timeout_s=10).output.strip()


def test_a_stopped_steps_exec_is_killed(stack):
    scope = cancel.Scope("test")
    outcome: dict = {}

    def step() -> None:
        with cancel.running_in(scope):
            try:
                outcome["result"] = stack.exec("primary", "sleep 3600", timeout_s=3600)
            except BaseException as exc:
                outcome["error"] = exc

    th = threading.Thread(target=step, daemon=True)
    th.start()
    wait_for(lambda: sleepers(stack), what="the step's exec to run", timeout_s=10)
    assert scope.cancel() == []
    th.join(10)
    assert not th.is_alive()
    assert isinstance(outcome.get("error"), cancel.StepStopped)
    wait_for(lambda: not sleepers(stack), what="the exec's process to die", timeout_s=5)


def test_harness_statements_time_out(stack):
    with stack.connect("primary") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
    with stack._kind("database").connect("primary", statement_timeout_ms=200) as conn:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")


def test_a_failed_rotation_leaves_no_password_in_the_database_log(stack, monkeypatch):
    """The rotation's ALTER ROLE fails (it waits on a row lock another session holds, and is
    cancelled): PostgreSQL logs the error, but not the statement with the new password."""
    since = int(time.time()) - 1
    control = Secrets.generate()
    # the control: a failing statement in a session without the rotation's settings is logged
    # with its password (so the log is being read, and the settings are what hides it)
    with stack.connect("primary") as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute(
                psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    psycopg.sql.Identifier("no_such_role"), psycopg.sql.Literal(control)
                )
            )
        conn.execute("CREATE ROLE rotate_victim LOGIN")
    new = Secrets.generate()
    before = stack.secrets["app_db_password"]
    monkeypatch.setattr(stack.secrets, "generate", lambda: new)
    ctx = SimpleNamespace(stack=stack, primary="primary", part=lambda t: t())
    holder = stack.connect("primary")
    holder.autocommit = False
    holder.execute("ALTER ROLE rotate_victim CONNECTION LIMIT 5")  # holds the role's row lock

    def cancel_the_waiting_alter() -> None:
        with stack.connect("primary") as admin:
            wait_for(
                lambda: admin.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER ROLE%'"
                ).fetchall(),
                what="the rotation's ALTER ROLE waiting on the lock",
                timeout_s=20,
            )

    canceller = threading.Thread(target=cancel_the_waiting_alter, daemon=True)
    canceller.start()
    try:
        with pytest.raises(psycopg.errors.QueryCanceled):
            rotate_db_password(ctx, role="rotate_victim")
    finally:
        holder.rollback()
        holder.close()
        canceller.join(25)

    def log() -> str:
        return stack.containers["primary"].logs(since=since).decode("utf-8", "replace")

    wait_for(lambda: control in log(), what="the control statement in the log", timeout_s=5)
    assert "canceling statement due to user request" in log()  # the rotation's failure logged
    assert new not in log()
    assert stack.secrets["app_db_password"] == before  # the secret file was not rotated


PROBE_FROM_APP = """
import sys, urllib.request, urllib.error
url, method = sys.argv[1], sys.argv[2]
data = b'{"pattern": ["error"]}' if method == "PUT" else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("http://proxy:8474/proxies", "GET"),
        ("http://proxy:8474/reset", "POST"),
        (f"http://{PROVIDERS[0]}:8090/_drill/fault", "PUT"),
        (f"http://{PROVIDERS[1]}:8090/_drill/fault", "GET"),
    ],
)
def test_the_app_cannot_drive_the_control_surfaces(stack, url, method):
    res = stack.exec("app", ["python3", "-c", PROBE_FROM_APP, url, method], user="", timeout_s=20)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "401"  # reachable on the network, refused without the token


def test_the_app_holds_neither_token_and_the_harness_drives_both(stack):
    app_mounts = {m["Source"] for m in stack.containers["app"].attrs["Mounts"]}
    assert str(stack.secrets.proxy_dir) not in app_mounts
    assert str(stack.secrets.payments_dir) not in app_mounts
    assert not (stack.secrets.app_dir / "payments_control_token").exists()
    assert not (stack.secrets.app_dir / "proxy_api_token").exists()
    assert "postgres" in stack.toxiproxy().proxies()
    token = stack.secrets["payments_control_token"]
    base = stack.provider_url(PROVIDERS[0])
    assert set_fault(base, ["error"], False, token)["pattern"] == ["error"]
    r = requests.delete(base + "/_drill/fault", headers=control_headers(token), timeout=5)
    assert r.status_code == 200 and r.json()["pattern"] == []


@pytest.mark.parametrize("length", ["-1", "abc", "+3"])
def test_the_app_refuses_a_bad_content_length(stack, length):
    port = int(stack.app_url.rsplit(":", 1)[1])
    head = f"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


# ----- cleanup (class 7), on the real engine: only runs this test labels are judged ----------


def labelled_container(run: str, owner: dict[str, str]):
    from drillkit.stack import engine

    labels = {engine.LABEL: "true", engine.RUN_LABEL: run, **owner}
    return engine.client().containers.create("drillkit/base:bookworm", ["true"], labels=labels)


def test_clean_reaps_a_dead_owners_run_and_leaves_a_live_one(tmp_path):
    import subprocess

    from drillkit.stack import engine, reaping

    dead = subprocess.Popen(["true"])
    dead.wait()
    live_run, dead_run, bad_run = (f"it{secrets.token_hex(3)}" for _ in range(3))
    bad_run = "../../" + bad_run
    made = [
        labelled_container(live_run, engine.owner_labels()),
        labelled_container(dead_run, {**engine.owner_labels(), engine.OWNER_LABEL: str(dead.pid)}),
        labelled_container(bad_run, {**engine.owner_labels(), engine.OWNER_LABEL: str(dead.pid)}),
    ]
    (tmp_path / dead_run).mkdir()
    try:
        reaped = reaping.reap_orphans(tmp_path, only={live_run, dead_run, bad_run})
        assert reaped == [dead_run]
        assert leftovers(dead_run) == [] and not (tmp_path / dead_run).exists()
        assert leftovers(live_run) and leftovers(bad_run)
        assert bad_run[:80] in reaping.runs_by_owner()[1]
        assert live_run in reaping.live_runs()
    finally:
        for c in made:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


def test_a_young_or_used_image_is_not_prunable(tmp_path):
    from drillkit.stack import engine, images

    (tmp_path / "Dockerfile").write_text("FROM drillkit/base:bookworm\n")
    tag = f"drillkit/trust-test:{secrets.token_hex(4)}"
    client = engine.client()
    client.images.build(
        path=str(tmp_path), tag=tag, labels={engine.LABEL + ".image": "true"}, rm=True
    )
    try:
        attrs = client.images.get(tag).attrs
        assert 0 <= images.image_age_s(attrs) < 3600  # the real Created format is read
        assert not images.prunable(attrs, tag, "drillkit/trust-test:current", set())  # young
        assert images.prunable(attrs, tag, "drillkit/trust-test:current", set(), keep_s=0)
        assert not images.prunable(attrs, tag, "x", {attrs["Id"]}, keep_s=0)  # in use
        assert not images.prunable(attrs, tag, tag, set(), keep_s=0)  # this checkout's
    finally:
        client.images.remove(tag, force=True)
