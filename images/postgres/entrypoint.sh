#!/bin/bash
# drillkit postgres entrypoint. DRILLKIT_ROLE selects what the container is:
#   primary  - copy the baked template into an empty $PGDATA, set the per-run passwords, run postgres
#   replica  - pg_basebackup from $PRIMARY_HOST into an empty $PGDATA as a hot standby, run postgres
#   tool     - run the given command (restores, checks) as the postgres user
# Secrets are read from files under /run/drillkit/secrets and never echoed.
set -euo pipefail
SECRETS=${SECRETS_DIR:-/run/drillkit/secrets}
export PGDATA=${PGDATA:-/pgdata}

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql /var/lib/pgbackrest
    chmod 700 "$PGDATA"
    # pg_wal may be a mount point of its own (a WAL volume): hand it to postgres as well
    if [ -d "$PGDATA/pg_wal" ]; then
        chown postgres:postgres "$PGDATA/pg_wal"
        chmod 700 "$PGDATA/pg_wal"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

secret() { tr -d '\n' < "$SECRETS/$1"; }

case "${DRILLKIT_ROLE:-primary}" in
primary)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        cp -a /opt/pgtemplate/. "$PGDATA/"
    fi
    if [ ! -e /var/lib/pgbackrest/backup/main/backup.info ]; then
        cp -a /opt/pgbackrest-template/. /var/lib/pgbackrest/
    fi
    if [ ! -e "$PGDATA/drillkit.initialised" ]; then
        {
            printf "ALTER ROLE postgres PASSWORD '%s';\n" "$(secret pg_superuser_password)"
            printf "ALTER ROLE app PASSWORD '%s';\n" "$(secret app_db_password)"
            printf "ALTER ROLE replicator PASSWORD '%s';\n" "$(secret replication_password)"
        } | postgres --single -j -D "$PGDATA" postgres >/dev/null
        touch "$PGDATA/drillkit.initialised"
    fi
    exec postgres -D "$PGDATA" "$@"
    ;;
replica)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        conninfo="host=${PRIMARY_HOST:?} user=replicator application_name=${REPLICA_NAME:-replica}"
        if [ "${REPLICA_SEED:-basebackup}" = template ]; then
            # A new stack: the primary starts from this same cleanly shut-down template (same
            # system identifier, timeline 1), so a copy of it is a valid cold base backup. The
            # standby streams everything the primary writes after the template's shutdown
            # checkpoint (the per-run passwords included), and no pg_basebackup waits on the
            # primary. A re-clone (a restored or promoted primary) always takes a base backup.
            cp -a /opt/pgtemplate/. "$PGDATA/"
            touch "$PGDATA/standby.signal"
            printf "primary_conninfo = '%s password=%s'\n" "$conninfo" \
                "$(secret replication_password)" >> "$PGDATA/postgresql.auto.conf"
        fi
        # started together with the primary: wait (bounded) until it accepts connections
        for _ in $(seq 1 600); do
            pg_isready -q -h "${PRIMARY_HOST:?}" -t 1 && break
            sleep 0.05
        done
        if [ ! -e "$PGDATA/standby.signal" ]; then
            PGPASSWORD=$(secret replication_password) pg_basebackup \
                -d "$conninfo" -D "$PGDATA" -X stream -R -c fast
        fi
    fi
    exec postgres -D "$PGDATA" "$@"
    ;;
tool)
    exec "$@"
    ;;
*)
    echo "entrypoint: unknown DRILLKIT_ROLE '${DRILLKIT_ROLE}' (primary, replica or tool)" >&2
    exit 64
    ;;
esac
