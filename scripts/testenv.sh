#!/usr/bin/env bash
# Starts the engines the tests of the scale-out backends need, on loopback, for one
# test run: a PostgreSQL cluster (Debian's `postgresql`) and an S3-compatible server
# (`s3s-fs`). Meant to be sourced by scripts/test.sh:
#
#   source scripts/testenv.sh && testenv_start   # exports WHARF_TEST_POSTGRES, WHARF_TEST_S3...
#   ...run tests...
#   testenv_stop
#
# Tests started without these variables start private engines of their own (see
# crates/wharf-testenv), so this only saves the time of starting one per test.

testenv_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

testenv_start() {
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$pgbin" ]; then
    echo "testenv: PostgreSQL is not installed (scripts/setup.sh installs it)" >&2
    return 1
  fi
  TESTENV_DIR=$(mktemp -d /tmp/wharf-testenv.XXXXXX)
  chmod 755 "$TESTENV_DIR"
  mkdir -p "$TESTENV_DIR/pg" "$TESTENV_DIR/s3"
  local as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$TESTENV_DIR/pg"
    as_pg=(runuser -u postgres --)
  fi
  local pg_port s3_port
  pg_port=$(testenv_free_port)
  s3_port=$(testenv_free_port)
  "${as_pg[@]}" "$pgbin/initdb" -D "$TESTENV_DIR/pg/data" -U postgres -A trust \
    --no-sync -E UTF8 >"$TESTENV_DIR/initdb.log" 2>&1 || {
    cat "$TESTENV_DIR/initdb.log" >&2
    return 1
  }
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$TESTENV_DIR/pg/data" -l "$TESTENV_DIR/pg/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $TESTENV_DIR/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=1000" \
    start >/dev/null || {
    cat "$TESTENV_DIR/pg/server.log" >&2
    return 1
  }
  TESTENV_PGBIN=$pgbin
  export WHARF_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"

  export WHARF_TEST_S3_ACCESS_KEY=WHARFTESTRUNKEY
  export WHARF_TEST_S3_SECRET_KEY=wharf-test-run-secret-key
  s3s-fs --host 127.0.0.1 --port "$s3_port" \
    --access-key "$WHARF_TEST_S3_ACCESS_KEY" --secret-key "$WHARF_TEST_S3_SECRET_KEY" \
    "$TESTENV_DIR/s3" >"$TESTENV_DIR/s3.log" 2>&1 &
  TESTENV_S3_PID=$!
  export WHARF_TEST_S3="http://127.0.0.1:$s3_port"
  local i
  for i in $(seq 1 100); do
    if curl -s -o /dev/null "$WHARF_TEST_S3/"; then
      break
    fi
    sleep 0.1
  done
  echo "testenv: PostgreSQL on 127.0.0.1:$pg_port, S3 (s3s-fs) on 127.0.0.1:$s3_port, in $TESTENV_DIR" >&2
}

testenv_stop() {
  [ -n "${TESTENV_DIR:-}" ] || return 0
  if [ -n "${TESTENV_S3_PID:-}" ]; then
    kill "$TESTENV_S3_PID" 2>/dev/null || true
    wait "$TESTENV_S3_PID" 2>/dev/null || true
  fi
  local as_pg=()
  [ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
  "${as_pg[@]}" "$TESTENV_PGBIN/pg_ctl" -D "$TESTENV_DIR/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$TESTENV_DIR"
  unset TESTENV_DIR WHARF_TEST_POSTGRES WHARF_TEST_S3
}
