#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: unit and end-to-end tests, the offline Kaggle
# kernel check, the jupytext pairing check and the headless execution of the notebooks (their executed
# copies land in artifacts/notebooks/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
exec python3 -m pytest -q -p no:cacheprovider --durations=15 "$@"
