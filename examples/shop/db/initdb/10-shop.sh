#!/usr/bin/env bash
# First start only: the app's own role (password from SHOP_APP_PASSWORD) and the shop's schema.
set -euo pipefail
: "${SHOP_APP_PASSWORD:?SHOP_APP_PASSWORD must be set on the db service}"
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set pw="$SHOP_APP_PASSWORD" <<'SQL'
CREATE ROLE shop LOGIN PASSWORD :'pw';
CREATE TABLE items (
    sku        text PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name       text NOT NULL CHECK (length(name) <= 200),
    qty        integer NOT NULL CHECK (qty >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON items TO shop;
SQL
