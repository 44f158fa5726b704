"""Per-run secrets: generated for each run, written to files the containers read, never logged.

Each consumer gets its own directory (bind-mounted read-only), so a rotation is an atomic rename of
one file that the container sees at once. `values()` lists every secret ever issued in the run,
including rotated-out ones, so reports can be scanned for leaks.
"""

from __future__ import annotations

import os
import secrets as _secrets
from pathlib import Path

DB_SECRETS = ("pg_superuser_password", "app_db_password", "replication_password")
APP_SECRETS = (
    "app_db_user",
    "app_db_password",
    "jwt_secret",
    "admin_token",
    "payments_webhook_secret",
)
PAYMENT_SECRETS = ("payments_webhook_secret", "payments_control_token")
"""What the stub payment providers read: the secret they sign webhooks with, and the token their
fault control demands (the app never sees it: only the harness may fail a provider)."""
PROXY_SECRETS = ("proxy_api_token",)
"""What the fault proxy reads: the token its API demands (only the harness holds it)."""
CACHE_SECRETS = ("redis_password",)
"""What the cache (Redis) reads at start: its requirepass. Issued by the cache kind
(stack/services/cache.py) only on a stack that has one; never generated here."""
APP_CACHE_SECRETS = ("app_redis_password",)
"""The app's copy of the Redis password, delivered on its own: a rotation changes the server's
first and the runbook then hands the app the new one."""


class Secrets:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_dir = root / "secrets-db"
        self.app_dir = root / "secrets-app"
        self.payments_dir = root / "secrets-payments"
        self.proxy_dir = root / "secrets-proxy"
        self.cache_dir = root / "secrets-cache"
        self._current: dict[str, str] = {}
        self._issued: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for d in (self.db_dir, self.app_dir, self.payments_dir, self.proxy_dir, self.cache_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o755)
        names = {*DB_SECRETS, *APP_SECRETS, *PAYMENT_SECRETS, *PROXY_SECRETS, "user_password"}
        for name in sorted(names):
            self.set(name, "app" if name == "app_db_user" else self.generate())

    @staticmethod
    def generate() -> str:
        """32 URL-safe characters: no quoting needed in SQL literals or shells."""
        return _secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")

    def __getitem__(self, name: str) -> str:
        return self._current[name]

    def set(self, name: str, value: str) -> None:
        self._current[name] = value
        if name != "app_db_user":
            self._issued.append(value)
        for d, names in (
            (self.db_dir, DB_SECRETS),
            (self.app_dir, APP_SECRETS),
            (self.payments_dir, PAYMENT_SECRETS),
            (self.proxy_dir, PROXY_SECRETS),
            (self.cache_dir, CACHE_SECRETS),
            (self.app_dir, APP_CACHE_SECRETS),
        ):
            if name in names:
                tmp = d / f".{name}.tmp"
                tmp.write_text(value + "\n")
                os.chmod(tmp, 0o444)
                os.replace(tmp, d / name)

    def register(self, name: str, value: str) -> None:
        """Record a secret the harness made elsewhere (e.g. a TLS private key's lines): redacted
        from every record and report and leak-scanned like the issued ones; no file is written."""
        self._current[name] = value
        if value not in self._issued:
            self._issued.append(value)

    def rotate(self, name: str) -> tuple[str, str]:
        """Issue a new value for `name`; returns (old, new)."""
        old = self._current[name]
        new = self.generate()
        self.set(name, new)
        return old, new

    def values(self) -> list[str]:
        return list(self._issued)
