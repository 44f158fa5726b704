"""Seed data: users and orders made by Faker, deterministic by seed, sized by scale.

Passwords use the reference app's hash format `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`.
Every seeded user shares the run's `user_password` (one hash, computed once: seeding 100k users must
not cost 100k key derivations); the probe and writer users are the first two rows.
"""

from __future__ import annotations

import hashlib
import secrets as _secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from faker import Faker

PROBE_USER = "probe@drill.example"
WRITER_USER = "writer@drill.example"
SCALES: dict[str, tuple[int, int]] = {
    "small": (200, 2_000),
    "medium": (5_000, 100_000),
    "large": (100_000, 5_600_000),
}
"""scale -> (users, orders). 'large' is ~1 GiB on disk with indexes (3 M orders measured 0.55 GiB)."""
SEED_STATEMENT_TIMEOUT_S = {"small": 60, "medium": 300, "large": 1800}
"""The seed's COPY of a large scale outlasts the harness's usual statement timeout: its own bound."""


def hash_password(password: str, iterations: int = 1000, salt: bytes | None = None) -> str:
    salt = salt or _secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, dklen=32)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


@dataclass(frozen=True)
class SeedReport:
    users: int
    orders: int


def seed(
    conn: psycopg.Connection[Any], password: str, scale: str = "small", seed: int = 1
) -> SeedReport:
    """Load users and orders with COPY. `conn` is a superuser connection to the app database."""
    if scale not in SCALES:
        raise ValueError(f"unknown seed scale {scale!r}: choose one of {', '.join(SCALES)}")
    n_users, n_orders = SCALES[scale]
    fake = Faker()
    Faker.seed(seed)
    pw_hash = hash_password(password)
    with conn.cursor() as cur:
        cur.execute(f"SET statement_timeout = '{SEED_STATEMENT_TIMEOUT_S[scale]}s'")
        with cur.copy("COPY users (id, email, name, password_hash) FROM STDIN") as cp:
            cp.write_row((1, PROBE_USER, "Drill Probe", pw_hash))
            cp.write_row((2, WRITER_USER, "Drill Writer", pw_hash))
            for uid in range(3, n_users + 1):
                cp.write_row((uid, f"user{uid}@{fake.domain_name()}", fake.name(), pw_hash))
        items = [fake.word() for _ in range(500)]
        with cur.copy(
            "COPY orders (user_id, idempotency_key, item, amount_cents, payload) FROM STDIN"
        ) as cp:
            for i in range(n_orders):
                uid = 3 + (i * 7919) % max(1, n_users - 2)
                cp.write_row(
                    (uid, f"seed-{seed}-{i}", items[i % 500], (i * 37) % 100_000, f"seed order {i}")
                )
        cur.execute("SELECT setval('users_id_seq', (SELECT max(id) FROM users))")
        cur.execute("ANALYZE users")
        cur.execute("ANALYZE orders")
    return SeedReport(n_users, n_orders)
