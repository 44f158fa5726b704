"""The app kind: the application under drill (the reference app, images/app, by default).

It reads its secrets and its config directory (mounted read-only from the run dir) and logs to a
volume of its own. The config directory holds `db_hosts` (the database hosts it tries, in order:
the primary, or the fault proxy in front of it, then the replica), `payment_provider` (the
provider it charges at), `maintenance` (present: the site is in maintenance), `memory_leak` and
`max_memory_restart` (the memory drill's leak and the app's memory guard); it rereads them on
SIGHUP.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import requests

from drillkit.stack.kinds import ServiceKind, service_kind
from drillkit.wait import wait_for

if TYPE_CHECKING:
    from drillkit.stack.stack import Stack

LOG_DIR = "/var/log/app"
"""Where the app logs its audit file (a volume of its own, kept across deploys)."""


def write_atomic(path: Path, text: str) -> None:
    """Replace the file at once (the app never reads half of it), readable by the container."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


@service_kind
class App(ServiceKind):
    name = "app"
    stack_file = "app"
    order = 10
    start_rank = 30
    ready_rank = 20

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.config_dir = stack.run_dir / "app-config"
        self.replaced = 0
        """Containers replaced by `deploy` so far (their names' counter)."""

    def services(self) -> tuple[str, ...]:
        return ("app",)

    def images(self) -> dict[str, str]:
        return {"app": self.stack.spec.app.image}

    def configure(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        first = "proxy" if "proxy" in self.stack.services else "primary"
        self.set_db_hosts([first, "replica"] if "replica" in self.stack.services else [first])

    def start(self) -> None:
        self._create(self.stack.image_tags["app"], self.stack.volume("app-log", "app").name)

    def _create(self, image: str, log_volume: str) -> None:
        s, app = self.stack, self.stack.spec.app
        s.create(
            "app",
            image,
            env=dict(app.env),
            mounts={
                str(s.secrets.app_dir): {"bind": app.secrets_dir, "mode": "ro"},
                str(self.config_dir): {"bind": app.config_dir, "mode": "ro"},
                log_volume: {"bind": LOG_DIR, "mode": "rw"},
            },
            ports={f"{app.port}/tcp": ("127.0.0.1", None)},
        )

    def deploy(self, image: str) -> None:
        """Replace the app's container by one from `image` (a new release, or the previous one
        on a rollback), as a deploy does: the running one is stopped (SIGTERM) and kept, renamed
        `app-was-<n>` (its log stays readable; teardown reaps it by the run's label); the new one
        gets the app's name, network alias, environment, secrets, config and log volume (the
        audit file carries on), and is waited for like at start-up. While none answers, the
        stopped one stands in (no published port): probes fail, they do not break."""
        s = self.stack
        old = s.container("app")
        log_volume = s.volume_of("app", LOG_DIR)
        old.stop(timeout=10)
        self.replaced += 1
        old.rename(s.name(f"app-was-{self.replaced}"))
        s.image_tags["app"] = image
        self._create(image, log_volume)
        self.wait()

    def wait_ready(self) -> None:
        self.wait()

    # ----- access and readiness -----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.port('app', self.stack.spec.app.port)}"

    def health(self, timeout_s: float = 2.0) -> requests.Response:
        return requests.get(self.url + self.stack.spec.app.health.path, timeout=timeout_s)

    def wait(self, timeout_s: float | None = None) -> None:
        status = self.stack.spec.app.health.status
        wait_for(  # answering: the declared status (the availability probe judges the body too)
            lambda: self.health(1.0).status_code == status,
            what=f"the app's health endpoint to answer {status}",
            timeout_s=timeout_s or self.stack.options.ready_timeout_s,
            context=self.stack.log_context("app"),
        )

    # ----- configuration ------------------------------------------------------------------------
    def set_db_hosts(self, hosts: list[str]) -> None:
        write_atomic(self.config_dir / "db_hosts", ",".join(hosts) + "\n")

    def set_payment_provider(self, provider: str) -> None:
        """The provider the app charges at (takes effect on the app's next reload)."""
        write_atomic(self.config_dir / "payment_provider", provider + "\n")

    def set_maintenance(self, on: bool) -> None:
        self._set_flag("maintenance", "on" if on else None)

    def set_memory_leak(self, size: str | None) -> None:
        """The reference app's leak (bytes retained per request, e.g. '256KiB'; None: off),
        read at start and on reload: it comes back after every restart."""
        self._set_flag("memory_leak", size)

    def set_max_memory_restart(self, size: str | None) -> None:
        """The reference app's memory guard (pm2's --max-memory-restart, e.g. '64MiB'; None:
        none), read at start and on reload."""
        self._set_flag("max_memory_restart", size)

    def _set_flag(self, name: str, value: str | None) -> None:
        """A config file holding `value` (a line), or none: what the app reads as off."""
        if value is None:
            (self.config_dir / name).unlink(missing_ok=True)
        else:
            write_atomic(self.config_dir / name, value + "\n")

    def reload(self) -> None:
        self.stack.container("app").kill(signal="SIGHUP")
