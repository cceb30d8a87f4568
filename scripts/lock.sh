#!/usr/bin/env bash
# Regenerate requirements.lock (what the image installs, every file pinned by hash) from pyproject.toml's
# dependencies and its build requirements. Run it after changing either; tests/deploy/test_image.py
# fails while the lock is out of step. Only PyPI is consulted (no local wheel folders or indexes).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= .venv/bin/pip-compile --quiet \
  --generate-hashes --strip-extras --allow-unsafe --build-deps-for wheel \
  --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
  --output-file requirements.lock pyproject.toml "$@"
