#!/bin/bash
# One node of the repmgr cluster. Environment:
#   NODE_ID, NODE_NAME (this node's name = its compose service name), PRIMARY (the initial
#   primary's name), NODES (every node's name, space-separated), POSTGRES_PASSWORD,
#   REPMGR_PASSWORD, APP_USER, APP_DB, APP_PASSWORD_FILE (the app role's password, a file),
#   RECONNECT_ATTEMPTS / RECONNECT_INTERVAL (repmgrd: how soon a lost primary is failed over).
# First start: the initial primary runs initdb and registers itself; a standby clones the primary
# (`repmgr standby clone`) and registers. A node whose data discard-data.sh threw away clones
# whichever node is the primary now and registers as its standby. A restart of a node whose data exists, while another
# node is now the writable primary, rejoins it as a standby (`repmgr node rejoin --force-rewind`)
# instead of starting a second primary. postgres runs in the foreground: when it dies, the
# container exits. repmgrd and the health endpoint run beside it.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
    exec runuser -u postgres -- "$0" "$@"
fi
: "${NODE_ID:?}" "${NODE_NAME:?}" "${PRIMARY:?}" "${NODES:?}" "${POSTGRES_PASSWORD:?}" \
  "${REPMGR_PASSWORD:?}"
CONF=/var/lib/postgresql/repmgr.conf
READY=/run/postgresql/node-ready  # the healthcheck: set once postgres runs in the foreground
rm -f "$READY"
log() { echo "$(date -u +%FT%T.%3NZ) [entrypoint] $*" >&2; }

umask 077
printf '*:*:*:repmgr:%s\n' "$REPMGR_PASSWORD" > ~/.pgpass
printf '*:*:replication:repmgr:%s\n' "$REPMGR_PASSWORD" >> ~/.pgpass
cat > "$CONF" <<CONF
node_id=$NODE_ID
node_name='$NODE_NAME'
conninfo='host=$NODE_NAME port=5432 user=repmgr dbname=repmgr connect_timeout=2'
data_directory='$PGDATA'
pg_bindir='/usr/lib/postgresql/15/bin'
use_replication_slots=yes
failover='automatic'
promote_command='/usr/bin/repmgr standby promote -f $CONF'
follow_command='/usr/bin/repmgr standby follow -f $CONF --upstream-node-id=%n'
monitor_interval_secs=1
reconnect_attempts=${RECONNECT_ATTEMPTS:-3}
reconnect_interval=${RECONNECT_INTERVAL:-1}
connection_check_type='ping'
standby_disconnect_on_failover=false
log_level='INFO'
log_facility='STDERR'
CONF

peer_primary() {  # the name of another node that answers as a writable primary, if any
    local n
    for n in $NODES; do
        [ "$n" = "$NODE_NAME" ] && continue
        if [ "$(psql -h "$n" -U repmgr -d repmgr -XtAc 'SELECT NOT pg_is_in_recovery()' \
                2>/dev/null)" = t ]; then
            echo "$n"; return 0
        fi
    done
    return 1
}

await_registered() {  # until node $1's repmgr metadata names it the active primary: a
    # promotion makes the server writable before `repmgr standby promote` records it
    until psql -h "$1" -U repmgr -d repmgr -XtAc "SELECT 1 FROM repmgr.nodes WHERE
            node_name = '$1' AND type = 'primary' AND active" 2>/dev/null | grep -q 1; do
        sleep 0.5
    done
}

clone_from() {  # clone a standby of node $1 (once it is the registered primary) and register it
    log "cloning a standby of $1"
    await_registered "$1"
    repmgr -h "$1" -U repmgr -d repmgr -f "$CONF" standby clone --fast-checkpoint
    pg_ctl -w -D "$PGDATA" start >/dev/null
    repmgr -f "$CONF" standby register --force
    pg_ctl -w -D "$PGDATA" -m fast stop >/dev/null
}

if [ ! -s "$PGDATA/PG_VERSION" ] && [ -e "$PGDATA/.reclone" ]; then
    # discard-data.sh emptied it (the runbook for a corrupt node): clone the primary of now
    current=$(peer_primary) || { log "no node is the primary: nothing to clone from"; exit 1; }
    rm -f "$PGDATA/.reclone"
    clone_from "$current"
elif [ ! -s "$PGDATA/PG_VERSION" ] && [ "$NODE_NAME" = "$PRIMARY" ]; then
    log "initialising the primary $NODE_NAME"
    initdb -D "$PGDATA" -U postgres -k -E UTF8 --locale=C.UTF-8 --auth-local=peer \
        --auth-host=scram-sha-256 --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
    cat /opt/ha/conf/postgresql.conf >> "$PGDATA/postgresql.conf"
    cp /opt/ha/conf/pg_hba.conf /opt/ha/conf/pg_ident.conf "$PGDATA/"
    pg_ctl -w -D "$PGDATA" start >/dev/null
    app_password=$(cat "${APP_PASSWORD_FILE:-/run/secrets/db_password}")
    psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres \
        -v repmgr_pw="$REPMGR_PASSWORD" -v app_pw="$app_password" \
        -v app_user="${APP_USER:-app}" -v app_db="${APP_DB:-ha}" <<'SQL'
CREATE ROLE repmgr SUPERUSER LOGIN PASSWORD :'repmgr_pw';
CREATE DATABASE repmgr OWNER repmgr;
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_pw';
CREATE DATABASE :"app_db" OWNER :"app_user";
\c :"app_db"
SET ROLE :"app_user";
CREATE TABLE entries (key text PRIMARY KEY, value text NOT NULL,
                      stored_at timestamptz NOT NULL DEFAULT now());
SQL
    repmgr -f "$CONF" primary register
    pg_ctl -w -D "$PGDATA" -m fast stop >/dev/null
elif [ ! -s "$PGDATA/PG_VERSION" ]; then
    clone_from "$PRIMARY"
elif [ ! -e "$PGDATA/standby.signal" ] && current=$(peer_primary); then
    log "$current is the primary now: rejoining it as a standby (pg_rewind)"
    await_registered "$current"
    repmgr -f "$CONF" node rejoin --force-rewind \
        -d "host=$current port=5432 user=repmgr dbname=repmgr connect_timeout=2"
    pg_ctl -w -D "$PGDATA" -m fast stop >/dev/null
fi

postgres -D "$PGDATA" &
pg=$!
trap 'kill -INT "$pg" 2>/dev/null' TERM INT
until pg_isready -q -h /run/postgresql; do
    kill -0 "$pg" 2>/dev/null || { wait "$pg"; exit $?; }
    sleep 0.2
done
touch "$READY"
log "$NODE_NAME is up"
python3 /opt/ha/health.py &
# repmgrd gives up when its first connection fails (a busy host): keep it running
(
    while :; do
        repmgrd -f "$CONF" --daemonize=false
        log "repmgrd exited ($?); starting it again in 1 s"
        sleep 1
    done
) &
set +e
wait "$pg"
rc=$?
log "postgres exited ($rc)"
exit "$rc"
