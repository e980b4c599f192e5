"""Named sets of training settings (``bengali-kit train --preset NAME``); options typed on the command line win.

- ``cpu-pretrain``: pretraining on the on-the-fly synthetic stream on a CPU (efficientnet-b0 at 64 px), the
  first stage of ``weights/synth-b0-96.pt`` (its second continues at 96 px with labels uniform over all valid
  triples: weights/README.md); give it a ``--time-budget`` and ``--val-data`` of real crops to watch.
- ``cpu-real``: fine-tuning on real crops on a CPU from ``--init weights/synth-b0-96.pt``: b0 at 96 px, LARS
  one-cycle, and a quarter of every epoch rendered on the fly from all valid triples (``synthetic_mix`` with
  uniform labels, three quarters of them graphemes absent from the real data), which keeps the pretraining's
  reading of unseen graphemes alive (benchmarks/README.md, "Unseen graphemes at 45 per triple"); its
  checkpoints carry the class-prior correction k 0.5 (``prior_power``), which validation scores with too. Give
  it ``--time-budget 3500``: the recipe within 60 minutes of a 2-core CPU, the schedule following the clock.
- ``kaggle``: the real competition data on a Kaggle T4 (a P100 falls back to the CPU, README): efficientnet-b3
  at 128 px, batch 128, 40 epochs of AdamW one-cycle, GeM, label smoothing, cutmix, an EMA of the weights,
  and the same rendered quarter and k 0.5 as ``cpu-real`` (Bengali fonts needed: docs/kaggle.md).
- ``kaggle-pretrain``: the optional first stage of ``kaggle``: the same model on the synthetic stream (no data
  folder needed), labels uniform over all valid triples like the rendered quarter (the pretraining that lifted
  unseen graphemes most on the CPU: benchmarks/README.md, "The pretraining lever"); then ``--preset kaggle
  --init <that run>/last.pt``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "preset_values"]

# rendered labels uniform over the 4,933 valid triples (3,641 of them, 74 %, absent from the real data)
_UNIFORM_LABELS: dict[str, Any] = {"stream_alpha": 0.0, "stream_novel_fraction": 0.74}

# a quarter of each fine-tuning epoch rendered on the fly with those labels: the lever that lifts unseen
# graphemes (benchmarks/README.md)
_RENDERED_QUARTER: dict[str, Any] = {"synthetic_mix": 0.25, **_UNIFORM_LABELS}

# the class-prior correction k 0.5, carried by the checkpoints: chosen on split seed 0 with the unseen triples
# scored over their own labels, it lifts seen and unseen triples alike (benchmarks/README.md)
_PRIOR_HALF: dict[str, Any] = {"prior_power": 0.5}

_KAGGLE: dict[str, Any] = {
    "model": "efficientnet-b3", "image_size": 128, "pooling": "gem", "batch_size": 128, "epochs": 40,
    "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-2, "schedule": "onecycle", "warmup": 0.05,
    "label_smoothing": 0.1, "cutmix_p": 0.5, "mixup_p": 0.0, "mix_alpha": 1.0,
    "affine_degrees": 8.0, "affine_scale": (0.9, 1.1), "affine_translate": 0.06, "affine_shear": 8.0,
    "val_fraction": 0.05, "num_workers": 4, "amp": True, "channels_last": True, "ema_decay": 0.999,
}

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-pretrain": {"synthetic_stream": True, "model": "efficientnet-b0", "image_size": 64, "pooling": "gem",
                     "batch_size": 64, "epochs": 1000, "steps_per_epoch": 250, "optimizer": "adamw", "lr": 2e-3,
                     "weight_decay": 1e-2, "schedule": "cosine", "warmup": 0.02, "label_smoothing": 0.1,
                     "cutmix_p": 0.0, "affine_degrees": 5.0, "affine_translate": 0.04, "affine_shear": 5.0,
                     "ema_decay": 0.999, "num_workers": 1},
    # LARS at lr 3 (trust 0.001) beat AdamW 2e-3 on the 5-per-triple split: benchmarks/README.md, "Recipe knobs"
    "cpu-real": {"model": "efficientnet-b0", "image_size": 96, "pooling": "gem", "batch_size": 64, "epochs": 30,
                 "optimizer": "lars", "lr": 3.0, "weight_decay": 1e-4, "schedule": "onecycle", "warmup": 0.1,
                 "label_smoothing": 0.1, "cutmix_p": 0.0, "affine_degrees": 11.0, "affine_scale": (0.85, 1.15),
                 "affine_translate": 0.1, "affine_shear": 8.0, "ema_decay": 0.99, **_RENDERED_QUARTER,
                 **_PRIOR_HALF},
    "kaggle": {**_KAGGLE, **_RENDERED_QUARTER, **_PRIOR_HALF},
    "kaggle-pretrain": {**_KAGGLE, "synthetic_stream": True, "steps_per_epoch": 2000, "epochs": 6,
                        "cutmix_p": 0.0, "val_fraction": 0.05, **_UNIFORM_LABELS},
}


def preset_values(name: str | None) -> dict[str, Any]:
    """The settings of preset ``name`` (empty for None); ValueError naming the choices for an unknown one."""
    if not name:
        return {}
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
