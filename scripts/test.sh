#!/usr/bin/env bash
# The test command: sets up everything it needs (venv, packages, PostgreSQL and RabbitMQ running), then runs
# ruff, mypy and the whole pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The pip the venv brings, never upgraded: the README's quick start uses that one too, so the tests see
# what a newcomer's install sees (tests/console/test_front_door.py walks the quick start itself).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

bash scripts/ensure-postgres.sh
bash scripts/ensure-rabbitmq.sh

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
# The Web UI browser test (tests/ops/test_web_ui.py) drives Debian's chromium through playwright.
if ! command -v chromium >/dev/null 2>&1; then
  $SUDO apt-get install -y -q chromium || { $SUDO apt-get update -q && $SUDO apt-get install -y -q chromium; }
fi
# The alert rules are checked and unit-tested with promtool (tests/observability/test_alert_rules.py),
# from Debian's prometheus package.
if ! command -v promtool >/dev/null 2>&1; then
  $SUDO apt-get install -y -q prometheus || { $SUDO apt-get update -q && $SUDO apt-get install -y -q prometheus; }
fi
# The Alertmanager config is checked with amtool, and the monitoring rehearsal
# (tests/observability/test_rehearsal.py) runs a real Alertmanager: Debian's prometheus-alertmanager.
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  $SUDO apt-get install -y -q prometheus-alertmanager \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q prometheus-alertmanager; }
fi

# The compose file is checked with `docker-compose config` (tests/deploy/test_compose.py), from Debian's
# docker-compose package; `config` needs no Docker engine, so none is installed.
if ! command -v docker-compose >/dev/null 2>&1; then
  $SUDO apt-get install -y -q --no-install-recommends docker-compose \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends docker-compose; }
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q "$@"
