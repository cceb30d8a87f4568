#!/usr/bin/env bash
# Make sure RabbitMQ answers at 127.0.0.1:5672 (the queue tests need it): start the local server when
# it is installed but stopped, install it from Debian's packages when it is missing.
set -euo pipefail
HOST=127.0.0.1
PORT=5672

ready() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

if ready; then
  echo "rabbitmq: up at $HOST:$PORT"; exit 0
fi
if ! command -v rabbitmq-server >/dev/null && [ ! -x /usr/sbin/rabbitmq-server ]; then
  echo "rabbitmq: not installed; installing from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rabbitmq-server >/dev/null
fi
# The Debian package's init script runs the server as the rabbitmq user.
if command -v service >/dev/null; then
  service rabbitmq-server start || true
else
  /etc/init.d/rabbitmq-server start || true
fi
for _ in $(seq 1 240); do
  if ready; then echo "rabbitmq: up at $HOST:$PORT"; exit 0; fi
  sleep 0.5
done
echo "rabbitmq: did not answer at $HOST:$PORT within 120 s" >&2
exit 1
