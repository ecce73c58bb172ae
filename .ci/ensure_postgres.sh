#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are installed: the
# production-profile tests (tests/test_postgres_queue.py, tests/test_init_profile.py)
# start a throwaway server from them (tests/postgres_helpers.py). Idempotent: exits 0 at
# once when initdb is on PATH or under Debian's /usr/lib/postgresql/<version>/bin;
# otherwise installs the distribution's `postgresql` package with apt-get (root or sudo,
# and the package mirror; nothing else). The package also creates the `postgres` user,
# which the tests run the server as when they run as root (initdb refuses root).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
find_initdb() {
    if have initdb; then command -v initdb; return 0; fi
    ls -1d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1
}
non_root_user() { getent passwd postgres >/dev/null 2>&1 || getent passwd nobody >/dev/null 2>&1; }

initdb_path="$(find_initdb || true)"
if [ -n "$initdb_path" ]; then
    echo "ensure_postgres: present ($initdb_path, $("$initdb_path" --version))"
    if [ "$(id -u)" -eq 0 ] && ! non_root_user; then
        echo "ensure_postgres: running as root with neither a postgres nor a nobody user to run the server as" >&2
        exit 1
    fi
    exit 0
fi
if ! have apt-get; then
    echo "ensure_postgres: initdb not found and apt-get is not available; install PostgreSQL's server by hand" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    have sudo || { echo "ensure_postgres: need root (or sudo) to apt-get install postgresql" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq postgresql
initdb_path="$(find_initdb || true)"
[ -n "$initdb_path" ] || { echo "ensure_postgres: installed, yet no initdb on PATH or under /usr/lib/postgresql/*/bin" >&2; exit 1; }
echo "ensure_postgres: installed $("$initdb_path" --version)"
