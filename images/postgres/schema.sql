-- Schema of the reference app's database, baked into the postgres image's template cluster.
-- Roles get their passwords per run (entrypoint, from secret files); none is set here.
CREATE ROLE app LOGIN;
CREATE ROLE replicator LOGIN REPLICATION;
CREATE DATABASE app OWNER app;
\connect app
SET ROLE app;
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    idempotency_key text NOT NULL UNIQUE,
    item            text NOT NULL,
    amount_cents    integer NOT NULL CHECK (amount_cents >= 0),
    payload         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_created_at ON orders (created_at);
-- One payment per order. 'pending': queued, its outcome not known (the provider failed, timed out
-- or has not answered); 'captured': charged, with the provider's charge id. `provider` is where it
-- was last attempted (host[:port]); `verified_at` says that provider's ledger was checked and holds
-- no charge for the key (safe to charge it elsewhere).
CREATE TABLE payments (
    id              bigserial PRIMARY KEY,
    order_id        bigint NOT NULL UNIQUE REFERENCES orders (id),
    idempotency_key text NOT NULL UNIQUE,
    amount_cents    integer NOT NULL CHECK (amount_cents >= 0),
    status          text NOT NULL CHECK (status IN ('pending', 'captured')),
    provider        text NOT NULL,
    charge_id       text,
    source          text,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    verified_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    captured_at     timestamptz,
    CHECK ((status = 'captured') = (charge_id IS NOT NULL))
);
CREATE INDEX payments_pending ON payments (id) WHERE status = 'pending';
CREATE TABLE audit_log (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- Account security (seed 004 "Secure compromised accounts"): a lock (no login, every token
-- refused), the session generation (a token issued in an older one is refused: its sessions were
-- revoked) and a pending forced reset (the SHA-256 of the code sent to the user).
CREATE TABLE account_security (
    user_id            bigint PRIMARY KEY REFERENCES users (id),
    locked_at          timestamptz,
    lock_reason        text,
    session_generation integer NOT NULL DEFAULT 0,
    reset_token_hash   text,
    reset_requested_at timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- The notification outbox (email, in-app, SMS): what the app sent a user, and when.
CREATE TABLE notifications (
    id      bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    at      timestamptz NOT NULL DEFAULT now(),
    channel text NOT NULL CHECK (channel IN ('email', 'app', 'sms')),
    kind    text NOT NULL,
    subject text NOT NULL,
    message text NOT NULL
);
RESET ROLE;
CREATE EXTENSION amcheck;
