"""A compose file is a stack: drillkit brings up tests/integration/compose_stack itself (images built
from Debian packages, no compose binary), reaches it only through 127.0.0.1, and leaves nothing."""

from __future__ import annotations

import secrets
from pathlib import Path

import requests

from drillkit.stack import engine
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions

STACK = Path(__file__).parent / "compose_stack" / "stack.yaml"


def _owned(run_id: str) -> list[str]:
    c = engine.client()
    flt = {"label": f"{engine.RUN_LABEL}={run_id}"}
    return (
        [f"container {x.name}" for x in c.containers.list(all=True, filters=flt)]
        + [f"network {x.name}" for x in c.networks.list(filters=flt)]
        + [f"volume {x.name}" for x in c.volumes.list(filters=flt)]
    )


def test_compose_stack_up_reach_recreate_down(tmp_path: Path) -> None:
    spec = load_stack(STACK)
    run_id = "cmp" + secrets.token_hex(3)
    stack = Stack(spec, run_id, tmp_path / run_id, StackOptions(ready_timeout_s=90))
    try:
        stack.up()
        assert stack.services == ("db", "web")
        assert stack.databases == ("db",)
        user, password, dbname = stack.db_credentials()
        assert (user, dbname) == ("shop", "shopdb")
        assert password == "s3cret-from-dotenv"  # ${DB_PASSWORD} from the .env next to the file
        assert password in stack.secrets.values()  # reports are scanned for it

        stack.sql("db", *spec.seed)
        with stack.connect("db") as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "shop",
                "shopdb",
            )
        assert stack.current_primary() == "db"
        answer = requests.get(stack.url("web") + "/status", timeout=5)
        assert answer.status_code == 200 and answer.text.strip() == "OK"

        client = engine.client()
        net = client.networks.get(stack.net.id)
        assert net.attrs["Internal"] is True
        for service in stack.services:
            c = stack.container(service)
            assert c.labels[engine.RUN_LABEL] == run_id
            assert c.labels[engine.SERVICE_LABEL] == service
            nets = c.attrs["NetworkSettings"]["Networks"]
            assert service in (nets[stack.net.name]["Aliases"] or [])
            for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
                assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
            assert c.attrs["HostConfig"]["Init"] is True
            assert not c.attrs["HostConfig"]["Privileged"]
        # the file's "8080:8000": container port 8000 published, on 127.0.0.1 (checked above)
        web_ports = stack.container("web").attrs["NetworkSettings"]["Ports"]
        assert set(web_ports) == {"8000/tcp"} and stack.port("web", 8000) > 0

        volume = stack.volume_of("db", "/var/lib/postgresql/data")
        assert volume == f"dk-{run_id}-pgdata"
        assert client.volumes.get(volume).attrs["Labels"][engine.RUN_LABEL] == run_id

        # a one-off container of the db service's image on the run's network reaches db by name
        res = stack.run_oneoff(
            "db",
            ["psql", "-h", "db", "-U", "shop", "-d", "shopdb", "-tAc", "SELECT text FROM notes"],
            env={"PGPASSWORD": password},
            timeout_s=30,
        )
        assert (res.exit_code, res.output.strip()) == (0, "seeded")

        # recreate: same volume (the seeded row survives), env overrides applied
        before = stack.container("db").id
        stack.recreate("db", env={"DRILLKIT_MARK": "recreated"})
        assert stack.container("db").id != before
        assert "DRILLKIT_MARK=recreated" in stack.container("db").attrs["Config"]["Env"]
        assert stack.sql("db", "SELECT text FROM notes") == [("seeded",)]
        stack.recreate("web", env={"DATABASE_PASSWORD": "rotated"})
        assert "DATABASE_PASSWORD=rotated" in stack.container("web").attrs["Config"]["Env"]
    finally:
        stack.down()
    assert _owned(run_id) == []
