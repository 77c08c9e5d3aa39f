#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster (the same settings ./run test uses), e.g.
#   bench/with_postgres.sh .venv/bin/python bench/traffic_import.py --rows 200000
set -euo pipefail
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DIR="$(mktemp -d /tmp/sage-bench-pg.XXXXXX)"; chmod 755 "$PG_DIR"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run=(); if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; run=(runuser -u postgres --); fi
"${run[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U sage --no-sync -E UTF8 >/dev/null
"${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w start -o \
  "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
trap '"${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"' EXIT
"${run[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U sage sage
export DATABASE_URL="postgres://sage@127.0.0.1:$PG_PORT/sage" SAGE_DATA_DIR="$PG_DIR/data-dir"
"$@"
