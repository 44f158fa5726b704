#!/bin/sh
# The team's runbook script for a node whose data cannot be trusted (a corrupt page, a timeline
# pg_rewind cannot bring back): throw its data directory away, with the node stopped (e.g. in a
# one-off container with its volumes). At its next start the entrypoint clones the node from
# whichever node is the primary then (`repmgr standby clone`) and registers it as a standby.
set -eu
: "${PGDATA:?}"
if [ -s "$PGDATA/postmaster.pid" ] && pg_isready -q -h /run/postgresql 2>/dev/null; then
    echo "PostgreSQL answers on $PGDATA: stop the node first" >&2
    exit 1
fi
size=$(du -sk "$PGDATA" | cut -f1)
find "$PGDATA" -mindepth 1 -delete
touch "$PGDATA/.reclone"
echo "discarded ${size} KiB under $PGDATA; the node clones the current primary at its next start"
