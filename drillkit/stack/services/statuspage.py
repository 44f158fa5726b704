"""The status page kind (`stack: {statuspage: true}`): a stub status page (images/statuspage, a
Python standard-library server) where the runbook posts its incident updates. Its API key is a run
secret, written into the run dir and mounted read-only; the harness reaches it through its port
published on 127.0.0.1."""

from __future__ import annotations

import os
from typing import Any

import requests

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

STATUSPAGE = "statuspage"
STATUSPAGE_IMAGE = "statuspage"
STATUSPAGE_PORT = 8070
API_KEY = "statuspage_api_key"
INCIDENTS_PATH = "/api/v1/incidents"
STATUS_PATH = "/api/v2/status.json"


@service_kind
class StatusPage(ServiceKind):
    name = "statuspage"
    order = 50
    start_rank = 20
    ready_rank = 30

    def services(self) -> tuple[str, ...]:
        return (STATUSPAGE,)

    def images(self) -> dict[str, str]:
        return {"statuspage": STATUSPAGE_IMAGE}

    @property
    def secrets_dir(self) -> Any:
        return self.stack.run_dir / "secrets-statuspage"

    def configure(self) -> None:
        s = self.stack
        key = s.secrets.generate()
        s.secrets.set(API_KEY, key)
        self.secrets_dir.mkdir(exist_ok=True)
        os.chmod(self.secrets_dir, 0o755)
        path = self.secrets_dir / API_KEY
        path.write_text(key + "\n")
        os.chmod(path, 0o444)

    def start(self) -> None:
        s = self.stack
        s.create(
            STATUSPAGE,
            s.image_tags["statuspage"],
            env={
                "PORT": str(STATUSPAGE_PORT),
                "API_KEY_FILE": f"/run/drillkit/secrets/{API_KEY}",
            },
            mounts={str(self.secrets_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"}},
            ports={f"{STATUSPAGE_PORT}/tcp": ("127.0.0.1", None)},
        )

    def wait_ready(self) -> None:
        s = self.stack

        def serving() -> bool:
            s.require_running(STATUSPAGE)
            return requests.get(self.url + STATUS_PATH, timeout=1.0).status_code == 200

        wait_for(
            serving,
            what="the status page to answer",
            timeout_s=s.options.ready_timeout_s,
            context=s.log_context(STATUSPAGE),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port(STATUSPAGE, STATUSPAGE_PORT)}"
