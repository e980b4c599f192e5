#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the kit end to end on a synthetic competition folder:
# synth -> preprocess -> train -> evaluate -> predict -> package (+ offline check of the Kaggle kernel).
# Everything lands in demo/ (override with DEMO_DIR=...); a second run reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
D=${DEMO_DIR:-demo}
EPOCHS=${DEMO_EPOCHS:-4}
mkdir -p "$D"
run() { echo; echo "+ $*"; "$@"; }

[ -f "$D/data/train.csv" ] || run bengali-kit synth "$D/data" --train-rows 4000 --test-rows 120 --seed 0 --files 2
run bengali-kit preprocess "$D/data" --size 64 --out "$D/cache"
if [ -f "$D/run/last.pt" ]; then resume=--resume; else resume=; fi
run bengali-kit train --data "$D/data" --cache-dir "$D/cache" --out "$D/run" --size 64 --epochs "$EPOCHS" \
    --batch-size 64 --lr 3e-3 --cutmix-p 0 $resume
run bengali-kit evaluate --data "$D/data" --checkpoint "$D/run/best.pt"
run bengali-kit predict --data "$D/data" --checkpoint "$D/run/best.pt" --out "$D/submission.csv" --overwrite
run bengali-kit package --checkpoint "$D/run/best.pt" --out "$D/kaggle_package" --user demo-user \
    --slug bengali-kit-demo --overwrite --verify
echo
echo "== demo finished: data $D/data, run $D/run (curves.png, history.csv), $D/submission.csv, $D/kaggle_package/"
