#!/usr/bin/env bash
# Sets up (scripts/setup.sh; pip is skipped when everything is installed) and runs the whole test suite:
# unit and end-to-end tests, the fault suite, the offline Kaggle kernel check, the jupytext pairing check and
# the headless execution of the notebooks (their executed copies land in artifacts/notebooks/).
# Arguments go to pytest: `bash scripts/test.sh -m "not slow"` is the quick loop (CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider --durations=15 "$@"
