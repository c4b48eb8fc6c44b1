#!/usr/bin/env bash
# Installs what Recall's tests, benchmarks and demo need on a Debian machine, when missing:
# npm packages and the Debian packages mariadb-server, mariadb-client, postgresql, sysbench,
# rsync and the Python drivers used by the compatibility tests. Idempotent and quiet when
# everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in mariadb-server mariadb-client mariadb-backup postgresql sysbench rsync python3-pymysql python3-psycopg2 openssl; do
  have_pkg "$p" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  if ! have_cmd apt-get; then
    echo "setup: missing packages ${need[*]}, and no apt-get to install them (this script targets Debian/Ubuntu)" >&2
    exit 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian packages start system services; Recall manages its own servers, so stop them.
  (systemctl stop mariadb postgresql 2>/dev/null || service mariadb stop 2>/dev/null || true) >/dev/null 2>&1
  (service postgresql stop 2>/dev/null || true) >/dev/null 2>&1
fi

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages" >&2
  npm install --no-audit --no-fund >/dev/null
fi
