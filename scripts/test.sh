#!/usr/bin/env bash
# Sets up (scripts/setup.sh: apt-get and pip only for what is missing) and runs the whole test suite:
# unit and end-to-end tests, the fault suite, the offline Kaggle kernel check, the jupytext pairing check and
# the headless execution of the notebooks (their executed copies land in artifacts/notebooks/).
# Arguments go to pytest: `bash scripts/test.sh -m "not slow"` is the quick loop (CI runs everything).
# BENGALI_KIT_SKIP_SETUP=1 skips the set-up altogether (a developer's own environment, not root, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENGALI_KIT_SKIP_SETUP:-0}" = 1 ]; then
  echo "== BENGALI_KIT_SKIP_SETUP=1: not running scripts/setup.sh"
else
  bash scripts/setup.sh
fi
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m pytest -q -p no:cacheprovider --durations=15 "$@"
