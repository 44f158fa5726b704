#!/usr/bin/env bash
# The shop's restore: replace the shop database's tables with a pg_dump (default: the latest one
# backup.sh made), in one transaction. Every write made after that dump is lost.
set -euo pipefail
BACKUP_DIR=${BACKUP_DIR:-/backups}
export PGHOST=${PGHOST:-/var/run/postgresql}
export PGUSER=${PGUSER:-${POSTGRES_USER:-postgres}}
export PGDATABASE=${PGDATABASE:-${POSTGRES_DB:-$PGUSER}}
dump=${1:-$BACKUP_DIR/latest.dump}
if [ ! -s "$dump" ]; then
    echo "restore: no dump at $dump (run backup.sh first)" >&2
    exit 1
fi
dump=$(readlink -f "$dump")
pg_restore --clean --if-exists --single-transaction --exit-on-error --dbname="$PGDATABASE" "$dump"
echo "restore: $PGDATABASE restored from $dump"
