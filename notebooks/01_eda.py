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
# # Bengali.AI handwritten graphemes — exploratory data analysis
#
# Each image shows one handwritten Bengali **grapheme**, labelled with three **components**: a
# `grapheme_root` (168 classes), a `vowel_diacritic` (11) and a `consonant_diacritic` (7). The metric is
# the macro-averaged recall of each component, weighted 2:1:1.
#
# This notebook looks at the labels (how skewed the classes are), the images (intensities, where the ink
# is) and the crop/resize that turns a 137×236 scan into the model's square input.
#
# **Data.** With `DATA_DIR = None` a small synthetic competition folder (fonts rendered to look
# handwritten, the real label frequencies) is generated under `WORK_DIR`, so the notebook runs anywhere in a
# minute. On Kaggle, attach the competition data and set `DATA_DIR = "/kaggle/input/bengaliai-cv19"`
# (and raise `N_SAMPLE`, e.g. to 5000).
#
# **On Kaggle** the kit is not preinstalled: attach the dataset built by `bengali-kit package` (it holds the
# kit's wheels) and run `!pip install --no-index --no-deps --find-links /kaggle/input/<its-slug>/wheels
# bengali_kit efficientnet_pytorch` in a first cell.

# %% tags=["parameters"]
import os

DATA_DIR = os.environ.get("BENGALI_KIT_NB_DATA") or None  # competition folder; None -> synthetic
WORK_DIR = os.environ.get("BENGALI_KIT_NB_WORK", "work")  # synthetic data and outputs go here
N_SAMPLE = 600  # images read for the image statistics and example grids
IMAGE_SIZE = 64  # side of the preprocessed square images
SYNTH_TRAIN_ROWS = 600  # size of the synthetic folder (ignored with DATA_DIR)
SYNTH_TEST_ROWS = 48
SEED = 0

# %%
# %matplotlib inline
import numpy as np

from bengali_kit import plots
from bengali_kit.components import COMPONENTS, N_CLASSES, load_class_map
from bengali_kit.data import image_parquets, read_train_csv
from bengali_kit.notebook_utils import prepare_data, sample_images
from bengali_kit.preprocess import CropParams, crop_resize_batch

data_dir = prepare_data(DATA_DIR, WORK_DIR, SYNTH_TRAIN_ROWS, SYNTH_TEST_ROWS, seed=SEED)
print("data:", data_dir)
for p in sorted(data_dir.iterdir()):
    if p.is_file():
        print(f"  {p.name:<32} {p.stat().st_size / 1e6:9.2f} MB")

# %% [markdown]
# ## Labels
#
# `train.csv` has one row per image: its id, the three labels and the grapheme as text.

# %%
train = read_train_csv(data_dir / "train.csv")
print(f"{len(train)} labelled images in {len(image_parquets(data_dir, 'train'))} train parquet(s)")
train.head()

# %% [markdown]
# ### Class counts per component
#
# The roots have a long tail: a few roots are in thousands of images, the rarest in a few dozen (in the
# real data ~5,700 vs ~60). Macro recall weighs every class alike, so the rare roots matter as much as
# the common ones — a reason for stratified splits and for watching per-class recall.

# %%
plots.plot_class_counts(train);

# %%
for comp, n in zip(COMPONENTS, N_CLASSES):
    counts = np.bincount(train[comp], minlength=n)
    print(f"{comp:<20} {int((counts > 0).sum()):>3}/{n} classes present; images per class: "
          f"max {counts.max()}, median {int(np.median(counts))}, min {counts.min()}")

# %% [markdown]
# ### The most and least common graphemes
#
# A grapheme is a (root, vowel, consonant) triple. The labels are shown as text shaped by Pillow (raqm),
# since matplotlib cannot join Bengali conjuncts.

# %%
plots.plot_top_graphemes(train, n=10);

# %% [markdown]
# ### What each component looks like
#
# One row per class (the most frequent ones in the sample): the component as text, then images that
# contain it. Vowel and consonant diacritics attach to many different roots, and the same root looks
# different under different diacritics.

# %%
ids, images, labels = sample_images(data_dir, "train", N_SAMPLE)
print(f"sample: {len(ids)} images of {images.shape[1]}x{images.shape[2]} px")
class_map = load_class_map(data_dir / "class_map.csv")

# %%
plots.plot_component_samples(images, labels, "grapheme_root", max_classes=6, n_per_class=6);

# %%
plots.plot_component_samples(images, labels, "vowel_diacritic", max_classes=11, n_per_class=6);

# %%
plots.plot_component_samples(images, labels, "consonant_diacritic", max_classes=7, n_per_class=6);

# %% [markdown]
# ## Image intensities
#
# Images are stored as uint8, dark ink (near 0) on light paper (near 255). Most pixels are paper; the ink
# covers a small fraction of each image and does not sit in the same place, so the images must be
# cropped to the ink before they are resized.

# %%
plots.plot_intensity(images);

# %%
ink = (images.reshape(len(images), -1) < 128).mean(axis=1)
print(f"pixel mean {images.mean():.1f}, ink fraction: mean {ink.mean():.3f}, "
      f"min {ink.min():.4f}, max {ink.max():.3f}")

# %% [markdown]
# ## Crop and resize
#
# The kit's crop/resize (after Iafoss's public kernel): invert so ink is bright on black, scale the
# brightest pixel to 255, take the bounding box of pixels above 80 ignoring a 5 px frame, widen it, drop
# faint noise, pad to a square and resize. Images without ink become all zeros and are counted as blank.

# %%
params = CropParams()
print(params)
crops, n_blank = crop_resize_batch(images, size=IMAGE_SIZE, **params.asdict())
print(f"{len(crops)} images -> {crops.shape[1]}x{crops.shape[2]}, blank images found: {n_blank}")

# %%
plots.plot_crop_examples(images, crops, captions=list(ids), n=8);

# %% [markdown]
# The same crops with their graphemes (shown dark on light):

# %%
texts = [class_map.compose(*map(int, t)) for t in labels[list(COMPONENTS)].to_numpy()[:16]]
plots.plot_labelled_images(crops[:16], texts, captions=list(ids[:16]), ncols=8, ink_bright=True);

# %% [markdown]
# These crops are what `02_train` trains on: it preprocesses the whole train set once into a uint8 `.npy`
# cache and reads batches from it.
