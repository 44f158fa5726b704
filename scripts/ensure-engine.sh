#!/usr/bin/env bash
# Make sure a Docker engine answers. Idempotent.
#
# 1. If `docker info` answers (DOCKER_HOST or the default socket), do nothing.
# 2. Else, if we are root on a Debian/apt machine, install Debian's docker.io (when dockerd is
#    absent) and start dockerd in the background, with its log and pid under $DRILLKIT_RUN_DIR,
#    then wait until it answers.
# 3. Else stop with a message that names what is missing and how to fix it.
set -euo pipefail

RUN_DIR=${DRILLKIT_RUN_DIR:-/var/run/drillkit}
DOCKER=${DOCKER:-docker}
WAIT_S=${DRILLKIT_ENGINE_WAIT_S:-60}

engine_answers() { "$DOCKER" info >/dev/null 2>&1; }

if engine_answers; then
    exit 0
fi

fail() {
    echo "drillkit: no Docker engine answers${DOCKER_HOST:+ at DOCKER_HOST=$DOCKER_HOST}." >&2
    echo "drillkit: $1" >&2
    echo "drillkit: fix: start Docker (e.g. 'sudo systemctl start docker'), or set DOCKER_HOST to a reachable engine." >&2
    exit 1
}

if ! command -v "$DOCKER" >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    can_install=1
else
    can_install=0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    fail "DOCKER_HOST is set, so drillkit will not start a local engine in its place."
fi
if [ "$(id -u)" != 0 ]; then
    fail "drillkit can start one only as root (this is uid $(id -u))."
fi
if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        fail "dockerd is not installed and this machine has no apt-get to install Debian's docker.io."
    fi
    echo "drillkit: installing Debian's docker.io (dockerd is absent) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io iptables >/dev/null
fi
: "$can_install"

mkdir -p "$RUN_DIR"
pidfile="$RUN_DIR/dockerd.pid"
logfile="$RUN_DIR/dockerd.log"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "drillkit: dockerd (pid $(cat "$pidfile")) is starting; waiting for it ..." >&2
else
    echo "drillkit: starting dockerd in the background (log: $logfile) ..." >&2
    # setsid: the engine must outlive the make/pytest process that started it.
    setsid dockerd --pidfile "$pidfile" >"$logfile" 2>&1 < /dev/null &
fi

for _ in $(seq 1 $((WAIT_S * 5))); do
    if engine_answers; then
        echo "drillkit: Docker engine is up ($("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null))." >&2
        exit 0
    fi
    sleep 0.2
done
echo "drillkit: dockerd did not answer within ${WAIT_S}s; last lines of $logfile:" >&2
tail -n 20 "$logfile" >&2 || true
exit 1
