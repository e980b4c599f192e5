"""Scoring a checkpoint on labelled images: the competition metric, per class, on the run's validation images.

By default only the images the run validated on are scored: training writes their ids to ``val_ids.csv``
in the run folder, beside ``best.pt``/``last.pt``, and evaluation reads that file (it never works the split
out again). ``all_images=True`` (``--all``) scores every labelled image instead, e.g. a held-out folder or a
checkpoint without its run folder. ``also`` scores every labelled image of more folders beside it (e.g.
import-crops' ``unseen/`` beside ``val/``), each reported alone and all together; a folder that lacks some
classes is also scored over its own labels (``metrics.present_label_recalls``), the figure to compare with a
folder that holds them all.

When the checkpoint records its training triples and the scored images hold triples both in and not in
that set, the unseen-image detector is scored too: how well a novelty score tells the images of unseen
triples from the seen ones (AUROC). ``sweep_prior_power`` re-scores kept probabilities at other
class-prior corrections without running the network again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS, SHORT_NAMES
from .data import image_parquets, labels_array, parquet_ids, read_train_csv
from .datasets import VAL_IDS, read_val_ids
from .errors import DataError
from .metrics import auroc, component_recalls, per_class_recall, present_label_recalls
from .model import load_checkpoint
from .prediction import PredictionResult, predict_images
from .priors import checkpoint_triples, confidence_novelty, in_triples, prior_corrected_labels

__all__ = ["EvaluationResult", "evaluate", "validation_ids", "detector_scores", "sweep_prior_power"]


@dataclass
class EvaluationResult:
    """Scores of a checkpoint on labelled images: the competition metric and where it fails."""

    scores: dict[str, float]  # COMPONENTS + "weighted"
    per_class: pd.DataFrame  # metrics.per_class_recall
    n_images: int
    subset: str  # which images were scored, in words
    prediction: PredictionResult
    y_true: np.ndarray = field(repr=False, default=None)
    # several folders: each one's n_images, scores and present_scores (over the labels the folder holds)
    folders: dict[str, dict] = field(default_factory=dict)
    detector: dict[str, float] | None = None  # detector_scores, where it applies

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
        for folder, part in self.folders.items():
            fs = part["scores"]
            lines.append(f"  {folder}: weighted {fs['weighted']:.4f} (" + ", ".join(
                f"{SHORT_NAMES[c]} {fs[c]:.4f}" for c in COMPONENTS) + f"), {part['n_images']} images")
            own = part["present_scores"]
            if own != fs:  # the folder lacks classes the model predicted there: each counted a zero above
                lines.append(f"    over its own labels: weighted {own['weighted']:.4f} (" + ", ".join(
                    f"{SHORT_NAMES[c]} {own[c]:.4f}" for c in COMPONENTS) + ")")
        if self.detector:
            d = self.detector
            lines.append(f"  unseen-triple detector AUROC: confidence {d['auroc_confidence']:.3f}, predicted "
                         f"triple not trained on {d['auroc_predicted_triple']:.3f} ({d['n_unseen']} unseen, "
                         f"{d['n_seen']} seen images)")
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


def detector_scores(probabilities: dict[str, np.ndarray], labels: np.ndarray, y_true: np.ndarray,
                    train_triples: np.ndarray) -> dict[str, float] | None:
    """AUROC of telling images of triples outside ``train_triples`` from the others, by two novelty scores.

    ``auroc_confidence``: 1 - the product of the heads' largest probabilities; ``auroc_predicted_triple``:
    whether the predicted triple (``labels``) is outside the training triples. None unless ``y_true``
    holds both seen and unseen triples.
    """
    unseen = ~in_triples(y_true, train_triples)
    if unseen.all() or not unseen.any():
        return None
    return {"auroc_confidence": auroc(confidence_novelty(probabilities), unseen),
            "auroc_predicted_triple": auroc(~in_triples(labels, train_triples), unseen),
            "n_seen": int((~unseen).sum()), "n_unseen": int(unseen.sum())}


def sweep_prior_power(probabilities: dict[str, np.ndarray], y_true: np.ndarray, class_prior: Sequence[np.ndarray],
                      powers: Sequence[float], present_only: bool = False) -> dict[float, float]:
    """The weighted recall at each class-prior correction k in ``powers``, from kept probabilities.

    ``class_prior``: each head's log class frequency (``PredictionResult.class_prior``, or
    ``priors.log_prior(ckpt["class_counts"])``); the network is not run again. ``present_only``: over the
    labels ``y_true`` holds (``metrics.present_label_recalls``).
    """
    score = present_label_recalls if present_only else component_recalls
    return {float(k): score(y_true, prior_corrected_labels(probabilities, class_prior, float(k)))["weighted"]
            for k in powers}


def _training_triples(checkpoints: list[Path]) -> np.ndarray | None:
    """The union of the checkpoints' training triples; None unless every one records them."""
    found = [checkpoint_triples(load_checkpoint(c), c) for c in checkpoints]
    if any(t is None for t in found):
        return None
    return np.unique(np.concatenate(found), axis=0)


def _labelled_folder(data_dir: Path) -> tuple[pd.DataFrame, Path]:
    """train.csv of ``data_dir`` and its path; DataError when it labels no image."""
    labels_path = data_dir / "train.csv"
    labels_df = read_train_csv(labels_path)
    if len(labels_df) == 0:
        raise DataError(labels_path, "no labelled images")
    return labels_df, labels_path


def _check_images(data_dir: Path, keep: set[str], labels_path: Path) -> None:
    """Every id to score has an image: checked on the id column alone, before any image is decoded."""
    missing = keep - set(np.concatenate([parquet_ids(f) for f in image_parquets(data_dir, "train")]).tolist())
    if missing:
        raise DataError(labels_path, f"{len(missing)} labelled image_id(s) have no image in the "
                                     f"train parquets, e.g. {str(sorted(missing)[0])!r}")


def _concat(results: list[PredictionResult]) -> PredictionResult:
    """The predictions of several folders as one (ids may repeat across folders)."""
    first = results[0]
    if len(results) == 1:
        return first
    return PredictionResult(
        image_ids=np.concatenate([r.image_ids for r in results]),
        probabilities={c: np.concatenate([r.probabilities[c] for r in results]) for c in COMPONENTS},
        labels=np.concatenate([r.labels for r in results]), seconds=sum(r.seconds for r in results),
        device=first.device, n_models=first.n_models, tta=first.tta, n_blank=sum(r.n_blank for r in results),
        prior_power=first.prior_power, class_prior=first.class_prior)


def evaluate(data_dir: str | Path, checkpoint: str | Path | Sequence[str | Path], all_images: bool = False,
             batch_size: int = 256, device: str = "auto", tta: bool = False, progress: bool = True,
             prior_power: float | None = None, also: Sequence[str | Path] = ()) -> EvaluationResult:
    """Score ``checkpoint`` (or the average of several, as ``predict`` makes it) on the labelled images of
    ``data_dir`` (train.csv + train parquets).

    By default only the run's validation images (``val_ids.csv`` beside the checkpoint) are scored, so the
    figure is not inflated by training images; several checkpoints must share them. ``all_images=True``
    scores every labelled image. ``also``: more folders whose every labelled image is scored too, each
    reported alone (``folders``) and all together. ``prior_power``: the class-prior correction k (None: the
    checkpoints'). ``detector`` is set where it applies (``detector_scores``).
    """
    checkpoints = [Path(checkpoint)] if isinstance(checkpoint, (str, Path)) else [Path(c) for c in checkpoint]
    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint")
    folders = [Path(data_dir), *(Path(f) for f in also)]
    plans = []  # every folder is checked before the first (slow) prediction
    for i, folder in enumerate(folders):
        labels_df, labels_path = _labelled_folder(folder)
        labelled = set(labels_df["image_id"].tolist())
        keep = labelled if all_images or i > 0 else _shared_validation_ids(checkpoints, labelled, labels_path)
        _check_images(folder, keep, labels_path)
        plans.append((folder, labels_df, keep))
    results, truths, parts = [], [], {}
    for folder, labels_df, keep in plans:
        res = predict_images(folder, "train", checkpoints, batch_size=batch_size, device=device, tta=tta,
                             progress=progress, keep=keep, prior_power=prior_power)
        y = labels_array(labels_df.set_index("image_id").loc[res.image_ids].reset_index())
        results.append(res)
        truths.append(y)
        parts[str(folder)] = {"n_images": int(res.n_images), "scores": component_recalls(y, res.labels),
                              "present_scores": present_label_recalls(y, res.labels)}
    res, y_true = _concat(results), np.concatenate(truths)
    subset = "all labelled images" if all_images else f"the run's validation images, {VAL_IDS}"
    if also:
        subset += f", and all labelled images of {len(also)} more folder(s)"
    triples = _training_triples(checkpoints)
    detector = detector_scores(res.probabilities, res.labels, y_true, triples) if triples is not None else None
    return EvaluationResult(scores=component_recalls(y_true, res.labels),
                            per_class=per_class_recall(y_true, res.labels), n_images=res.n_images, subset=subset,
                            prediction=res, y_true=y_true, folders=parts if also else {}, detector=detector)
