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
# 1. preprocess the train images once into a uint8 cache (crop to the ink, pad square, resize);
# 2. describe the run with a `TrainConfig` and call `train(cfg)`: stratified split, augmentation
#    (affine + cutmix) on the device, one-cycle schedule, checkpoints, `history.csv`;
# 3. look at the curves, the per-class recall and the classes the model gets wrong.
#
# **Data.** With `DATA_DIR = None` a small synthetic folder is generated under `WORK_DIR` and the run is a
# tiny CPU demo (a minute; the scores mean little). On Kaggle, attach the competition data, turn the GPU on
# and set e.g. `DATA_DIR = "/kaggle/input/bengaliai-cv19"`, `IMAGE_SIZE = 128`, `EPOCHS = 30`,
# `BATCH_SIZE = 256`, `PREPROCESS_WORKERS = None`.
#
# **On Kaggle** the kit is not preinstalled: attach the dataset built by `bengali-kit package` (it holds the
# kit's wheels) and run `!pip install --no-index --no-deps --find-links /kaggle/input/<its-slug>/wheels
# bengali_kit efficientnet_pytorch` in a first cell.

# %% tags=["parameters"]
import os

DATA_DIR = os.environ.get("BENGALI_KIT_NB_DATA") or None  # competition folder; None -> synthetic
WORK_DIR = os.environ.get("BENGALI_KIT_NB_WORK", "work")  # cache and run folder go here
RUN_NAME = "run"  # the run folder is WORK_DIR/RUN_NAME (03_inference looks there for best.pt)
IMAGE_SIZE = 32  # a multiple of 32; 128 on the real data
MODEL = "efficientnet-b0"
EPOCHS = 4
BATCH_SIZE = 32
MAX_STEPS = None  # cap on steps per epoch (None: whole epochs)
LR = 3e-3
DEVICE = "auto"  # auto: CUDA when available
PREPROCESS_WORKERS = 1  # processes for the crop/resize cache (None: all cores)
SYNTH_TRAIN_ROWS = 600  # size of the synthetic folder (ignored with DATA_DIR)
SYNTH_TEST_ROWS = 48
SEED = 0

# %%
# %matplotlib inline
from pathlib import Path

import numpy as np
import pandas as pd

from bengali_kit import plots
from bengali_kit.components import load_class_map
from bengali_kit.notebook_utils import prepare_data
from bengali_kit.preprocess import build_cache, load_cache
from bengali_kit.train import TrainConfig, train

data_dir = prepare_data(DATA_DIR, WORK_DIR, SYNTH_TRAIN_ROWS, SYNTH_TEST_ROWS, seed=SEED)
work_dir = Path(WORK_DIR)
cache_dir, run_dir = work_dir / "cache", work_dir / RUN_NAME
print("data:", data_dir)

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
# Every knob is a `TrainConfig` field (the same fields are the options of `bengali-kit train`). The split is
# stratified by root; `best.pt` is the epoch with the best validation weighted recall.

# %%
cfg = TrainConfig(data_dir=str(data_dir), out_dir=str(run_dir), cache_dir=str(cache_dir),
                  image_size=IMAGE_SIZE, model=MODEL, epochs=EPOCHS, batch_size=BATCH_SIZE,
                  max_steps=MAX_STEPS, lr=LR, device=DEVICE, seed=SEED, overwrite=True,
                  preprocess_workers=PREPROCESS_WORKERS)
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
# `infer.evaluate` scores `best.pt` on the same validation split the training used (recorded in the
# checkpoint), streaming the parquets through the inference path. Below: validation images of the roots with
# the lowest recall, each titled *true root → predicted root*, green when right and red when wrong.

# %%
from bengali_kit.infer import evaluate

result = evaluate(data_dir, run_dir / "best.pt", device=DEVICE, batch_size=max(BATCH_SIZE, 64))
print(result.summary(worst=5))

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
