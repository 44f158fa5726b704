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
CREATE TABLE audit_log (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
RESET ROLE;
CREATE EXTENSION amcheck;
