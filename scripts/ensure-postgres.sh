#!/usr/bin/env bash
# Make sure PostgreSQL answers at 127.0.0.1:5432 (the ledger tests need it): start the local
# cluster when it is installed but stopped, install it from Debian's packages when it is missing.
set -euo pipefail
HOST=127.0.0.1
PORT=5432

ready() { pg_isready -q -h "$HOST" -p "$PORT" 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
  echo "postgres: up at $HOST:$PORT"; exit 0
fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "postgres: not installed; installing from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
for version in $(ls /etc/postgresql); do
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
done
for _ in $(seq 1 60); do
  if ready; then echo "postgres: up at $HOST:$PORT"; exit 0; fi
  sleep 0.5
done
echo "postgres: did not answer at $HOST:$PORT within 30 s" >&2
exit 1
