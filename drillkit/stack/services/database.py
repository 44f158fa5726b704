"""The database kind: the PostgreSQL primary and its streaming standby ('replica').

Both run the postgres image (images/postgres), whose entrypoint takes its role from DRILLKIT_ROLE.
The primary starts from the template data directory baked into the image; a new stack's standby
copies the same template (REPLICA_SEED=template: no base backup) and streams from the primary once
it answers; a rebuilt standby is cloned from the running primary (REPLICA_SEED=basebackup). Both
share the pgBackRest repository volume and read the database secrets from the run dir.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
from typing import TYPE_CHECKING, Any, Literal

import docker.errors
import psycopg

from drillkit.errors import EnvironmentBroken
from drillkit.stack import hostfs
from drillkit.stack.kinds import ServiceKind, last_rows, service_kind
from drillkit.wait import wait_for

if TYPE_CHECKING:
    from drillkit.stack.stack import Stack

PG_PORT = 5432
MEMFS_MIB = 3072
"""The data directories' tmpfs bound (MiB): ample for the small seed scale, WAL up to
max_wal_size and a restore's second copy; only what is written takes memory."""
STATEMENT_TIMEOUT_MS = 60_000
"""The harness's statement timeout on every connection it opens (a step may pass a longer one)."""


@service_kind
class Database(ServiceKind):
    name = "database"
    stack_file = "database"
    options = ("synchronous", "data_fs_mib", "wal_fs_mib", "data_in_memory")
    order = 0
    start_rank = 0
    ready_rank = 0

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        opts, spec = stack.options, stack.spec.database
        self.synchronous = opts.synchronous if opts.synchronous is not None else spec.synchronous
        self.loopfs: hostfs.LoopFs | None = None
        """The primary's data filesystem (stack option data_fs)."""
        self.walfs: hostfs.LoopFs | None = None
        """The primary's pg_wal filesystem (stack option wal_fs)."""
        self.memfs: hostfs.MemFs | None = None
        """The tmpfs holding the data directories (stack option data_in_memory), one folder each."""
        self.tools = 0
        """One-off tool containers run so far (their names' counter)."""

    def services(self) -> tuple[str, ...]:
        return ("primary", "replica") if self.stack.spec.database.replica else ("primary",)

    def images(self) -> dict[str, str]:
        return {"postgres": self.stack.spec.database.image}

    def configure(self) -> None:
        run_dir, opts = self.stack.run_dir, self.stack.options
        if opts.data_fs_mib:
            self.loopfs = hostfs.LoopFs.create(
                run_dir / "primary-data.img", run_dir / "primary-data", opts.data_fs_mib
            )
        if opts.wal_fs_mib:
            self.walfs = hostfs.LoopFs.create(
                run_dir / "primary-wal.img", run_dir / "primary-wal", opts.wal_fs_mib
            )
        if opts.data_in_memory:
            try:
                self.memfs = hostfs.MemFs.create(run_dir / "data-tmpfs", MEMFS_MIB)
            except EnvironmentBroken as exc:
                self.stack.progress(f"data directories on volumes (no tmpfs: {exc})")

    def start(self) -> None:
        self.start_primary()
        if "replica" in self.services():
            self.start_replica(seed="template")

    def wait_ready(self) -> None:
        self.wait_pg("primary")
        if "replica" in self.services():
            self.wait_streaming()
            if self.synchronous:
                self.sql(
                    "primary",
                    "ALTER SYSTEM SET synchronous_standby_names = 'replica'",
                    "SELECT pg_reload_conf()",
                )

    def teardown(self) -> None:
        for fs in (self.loopfs, self.walfs, self.memfs):
            if fs is not None:
                fs.destroy()
        self.loopfs = self.walfs = self.memfs = None

    # ----- containers ---------------------------------------------------------------------------
    def mounts(self, service: str) -> dict[str, dict[str, str]]:
        """The data directory (the data filesystem's for the primary, a folder of the tmpfs, or a
        volume), pg_wal's own filesystem (primary, wal_fs), the pgBackRest repository and the
        secrets."""
        s = self.stack
        if service == "primary" and self.loopfs is not None:
            # a subdirectory: the filesystem's root holds lost+found, which pg_basebackup cannot read
            pgdata = self.loopfs.mountpoint / "pgdata"
            pgdata.mkdir(exist_ok=True)
            data = {str(pgdata): {"bind": "/pgdata", "mode": "rw"}}
        elif self.memfs is not None:
            pgdata = self.memfs.mountpoint / service
            pgdata.mkdir(exist_ok=True)
            data = {str(pgdata): {"bind": "/pgdata", "mode": "rw"}}
        else:
            vol = s.volume(f"{service}-data", service)
            data = {vol.name: {"bind": "/pgdata", "mode": "rw"}}
        if service == "primary" and self.walfs is not None:
            # pg_wal on its own filesystem, bound over the data directory's pg_wal (the
            # entrypoint hands the mount point to postgres and the template's copy fills it)
            wal = self.walfs.mountpoint / "wal"
            wal.mkdir(exist_ok=True)
            data[str(wal)] = {"bind": "/pgdata/pg_wal", "mode": "rw"}
        repo = s.volume("pgbackrest", "pgbackrest")
        return {
            **data,
            repo.name: {"bind": "/var/lib/pgbackrest", "mode": "rw"},
            str(s.secrets.db_dir): {"bind": "/run/drillkit/secrets", "mode": "ro"},
        }

    def start_primary(self) -> None:
        self.stack.create(
            "primary",
            self.stack.image_tags["postgres"],
            env={"DRILLKIT_ROLE": "primary"},
            mounts=self.mounts("primary"),
            ports={f"{PG_PORT}/tcp": ("127.0.0.1", None)},
        )

    def start_replica(self, seed: Literal["template", "basebackup"] = "basebackup") -> None:
        """`seed` "template": a new stack's standby, copied from the template the primary starts
        from (no base backup); "basebackup": cloned from the running primary (any later clone)."""
        self.stack.create(
            "replica",
            self.stack.image_tags["postgres"],
            env={
                "DRILLKIT_ROLE": "replica",
                "PRIMARY_HOST": "primary",
                "REPLICA_NAME": "replica",
                "REPLICA_SEED": seed,
            },
            mounts=self.mounts("replica"),
            ports={f"{PG_PORT}/tcp": ("127.0.0.1", None)},
        )

    def rebuild_replica(self, service: str = "replica") -> None:
        """Throw the standby away (container and data directory) and clone it again from the
        primary."""
        s = self.stack
        old = s.container(service)
        old.remove(force=True)
        if self.memfs is not None:
            shutil.rmtree(self.memfs.mountpoint / service)
        with contextlib.suppress(docker.errors.NotFound):
            s.client.volumes.get(s.name(f"{service}-data")).remove(force=True)
        del s.containers[service]
        self.start_replica()
        self.wait_streaming()

    def run_tool(self, service: str, argv: list[str], timeout_s: float = 300.0) -> str:
        """Run a one-off container of the postgres image with `service`'s volumes (its container may
        be stopped): restores, offline edits of the data directory. No network."""
        s = self.stack
        source = s.container(service)
        self.tools += 1
        tool = s.client.containers.create(
            s.image_tags["postgres"],
            command=["timeout", "-s", "KILL", f"{timeout_s:g}", *argv],
            name=s.name(f"tool-{self.tools}"),
            labels=s.labels("tool"),
            environment={"DRILLKIT_ROLE": "tool"},
            volumes_from=[source.id],
            network_mode="none",
            init=True,
        )
        try:
            tool.start()
            code = tool.wait(timeout=timeout_s + 10)["StatusCode"]
            out = tool.logs().decode("utf-8", "replace")
        finally:
            tool.remove(force=True)
        if code != 0:
            raise EnvironmentBroken(
                f"`{shlex.join(argv)}` on {service}'s volumes exited {code}:\n{out[-1500:]}"
            )
        return out

    # ----- access and readiness -----------------------------------------------------------------
    def connect(
        self,
        service: str,
        dbname: str = "app",
        user: str = "postgres",
        password: str | None = None,
        timeout_s: int = 2,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> psycopg.Connection[Any]:
        """A connection through the service's port on 127.0.0.1 (autocommit); the password is the
        superuser's for `postgres`, the app's for any other user, unless given. Bounded: connect
        within `timeout_s`, every statement within `statement_timeout_ms` (server-side)."""
        secrets = self.stack.secrets
        pw = (
            password
            if password is not None
            else (
                secrets["pg_superuser_password"]
                if user == "postgres"
                else secrets["app_db_password"]
            )
        )
        return psycopg.connect(
            host="127.0.0.1",
            port=self.stack.port(service, PG_PORT),
            dbname=dbname,
            user=user,
            password=pw,
            connect_timeout=timeout_s,
            options=f"-c statement_timeout={int(statement_timeout_ms)}",
            autocommit=True,
        )

    def sql(self, service: str, *statements: str, dbname: str = "app") -> list[tuple[Any, ...]]:
        """Run statements in autocommit as the superuser; returns the last one's rows (or [])."""
        with self.connect(service, dbname=dbname) as conn:
            return last_rows(conn, statements)

    def wait_pg(
        self, service: str, timeout_s: float | None = None, writable: bool | None = None
    ) -> None:
        """Until the service accepts connections (and, with `writable`, is or is not in
        recovery)."""
        s = self.stack

        def ready() -> bool:
            s.require_running(service)
            with self.connect(service, timeout_s=1) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return writable is None or (row is not None and row[0] == (not writable))

        wait_for(
            ready,
            what=f"PostgreSQL in {service} to accept connections",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            context=s.log_context(service),
        )

    def wait_streaming(
        self, timeout_s: float | None = None, primary: str = "primary", replica: str = "replica"
    ) -> None:
        s = self.stack

        def streaming() -> bool:
            s.require_running(replica)
            rows = self.sql(
                primary,
                f"SELECT state FROM pg_stat_replication WHERE application_name = '{replica}'",
            )
            return bool(rows) and rows[0][0] == "streaming"

        wait_for(
            streaming,
            what=f"{replica} to stream from {primary}",
            timeout_s=timeout_s or s.options.ready_timeout_s,
            context=s.log_context(replica),
        )
