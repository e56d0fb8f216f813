#!/usr/bin/env bash
# The test suite on a fresh machine: install, then pytest (CPU only). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=1 bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
