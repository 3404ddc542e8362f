#!/usr/bin/env bash
# What `make reliability` needs besides Python packages: the servers it starts privately
# (redis-server, MariaDB, PostgreSQL). Installed from Debian only if missing.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
{ [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null; } || missing+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "reliability: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi
