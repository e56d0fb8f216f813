#!/usr/bin/env bash
# The test suite on a fresh machine: install, then pytest on the CPU. Two worker processes with one torch
# thread each (tiny tensors: threads fighting over 2 cores cost more than they give). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=1 bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "${PYTHON:-python3}" -m pytest -q -n "${TEST_WORKERS:-2}" "$@"
