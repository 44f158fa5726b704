#!/bin/sh
# Write the run's config (the password from the secrets mount) where only redis reads it, then
# become redis-server. A restart (the cache-outage runbook) reads the current password again.
set -eu
secret=/run/drillkit/secrets/redis_password
conf=/run/drillkit-redis/redis.conf
[ -r "$secret" ] || { echo "drillkit-redis: $secret is missing" >&2; exit 2; }
umask 077
{
  echo "bind 0.0.0.0"
  echo "port 6379"
  echo "protected-mode yes"
  echo "daemonize no"
  echo "save \"\""
  echo "appendonly no"
  echo "dir /run/drillkit-redis"
  echo "maxmemory 64mb"
  echo "maxmemory-policy allkeys-lru"
  echo "loglevel notice"
  echo "logfile \"\""
  printf 'requirepass %s\n' "$(cat "$secret")"
} > "$conf"
exec redis-server "$conf"
