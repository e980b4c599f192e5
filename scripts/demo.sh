#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the kit end to end on synthetic competition data:
# synth -> preprocess -> train -> predict -> package. Everything lands in demo/ (override: DEMO_DIR=...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
D=${DEMO_DIR:-demo}
mkdir -p "$D"
run() { echo "+ $*"; "$@"; }
[ -f "$D/data/train.csv" ] || run bengali-kit synth "$D/data" --train-rows 3000 --test-rows 120 --seed 0 --files 2
run bengali-kit preprocess "$D/data" --size 64 --out "$D/cache"
echo "== demo finished: see $D/"
