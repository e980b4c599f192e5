# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bengali.AI — training a multi-output EfficientNet
#
# One network, three heads: an EfficientNet backbone (one input channel, GeM pooling) followed by a root
# head (168 classes), a vowel head (11) and a consonant head (7), trained with a weighted sum of the three
# cross-entropies (2:1:1, like the metric). Everything here is a call into `bengali_kit`:
#
# 1. the data: real handwritten crops imported as competition folders (`import-crops`), or your folder;
# 2. the starting point: `weights/synth-b0-96.pt`, a b0 pretrained on rendered graphemes only (no real
#    image seen), shipped with the kit — from it a few CPU epochs already read real handwriting;
# 3. describe the run with a `TrainConfig` (here the `cpu-real` preset: what you set wins) and call
#    `train(cfg)`: augmentation on the device, one-cycle schedule, an EMA of the weights, checkpoints, and a
#    quarter of every epoch rendered on the fly from all valid graphemes (`SYNTHETIC_MIX`), so that the model
#    keeps reading graphemes the real crops never show (Kaggle's private test set has about 900);
# 4. look at the curves, the per-class recall and the classes the model gets wrong.
#
# **Data.** With `DATA_DIR = None` the notebook imports `REAL_LIMIT` real crops (whole triples, 4 train /
# 1 validation each) from `../shared/reference/real_sample_64.npz` beside a checkout, else from the 300 crops
# vendored in `tests/data/`. On Kaggle, attach the competition data, turn the GPU on and set e.g.
# `DATA_DIR = "/kaggle/input/bengaliai-cv19"`, `IMAGE_SIZE = 128`, `EPOCHS = 30`, `BATCH_SIZE = 256`,
# `PRESET = "kaggle"`, `INIT = None`, `PREPROCESS_WORKERS = None`; rendering needs Bengali fonts there
# (docs/kaggle.md, last section), else set `SYNTHETIC_MIX = 0`.
#
# **On Kaggle** the kit is not preinstalled: attach the dataset built by `bengali-kit package` (it holds the
# kit's wheels, and with `--include-init weights/synth-b0-96.pt` the starting point under `init/`) and run
# `!pip install --no-index --no-deps --find-links /kaggle/input/<its-slug>/wheels bengali_kit efficientnet_pytorch`
# in a first cell.

# %% tags=["parameters"]
import os

DATA_DIR = os.environ.get("BENGALI_KIT_NB_DATA") or None  # competition folder; None -> real crops
REAL_NPZ = os.environ.get("BENGALI_KIT_NB_REAL") or None  # real crops; None -> the sample beside the checkout
REAL_LIMIT = int(os.environ.get("BENGALI_KIT_NB_REAL_LIMIT", "600"))  # crops imported (whole triples)
INIT = "auto"  # starting weights: "auto" -> weights/synth-b0-96.pt; None -> from scratch
WORK_DIR = os.environ.get("BENGALI_KIT_NB_WORK", "work")  # cache and run folder go here
RUN_NAME = "run"  # the run folder is WORK_DIR/RUN_NAME (03_inference looks there for best.pt)
PRESET = "cpu-real"  # named settings (bengali_kit.presets); the values below win over it
IMAGE_SIZE = 64  # a multiple of 32; the fine-tune is short, so the small size (the shipped real model reads 96)
EPOCHS = int(os.environ.get("BENGALI_KIT_NB_EPOCHS", "4"))
# A few dozen steps: AdamW. The preset's LARS (lr 3) wins a full fine-tune but its large steps first shake the
# pretrained weights, so a short one does better with AdamW (benchmarks/README.md, knob table). None takes the
# preset's values.
OPTIMIZER, LR, WEIGHT_DECAY = "adamw", 2e-3, 0.01
BATCH_SIZE = 64
MAX_STEPS = None  # cap on steps per epoch (None: whole epochs)
SYNTHETIC_MIX = None  # share of each epoch rendered on the fly (None: the preset's, 0.25; 0: real images only)
DEVICE = "auto"  # auto: a GPU this torch can run on, else the CPU
PREPROCESS_WORKERS = 1  # threads for the crop/resize cache (None: all cores)
SEED = 0

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
import pandas as pd

from bengali_kit import plots
from bengali_kit.components import load_class_map
from bengali_kit.notebook_utils import find_file
from bengali_kit.preprocess import build_cache, folder_cache_dir, load_cache
from bengali_kit.realdata import import_crops
from bengali_kit.train import TrainConfig, train

work_dir = Path(WORK_DIR)
cache_dir, run_dir = work_dir / "cache", work_dir / RUN_NAME
if DATA_DIR is None:  # real crops -> work/real/train and work/real/val (competition folders)
    npz = Path(REAL_NPZ) if REAL_NPZ else find_file("../shared/reference/real_sample_64.npz",
                                                     "tests/data/real_slice_64.npz")
    report = import_crops(npz, work_dir / f"real_{REAL_LIMIT}", limit=REAL_LIMIT, files=1, overwrite=True)
    data_dir, val_dir = report.train_dir, report.val_dir
    print(f"{report.n_train} train + {report.n_val} validation real crops of {report.n_triples} triples from {npz}")
else:
    data_dir, val_dir = Path(DATA_DIR), None
init = find_file("weights/synth-b0-96.pt") if INIT == "auto" else INIT
print("data:", data_dir, "| validation:", val_dir or "a stratified split of the data", "| init:", init)

# %% [markdown]
# ## Preprocess once
#
# Decoding the parquets and cropping every image takes longer than an epoch on a GPU, so it is done once:
# `build_cache` writes `train_<size>.npy` (uint8, N×S×S) and its ids, and reuses them while the parquets and
# the crop parameters are unchanged. Training reads batches from this file through a memory map.

# %%
info = build_cache(data_dir, "train", size=IMAGE_SIZE, out_dir=cache_dir, workers=PREPROCESS_WORKERS)
print(f"{info.n_images} images -> {info.images_path} ({'reused' if info.reused else f'{info.seconds:.1f} s'}), "
      f"blank images: {info.n_blank}")
cache, cache_ids = load_cache(cache_dir, "train", IMAGE_SIZE)
plots.plot_labelled_images(cache[:16], captions=list(cache_ids[:16]), ncols=8, ink_bright=True,
                           title=f"cached model inputs, {IMAGE_SIZE}x{IMAGE_SIZE} (shown dark on light)");

# %% [markdown]
# ## The run
#
# Every knob is a `TrainConfig` field (the same fields are the options of `bengali-kit train`);
# `TrainConfig.from_preset` fills what you leave open from the preset. `best.pt` is the epoch with the best
# validation weighted recall; with an EMA it holds the averaged weights.

# %%
cfg = TrainConfig.from_preset(PRESET, data_dir=str(data_dir), val_data_dir=str(val_dir) if val_dir else None,
                              out_dir=str(run_dir), cache_dir=str(cache_dir), init=str(init) if init else None,
                              image_size=IMAGE_SIZE, epochs=EPOCHS, batch_size=BATCH_SIZE, max_steps=MAX_STEPS,
                              device=DEVICE, seed=SEED, overwrite=True, preprocess_workers=PREPROCESS_WORKERS,
                              **{k: v for k, v in (("optimizer", OPTIMIZER), ("lr", LR), ("weight_decay", WEIGHT_DECAY),
                                                   ("synthetic_mix", SYNTHETIC_MIX)) if v is not None})
pd.DataFrame({"value": {k: str(v) for k, v in cfg.to_dict().items()}}).T

# %%
run_dir = train(cfg)
print(sorted(p.name for p in run_dir.iterdir()))

# %% [markdown]
# ## Curves
#
# `history.csv` has one row per epoch: train and validation loss, validation recall (weighted and per
# component), learning rate and time.

# %%
history = pd.read_csv(run_dir / "history.csv")
history

# %%
plots.plot_history(history);

# %% [markdown]
# ## Per-class recall
#
# Macro recall averages over classes, so a few classes with low recall pull the score down as much as many
# good ones lift it. `val_per_class.csv` (written with `best.pt`) has the recall and support of every class
# on the validation split; bars are darker for classes with more validation images.

# %%
per_class = pd.read_csv(run_dir / "val_per_class.csv")
plots.plot_per_class_recall(per_class);

# %%
plots.plot_worst_classes(per_class, n=15, component="grapheme_root");

# %% [markdown]
# ## The worst classes, as images
#
# `evaluation.evaluate` scores `best.pt` on the validation images the training used (`val_ids.csv` in the
# run folder), streaming the parquets through the inference path. Below: validation images of the roots with
# the lowest recall, each titled *true root → predicted root*, green when right and red when wrong.

# %%
from bengali_kit.evaluation import evaluate

result = evaluate(val_dir or data_dir, run_dir / "best.pt", device=DEVICE, batch_size=max(BATCH_SIZE, 64))
print(result.summary(worst=5))
if val_dir is not None:  # validation images come from the val folder's cache
    cache, cache_ids = load_cache(folder_cache_dir(cache_dir, val_dir, IMAGE_SIZE), "train", IMAGE_SIZE)

# %%
class_map = load_class_map(data_dir / "class_map.csv")
worst = result.worst_classes(len(result.per_class))
worst_roots = worst[worst.component == "grapheme_root"].label.head(6).tolist()
row_of = pd.Series(np.arange(len(cache_ids)), index=cache_ids)
picks = [i for r in worst_roots for i in np.flatnonzero(result.y_true[:, 0] == r)[:4]]
true_r, pred_r = result.y_true[picks, 0], result.prediction.labels[picks, 0]
plots.plot_labelled_images(
    cache[row_of[result.prediction.image_ids[picks]].to_numpy()],
    texts=[f"{class_map.roots[t]} → {class_map.roots[p]}" for t, p in zip(true_r, pred_r)],
    captions=[f"root {t} → {p}" for t, p in zip(true_r, pred_r)],
    colors=["green" if t == p else "red" for t, p in zip(true_r, pred_r)],
    ncols=8, ink_bright=True, title="validation images of the worst roots: true → predicted");

# %% [markdown]
# `03_inference` loads `WORK_DIR/run/best.pt`, predicts the test images and writes `submission.csv`; for an
# offline Kaggle submission, `bengali-kit package` bundles the checkpoint with the kit's wheels and kernel.
