"""Scoring a checkpoint on labelled images: the competition metric, per class, on the run's validation images.

By default only the images the run validated on are scored: training writes their ids to ``val_ids.csv``
in the run folder, beside ``best.pt``/``last.pt``, and evaluation reads that file (it never works the split
out again). ``all_images=True`` (``--all``) scores every labelled image instead, e.g. a held-out folder or a
checkpoint without its run folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS
from .data import image_parquets, labels_array, parquet_ids, read_train_csv
from .datasets import VAL_IDS, read_val_ids
from .errors import DataError
from .metrics import component_recalls, per_class_recall
from .model import load_checkpoint
from .prediction import PredictionResult, predict_images

__all__ = ["EvaluationResult", "evaluate", "validation_ids"]


@dataclass
class EvaluationResult:
    """Scores of a checkpoint on labelled images: the competition metric and where it fails."""

    scores: dict[str, float]  # COMPONENTS + "weighted"
    per_class: pd.DataFrame  # metrics.per_class_recall
    n_images: int
    subset: str  # which images were scored, in words
    prediction: PredictionResult
    y_true: np.ndarray = field(repr=False, default=None)

    def worst_classes(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` classes (any component) with the lowest recall among those present."""
        df = self.per_class[self.per_class["support"] > 0]
        return df.sort_values(["recall", "support"], ascending=[True, False]).head(n).reset_index(drop=True)

    def summary(self, worst: int = 10) -> str:
        """The weighted recall, each component's, and the ``worst`` weakest classes, one per line."""
        s = self.scores
        lines = [f"scored {self.n_images} labelled images ({self.subset})",
                 f"  weighted recall      {s['weighted']:.4f}"]
        lines += [f"  {c:<20} {s[c]:.4f}" for c in COMPONENTS]
        if worst:
            lines.append("  worst classes (recall, support):")
            for r in self.worst_classes(worst).itertuples():
                lines.append(f"    {r.component:<20} {int(r.label):>3}  {r.recall:.3f}  {int(r.support)}")
        return "\n".join(lines)


def validation_ids(checkpoint: str | Path, labelled: set[str], labels_path: Path) -> set[str]:
    """The ids in the run's ``val_ids.csv`` beside ``checkpoint``, checked against the checkpoint and the
    labelled ids of the folder being scored. DataError (one line, naming the file, suggesting ``--all``)
    when the file is missing, belongs to another run or lists images this folder does not label."""
    checkpoint = Path(checkpoint)
    path = checkpoint.parent / VAL_IDS
    if not path.is_file():
        raise DataError(path, f"not found: evaluate scores the images the run validated on, listed in {VAL_IDS} "
                              "beside the checkpoint by `bengali-kit train`; pass --all to score every labelled image")
    ids = read_val_ids(path)
    n_val = load_checkpoint(checkpoint).get("n_val")
    if n_val is not None and int(n_val) != len(ids):
        raise DataError(path, f"lists {len(ids)} images but {checkpoint.name} was validated on {int(n_val)}: "
                              "not this checkpoint's run? (pass --all to score every labelled image)")
    real = [str(i) for i in ids if i]
    if not real:
        raise DataError(path, "the run validated on rendered images only, none of a folder; "
                              "pass --all to score every labelled image")
    missing = [i for i in real if i not in labelled]
    if missing:
        raise DataError(path, f"{len(missing)} of its {len(real)} image ids are not in {labels_path} "
                              f"(e.g. {missing[0]!r}): not the folder this run validated on? "
                              "(pass --all to score every labelled image)")
    return set(real)


def _shared_validation_ids(checkpoints: list[Path], labelled: set[str], labels_path: Path) -> set[str]:
    """The validation ids of several checkpoints, which must all have validated on the same images."""
    first = validation_ids(checkpoints[0], labelled, labels_path)
    for other in checkpoints[1:]:
        if validation_ids(other, labelled, labels_path) != first:
            raise DataError(other.parent / VAL_IDS, f"lists other validation images than "
                                                    f"{checkpoints[0].parent / VAL_IDS}: an average can only be "
                                                    "scored on images none of its models trained on; pass --all "
                                                    "to score every labelled image")
    return first


def evaluate(data_dir: str | Path, checkpoint: str | Path | Sequence[str | Path], all_images: bool = False,
             batch_size: int = 256, device: str = "auto", tta: bool = False,
             progress: bool = True) -> EvaluationResult:
    """Score ``checkpoint`` (or the average of several, as ``predict`` makes it) on the labelled images of
    ``data_dir`` (train.csv + train parquets).

    By default only the run's validation images (``val_ids.csv`` beside the checkpoint) are scored, so the
    figure is not inflated by training images; several checkpoints must share them. ``all_images=True``
    scores every labelled image.
    """
    data_dir = Path(data_dir)
    checkpoints = [Path(checkpoint)] if isinstance(checkpoint, (str, Path)) else [Path(c) for c in checkpoint]
    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint")
    labels_path = data_dir / "train.csv"
    labels_df = read_train_csv(labels_path)
    if len(labels_df) == 0:
        raise DataError(labels_path, "no labelled images")
    labelled = set(labels_df["image_id"].tolist())
    if all_images:
        keep, subset = labelled, "all labelled images"
    else:
        keep = _shared_validation_ids(checkpoints, labelled, labels_path)
        subset = f"the run's validation images, {VAL_IDS}"
    missing = keep - set(np.concatenate([parquet_ids(f) for f in image_parquets(data_dir, "train")]).tolist())
    if missing:  # checked on the id column alone, before any image is decoded
        raise DataError(labels_path, f"{len(missing)} labelled image_id(s) have no image in the "
                                     f"train parquets, e.g. {str(sorted(missing)[0])!r}")
    res = predict_images(data_dir, "train", checkpoints, batch_size=batch_size, device=device, tta=tta,
                         progress=progress, keep=keep)
    truth = labels_df.set_index("image_id").loc[res.image_ids]
    y_true = labels_array(truth.reset_index())
    scores = component_recalls(y_true, res.labels)
    return EvaluationResult(scores=scores, per_class=per_class_recall(y_true, res.labels),
                            n_images=res.n_images, subset=subset, prediction=res, y_true=y_true)
