#!/usr/bin/env bash
# The shop's backup: a custom-format pg_dump of the shop database into $BACKUP_DIR (the backups
# volume), named by its UTC time; latest.dump points at the newest. Runs inside the db container
# (the local socket, as the superuser) or anywhere with PGHOST/PGUSER/PGPASSWORD set.
set -euo pipefail
BACKUP_DIR=${BACKUP_DIR:-/backups}
export PGHOST=${PGHOST:-/var/run/postgresql}
export PGUSER=${PGUSER:-${POSTGRES_USER:-postgres}}
export PGDATABASE=${PGDATABASE:-${POSTGRES_DB:-$PGUSER}}
stamp=$(date -u +%Y%m%dT%H%M%S.%3NZ)
out="$BACKUP_DIR/$PGDATABASE-$stamp.dump"
pg_dump --format=custom --file="$out.partial" "$PGDATABASE"
mv "$out.partial" "$out"
ln -sfn "$(basename "$out")" "$BACKUP_DIR/latest.dump"
echo "backup: $out ($(stat -c %s "$out") bytes)"
