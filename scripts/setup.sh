#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install the pinned requirements.
# The environment counts as current when the hash of requirements.txt matches the stamp written
# after the last successful install; otherwise it is (re)installed. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "Setting up .venv (pinned requirements; first run takes a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >&2
.venv/bin/python -m pip install --quiet -r requirements.txt >&2
echo "$want" > "$stamp"
