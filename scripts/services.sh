#!/usr/bin/env bash
# Start the local servers the test suite talks to — Redis, MariaDB, PostgreSQL, memcached —
# if they are installed but not running. Nothing is installed here: a server that is not on
# the machine stays absent, and its tests skip (or fail under CI=true).
set -u

log() { echo "services: $*"; }

wait_for() {  # wait_for NAME COMMAND...: up to 30 s for COMMAND to succeed
  local name=$1; shift
  for _ in $(seq 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up"
  return 1
}

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
  fi
fi

if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then
  if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    log "starting MariaDB on 127.0.0.1:3306"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping
  fi
fi

if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432
  fi
fi

if command -v memcached >/dev/null || [ -x /usr/bin/memcached ]; then
  memcached_bin=$(command -v memcached || echo /usr/bin/memcached)
  memcached_up() { bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211' 2>/dev/null; }
  if ! memcached_up; then
    log "starting memcached on 127.0.0.1:11211"
    user=root
    if id memcache >/dev/null 2>&1; then user=memcache; fi
    "$memcached_bin" -d -u "$user" -l 127.0.0.1 -p 11211 -U 0 -m 64
    wait_for memcached memcached_up
  fi
fi
exit 0
