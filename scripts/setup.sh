#!/usr/bin/env bash
# Install what vlprompt needs (idempotent). DEV=1 also installs the test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
reqs=(-r requirements.txt)
[ "${DEV:-0}" = 1 ] && reqs+=(-r requirements-dev.txt)
"$PY" -m pip install -q --disable-pip-version-check "${reqs[@]}"
