#!/usr/bin/env bash
# Official-image-style PostgreSQL entrypoint (a small subset of docker-library/postgres'):
#   POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE)  the superuser's password (required on first start)
#   POSTGRES_USER  (default postgres)              the superuser initdb creates
#   POSTGRES_DB    (default $POSTGRES_USER)        a database created on first start
#   PGDATA                                         the data directory (initdb when it is empty)
#   /docker-entrypoint-initdb.d/*.sh|*.sql         run once, after initdb, against $POSTGRES_DB
# Then the server runs as PID 1 (exec), as user postgres, with host connections on scram-sha-256.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

file_env() {  # VAR [default]: VAR from the environment or from the file named by VAR_FILE
    local var=$1 file_var="${1}_FILE" def=${2:-} val
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        log "error: both $var and $file_var are set (they are exclusive)"
        exit 1
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!file_var:-}" ]; then
        val=$(<"${!file_var}")
    fi
    export "$var"="$val"
    unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -z "$POSTGRES_PASSWORD" ]; then
            log "error: the database is uninitialized and POSTGRES_PASSWORD is not set"
            exit 1
        fi
        log "initdb of $PGDATA (superuser $POSTGRES_USER)"
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
            --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
        printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
        # a temporary server on the socket only: nothing connects over TCP before init is done
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
        psql=(psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --no-password)
        if [ "$POSTGRES_DB" != postgres ]; then
            "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        fi
        psql+=(--dbname "$POSTGRES_DB")
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
                *.sh) log "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
                *.sql) log "running $f"; "${psql[@]}" -f "$f" ;;
                *) [ -e "$f" ] && log "ignoring $f" ;;
            esac
        done
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        log "init done; starting PostgreSQL"
    else
        log "$PGDATA holds a cluster: skipping initialization"
    fi
    unset POSTGRES_PASSWORD
fi

exec "$@"
