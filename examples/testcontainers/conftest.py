"""A team's own test stack, defined with testcontainers objects only, handed to drillkit.

drillkit adopts the containers (`drill_containers`), drills them and reaps them by the run's
labels. The containers run drillkit's locally built images (no registry) and read the run's
secrets from the files the blueprint names.
"""

import contextlib
import dataclasses

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

from drillkit.fixtures import OwnStack, publish_local
from drillkit.paths import REFERENCE_STACK
from drillkit.stack.spec import DatabaseSpec, load_stack


@pytest.fixture
def drill_stack_spec():
    """Our stack: one PostgreSQL (no standby) and the app. The app is drillkit's reference app, so
    its health, seed, journey, write ledger and log patterns are those its stack file declares."""
    reference = load_stack(REFERENCE_STACK)
    return dataclasses.replace(
        reference, name="own-testcontainers", database=DatabaseSpec(replica=False)
    )


@pytest.fixture
def drill_containers(drill_blueprint, drill_stack_spec):
    bp, app_spec = drill_blueprint, drill_stack_spec.app
    # the services talk on an internal network; the edge network only carries the 127.0.0.1 ports
    net = bp.network(internal=True).create()
    edge = bp.network(internal=False).create()
    made = []
    try:
        db = DockerContainer(bp.image("postgres")).with_name(bp.name("primary"))
        db.with_env("DRILLKIT_ROLE", "primary")
        db.with_network(edge).with_kwargs(init=True, shm_size="128m")
        for host, path in bp.mounts("primary").items():
            db.with_volume_mapping(host, path, "ro")
        publish_local(db, 5432)
        bp.labelled(db, "primary")  # after with_kwargs: labelled() keeps the kwargs set
        db.waiting_for(
            LogMessageWaitStrategy("ready to accept connections").with_startup_timeout(60)
        )
        made.append(db.start())
        net.connect(db.get_wrapped_container().id, ["primary"])

        app = DockerContainer(bp.image("app")).with_name(bp.name("app"))
        app.with_envs(**app_spec.env)
        app.with_network(edge).with_kwargs(init=True)
        for host, path in bp.mounts("app").items():
            app.with_volume_mapping(host, path, "ro")
        publish_local(app, app_spec.port)
        bp.labelled(app, "app")
        made.append(app.start())
        net.connect(app.get_wrapped_container().id, ["app"])
        HttpWaitStrategy(app_spec.port, app_spec.health.path).for_status_code(
            200
        ).with_startup_timeout(60).wait_until_ready(app)
        yield OwnStack(network=net, services={"primary": db, "app": app})
    finally:
        # drillkit's teardown reaps them by label; stopping what is left is harmless
        for c in made:
            with contextlib.suppress(Exception):
                c.stop()
        for n in (net, edge):
            with contextlib.suppress(Exception):
                n.remove()
