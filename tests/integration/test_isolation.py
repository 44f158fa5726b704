"""Two drills side by side (as under pytest-xdist -n 2) share no name, port, label or volume, and
a drill's teardown leaves the other's stack untouched."""

import secrets
import threading

from drillkit.stack import engine
from drillkit.stack.reaping import leftovers
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack


def test_two_stacks_side_by_side_do_not_collide(tmp_path):
    stacks = [
        Stack(load_stack(), "iso" + secrets.token_hex(3), tmp_path / str(i)) for i in range(2)
    ]
    errors = []

    def up(s):
        try:
            s.up()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=up, args=(s,)) for s in stacks]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        a, b = stacks
        client = engine.client()
        names = [
            {
                c.name
                for c in client.containers.list(filters={"label": f"{engine.RUN_LABEL}={s.run_id}"})
            }
            for s in stacks
        ]
        vols = [
            {
                v.name
                for v in client.volumes.list(filters={"label": f"{engine.RUN_LABEL}={s.run_id}"})
            }
            for s in stacks
        ]
        assert names[0] and names[1] and not names[0] & names[1]
        assert vols[0] and vols[1] and not vols[0] & vols[1]
        ports = [
            {s.port(svc, p) for svc, p in (("primary", 5432), ("replica", 5432), ("app", 8080))}
            for s in stacks
        ]
        assert not ports[0] & ports[1]
        assert a.net.id != b.net.id
        a.down()
        assert leftovers(a.run_id) == []
        b.wait_app(10)  # the other drill's stack is untouched
        assert b.sql("primary", "SELECT 1") == [(1,)]
    finally:
        for s in stacks:
            s.down()
    assert leftovers(stacks[1].run_id) == []
