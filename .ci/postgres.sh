#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the target-postgres tests.
#
#   bash .ci/postgres.sh               install the server from Debian packages if it is missing,
#                                      then initialise (once) and start (if stopped) the cluster
#   bash .ci/postgres.sh --no-install  the same, but fail instead of calling apt-get
#   bash .ci/postgres.sh --stop        stop the cluster (its files stay for the next start)
#   bash .ci/postgres.sh --install-only  install the server from Debian packages if it is missing
#                                      and do nothing else (what .ci/run does: the tests start
#                                      a cluster of their own in a temporary folder, and stop
#                                      it and remove the folder when the session ends)
#
# Safe to call any number of times: a running cluster is left alone, an existing one is started.
# On success it prints the connection settings as `export TAP_MARKETO_TEST_PG_*=...` lines, so
# `eval "$(bash .ci/postgres.sh)"` sets them in the calling shell, and writes the same lines to
# "$TAP_MARKETO_TEST_PG_DIR/env.sh" for later shells. The tests use a server named by those
# variables when they are set (and leave it running: it is not theirs); otherwise the session's
# `postgres` fixture (tests/conftest.py) calls this script with a temporary TAP_MARKETO_TEST_PG_DIR
# and a free port (with --no-install unless CI is set), and calls --stop at the end.
#
# Knobs (environment): TAP_MARKETO_TEST_PG_DIR (default /tmp/tap-marketo-activities-pg),
# TAP_MARKETO_TEST_PG_PORT (default 55432; another port is picked if that one is taken by a
# server that is not ours).
set -euo pipefail

PG_DIR="${TAP_MARKETO_TEST_PG_DIR:-/tmp/tap-marketo-activities-pg}"
PG_PORT="${TAP_MARKETO_TEST_PG_PORT:-55432}"
PG_HOST=127.0.0.1
PG_USER=tap_marketo
PG_PASSWORD=tap_marketo
PG_DATABASE=tap_marketo_test
DATA="$PG_DIR/data"
SOCKETS="$PG_DIR/sockets"
LOG="$PG_DIR/server.log"

mode=start
case "${1:-}" in
  "") ;;
  --no-install) mode=no-install ;;
  --stop) mode=stop ;;
  --install-only) mode=install-only ;;
  *) echo "usage: $0 [--no-install|--stop|--install-only]" >&2; exit 2 ;;
esac

say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  # Debian keeps the server binaries out of PATH, one directory per major version; take the
  # newest. Elsewhere (a developer's own install) they are usually on PATH.
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

BINDIR="$(find_bindir || true)"

if [[ "$mode" == stop ]]; then
  if [[ -n "$BINDIR" && -f "$DATA/postmaster.pid" ]]; then
    as_owner() { if [[ "$(id -u)" == 0 ]]; then runuser -u "$(stat -c %U "$DATA")" -- "$@"; else "$@"; fi; }
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
  fi
  exit 0
fi

if [[ -z "$BINDIR" ]]; then
  if [[ "$mode" == no-install ]]; then
    say "no PostgreSQL server binaries found (initdb, pg_ctl) and --no-install was given"
    exit 3
  fi
  if [[ "$(id -u)" != 0 ]]; then
    say "no PostgreSQL server found and not root: install the 'postgresql' package first"
    exit 3
  fi
  say "installing PostgreSQL from the Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  BINDIR="$(find_bindir)" || { say "installed postgresql but found no initdb"; exit 3; }
fi
if [[ "$mode" == install-only ]]; then
  say "server binaries in $BINDIR"
  exit 0
fi

# The server refuses to run as root: as root, run it as the 'postgres' account the package
# creates (or a system account of that name we create); otherwise as whoever calls us.
OWNER="$(id -un)"
if [[ "$(id -u)" == 0 ]]; then
  OWNER=postgres
  if ! id -u "$OWNER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
  fi
fi
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u "$OWNER" -- "$@"; else "$@"; fi
}

port_is_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

running() {
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

mkdir -p "$PG_DIR"
chmod 755 "$PG_DIR"
if [[ ! -f "$DATA/PG_VERSION" ]]; then
  say "initialising a cluster in $DATA"
  rm -rf "$DATA" "$SOCKETS"
  mkdir -p "$DATA" "$SOCKETS"
  chown "$OWNER" "$DATA" "$SOCKETS" "$PG_DIR"
  pwfile="$(mktemp)"
  printf '%s\n' "$PG_PASSWORD" >"$pwfile"
  chown "$OWNER" "$pwfile"
  # The superuser is the test user itself, so the tests may create and drop schemas freely.
  as_owner "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
    || as_owner "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 \
    || { rm -f "$pwfile"; say "initdb failed:"; cat "$PG_DIR/initdb.log" >&2; exit 1; }
  rm -f "$pwfile"
fi

if running; then
  # Ours and up: report the port it actually listens on.
  PG_PORT="$(sed -n 4p "$DATA/postmaster.pid")"
else
  if ! port_is_free "$PG_PORT"; then
    PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    say "the requested port is taken; using $PG_PORT"
  fi
  rm -f "$DATA/postmaster.pid"
  say "starting PostgreSQL ($BINDIR) on $PG_HOST:$PG_PORT"
  # fsync off: a test cluster that may lose data on a crash, and is much faster for it.
  as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
    -o "-c listen_addresses=$PG_HOST -p $PG_PORT -k $SOCKETS -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 \
    || { say "the server did not start:"; tail -n 30 "$LOG" >&2; exit 1; }
fi

psql_() {
  as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKETS" -p "$PG_PORT" -U "$PG_USER" "$@"
}
if [[ "$(psql_ -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" != 1 ]]; then
  psql_ -d postgres -c "CREATE DATABASE $PG_DATABASE" >&2
fi

env_lines="export TAP_MARKETO_TEST_PG_HOST=$PG_HOST
export TAP_MARKETO_TEST_PG_PORT=$PG_PORT
export TAP_MARKETO_TEST_PG_USER=$PG_USER
export TAP_MARKETO_TEST_PG_PASSWORD=$PG_PASSWORD
export TAP_MARKETO_TEST_PG_DATABASE=$PG_DATABASE
export TAP_MARKETO_TEST_PG_BINDIR=$BINDIR
export TAP_MARKETO_TEST_PG_DIR=$PG_DIR"
printf '%s\n' "$env_lines" >"$PG_DIR/env.sh"
chmod 644 "$PG_DIR/env.sh"
printf '%s\n' "$env_lines"
