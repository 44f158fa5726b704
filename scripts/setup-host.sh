#!/usr/bin/env bash
# Make sure this host can run drills. Idempotent.
#
# 0. The host tools drills use (debootstrap to build images with no registry, nsenter/iptables for
#    partitions, losetup/mkfs.ext4 for disk-full drills, chromium to render the evidence pack as
#    PDF, pdftoppm to check its pages, ssh-keygen to sign it): installed from Debian when missing and root.
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

missing=()
for tool in debootstrap:debootstrap nsenter:util-linux losetup:mount mkfs.ext4:e2fsprogs iptables:iptables chromium:chromium pdftoppm:poppler-utils ssh-keygen:openssh-client; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "drillkit: installing ${missing[*]} from Debian ..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "drillkit: missing host tools: ${missing[*]} (install them; drills that need them will fail)" >&2
    fi
fi

if engine_answers; then
    exit 0
fi

fail() {
    echo "drillkit: no Docker engine answers${DOCKER_HOST:+ at DOCKER_HOST=$DOCKER_HOST}." >&2
    echo "drillkit: $1" >&2
    echo "drillkit: fix: start Docker (e.g. 'sudo systemctl start docker'), or set DOCKER_HOST to a reachable engine." >&2
    exit 1
}

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

mkdir -p "$RUN_DIR"
pidfile="$RUN_DIR/dockerd.pid"
logfile="$RUN_DIR/dockerd.log"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "drillkit: dockerd (pid $(cat "$pidfile")) is starting; waiting for it ..." >&2
else
    echo "drillkit: starting dockerd in the background (log: $logfile) ..." >&2
    # setsid: the engine must outlive the make/pytest process that started it. Every inherited
    # descriptor above 2 is closed first: run under `flock /tmp/drillkit-drill.lock make ...`, the
    # daemon would otherwise keep the lock's descriptor, and so the lock, for as long as it runs.
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec setsid dockerd --pidfile "$pidfile" >"$logfile" 2>&1 < /dev/null
    ) &
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
