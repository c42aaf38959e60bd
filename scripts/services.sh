#!/usr/bin/env bash
# Starts and stops the real PostgreSQL and Redis servers that the scale-out tests use, and the S3
# server of the S3 storage's tests (s3rver, from npm: scripts/s3-server), each on its own loopback
# port and data directory (PostgreSQL runs as the `postgres` user when we are root):
#
#   scripts/services.sh start             start all three; prints the environment the tests read
#   scripts/services.sh stop              stop them and remove their data
#   scripts/services.sh restart-postgres  crash-restart PostgreSQL (immediate stop, 1 s, start)
#   scripts/services.sh restart-redis     restart Redis without persistence: its data is lost
#   scripts/services.sh flush-redis       empty Redis (between tests)
#
# IMGPROC_SERVICES_DIR (default /tmp/imgproc-test-services), IMGPROC_TEST_PG_PORT (55432),
# IMGPROC_TEST_REDIS_PORT (56379) and IMGPROC_TEST_S3_PORT (59000) choose where. `start` prints
# them too, so that the tests' restart-* and flush-redis (IMGPROC_TEST_SERVICES) act on the
# instance they were started with, not on one at the default place.
set -euo pipefail

dir=${IMGPROC_SERVICES_DIR:-/tmp/imgproc-test-services}
pg_port=${IMGPROC_TEST_PG_PORT:-55432}
redis_port=${IMGPROC_TEST_REDIS_PORT:-56379}
s3_port=${IMGPROC_TEST_S3_PORT:-59000}
s3_server=$(cd "$(dirname "$0")" && pwd)/s3-server
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  as_postgres "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w -t 60 \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c shared_preload_libraries=pg_stat_statements" \
    start >/dev/null
}

start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "services: redis did not start" >&2
  return 1
}

stop_redis() {
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 || return 0
    sleep 0.1
  done
}

# s3rver in the background, its objects under $dir/s3; ready once it answers.
start_s3() {
  [ -d "$s3_server/node_modules/s3rver" ] || "$s3_server/install.sh" >&2
  mkdir -p "$dir/s3"
  node "$s3_server/server.js" "$s3_port" "$dir/s3" >"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && return 0
    sleep 0.1
  done
  echo "services: the S3 server did not start:" >&2
  cat "$dir/s3.log" >&2
  return 1
}

stop_s3() {
  [ -f "$dir/s3.pid" ] || return 0
  local pid
  pid=$(cat "$dir/s3.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$dir/s3.pid"
}

case "${1:-start}" in
  start)
    "$self" stop >/dev/null 2>&1 || true
    mkdir -p "$dir/pg"
    chmod 755 "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir/pg"
    as_postgres "$pg_bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >/dev/null
    start_postgres
    start_redis
    start_s3
    cat >"$dir/env" <<EOF
export IMGPROC_TEST_PG_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres
export IMGPROC_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0
export IMGPROC_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export IMGPROC_TEST_SERVICES=$self
export IMGPROC_SERVICES_DIR=$dir IMGPROC_TEST_PG_PORT=$pg_port IMGPROC_TEST_REDIS_PORT=$redis_port IMGPROC_TEST_S3_PORT=$s3_port
EOF
    cat "$dir/env"
    ;;
  stop)
    [ ! -f "$dir/pg/postmaster.pid" ] || as_postgres "$pg_bin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null || true
    stop_redis
    stop_s3
    rm -rf "$dir"
    ;;
  restart-postgres)
    as_postgres "$pg_bin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null
    sleep 1
    start_postgres
    ;;
  restart-redis)
    stop_redis
    sleep 1
    start_redis
    ;;
  flush-redis)
    redis-cli -p "$redis_port" flushall >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop|restart-postgres|restart-redis|flush-redis" >&2
    exit 2
    ;;
esac
