#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then shows the kit end to end:
#  0. the shipped real model (weights/real-b0-96.pt) scored on the held-out slice: real handwriting that no
#     shipped model trained on (tests/data/real_heldout_64.npz, one crop of each triple), before anything else;
#  1. real handwriting: real crops imported as competition folders, a short fine-tune from the shipped
#     synthetic starting point (weights/synth-b0-96.pt), scored on held-out real crops;
#  2. the whole pipeline on a synthetic competition folder:
#     synth -> preprocess -> train -> evaluate -> predict -> package (+ offline check of the Kaggle kernel).
# Everything lands in demo/ (override with DEMO_DIR=...); a second run reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
D=${DEMO_DIR:-demo}
EPOCHS=${DEMO_EPOCHS:-3}
REAL_LIMIT=${DEMO_REAL_LIMIT:-2000}
mkdir -p "$D"
run() { echo; echo "+ $*"; "$@"; }

# 0. What the shipped model reads on handwriting it never saw: every crop of the held-out slice goes to train/
#    (--val-per-triple 0) and evaluate --all scores them all. First, so that the short fine-tune below is
#    read against it.
[ -f "$D/heldout/train/train.csv" ] || run bengali-kit import-crops tests/data/real_heldout_64.npz "$D/heldout" \
    --val-per-triple 0 --files 1
run bengali-kit evaluate --data "$D/heldout/train" --checkpoint weights/real-b0-96.pt --all --worst 5

# 1. Real handwriting. The full real sample sits beside a checkout in ../shared/reference; a user's clone has
#    the 300 real crops vendored for the tests.
REAL=../shared/reference/real_sample_64.npz
[ -f "$REAL" ] || REAL=tests/data/real_slice_64.npz
[ -f "$D/real/val/train.csv" ] || run bengali-kit import-crops "$REAL" "$D/real" --limit "$REAL_LIMIT" --files 1
#    A short fine-tune takes AdamW over the preset's LARS: LARS (lr 3) wins from ~5 epochs of thousands of crops,
#    but its first large steps shake the pretrained weights (benchmarks/README.md, "Recipe knobs"); and 64 px
#    over the preset's 96: an epoch costs less than half as much, and 96 pays only in a long run.
run bengali-kit train --preset cpu-real --init weights/synth-b0-96.pt --data "$D/real/train" \
    --val-data "$D/real/val" --cache-dir "$D/cache" --out "$D/real_run" --epochs "$EPOCHS" --overwrite \
    --optimizer adamw --lr 2e-3 --weight-decay 0.01 --size 64
run bengali-kit evaluate --data "$D/real/val" --checkpoint "$D/real_run/best.pt" --worst 5

# 2. The pipeline on synthetic competition files (the same starting point, fine-tuned on rendered images).
[ -f "$D/data/train.csv" ] || run bengali-kit synth "$D/data" --train-rows 4000 --test-rows 120 --seed 0 --files 2
run bengali-kit preprocess "$D/data" --size 64 --out "$D/cache"
if [ -f "$D/run/last.pt" ]; then resume=--resume; else resume=--overwrite; fi
run bengali-kit train --preset cpu-real --init weights/synth-b0-96.pt --data "$D/data" --cache-dir "$D/cache" \
    --out "$D/run" --epochs "$EPOCHS" --size 64 $resume
run bengali-kit evaluate --data "$D/data" --checkpoint "$D/run/best.pt" --worst 5
run bengali-kit predict --data "$D/data" --checkpoint "$D/run/best.pt" --out "$D/submission.csv" --overwrite
run bengali-kit package --checkpoint "$D/run/best.pt" --out "$D/kaggle_package" --user demo-user \
    --slug bengali-kit-demo --include-init weights/synth-b0-96.pt --overwrite --verify
echo
echo "== demo finished: the shipped model on the held-out slice (first figure above), real crops $D/real_run (curves.png), synthetic run $D/run, $D/submission.csv, $D/kaggle_package/"
