"""The submission file: ``row_id,target`` in test.csv's order, each row filled by its own image and component.

Rows are filled by looking up each test.csv row's ``image_id`` and ``component``, never by position, so
the row order and the component of every prediction are those of test.csv.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS
from .data import data_files, read_test_csv
from .errors import DataError
from .files import atomic_path, check_output_file
from .prediction import PredictionResult, predict

__all__ = ["make_submission", "write_submission", "predict_to_submission"]


def make_submission(test_df: pd.DataFrame, image_ids: Sequence[str], labels: np.ndarray,
                    source: str | Path = "test.csv") -> pd.DataFrame:
    """The submission for ``test_df`` (test.csv): ``row_id, target`` in test.csv's row order.

    ``labels[i]`` are the (root, vowel, consonant) predictions of ``image_ids[i]``. Each row's target is
    picked by that row's ``image_id`` and ``component`` columns, never by position. ``source``: the
    test.csv path that errors name.
    """
    labels = np.asarray(labels)
    ids = np.asarray(image_ids).astype(str)
    if labels.ndim != 2 or labels.shape != (len(ids), len(COMPONENTS)):
        raise ValueError(f"labels must have shape ({len(ids)}, 3), got {labels.shape}")
    for col in ("row_id", "image_id", "component"):
        if col not in test_df.columns:
            raise DataError(source, f"missing column {col!r}")
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    if pos.index.has_duplicates:
        raise ValueError("image_ids has duplicates")
    rows = pos.reindex(test_df["image_id"].astype(str).to_numpy())
    if rows.isna().any():
        missing = test_df["image_id"].to_numpy()[rows.isna().to_numpy()]
        raise DataError(source, f"{len(set(missing))} image_id(s) of test.csv have no image in the "
                                f"test parquets, e.g. {str(missing[0])!r}")
    comp_index = {c: j for j, c in enumerate(COMPONENTS)}
    comps = test_df["component"].map(comp_index)
    if comps.isna().any():
        bad = test_df["component"][comps.isna()].iloc[0]
        raise DataError(source, f"unknown component {bad!r}")
    target = labels[rows.to_numpy(dtype=np.int64), comps.to_numpy(dtype=np.int64)]
    return pd.DataFrame({"row_id": test_df["row_id"].astype(str).to_numpy(), "target": target.astype(np.int64)})


def write_submission(df: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``row_id,target`` to ``path`` atomically; DataError for an existing file (unless ``overwrite``)
    or a path that cannot be written (read-only folder, a parent that is a file, a full disk)."""
    if list(df.columns) != ["row_id", "target"]:
        raise ValueError(f"submission columns must be ['row_id', 'target'], got {list(df.columns)}")
    path = check_output_file(path, overwrite=overwrite)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def predict_to_submission(data_dir: str | Path, checkpoints: Sequence[str | Path] | str | Path,
                          out: str | Path, batch_size: int = 256, device: str = "auto", tta: bool = False,
                          overwrite: bool = False, progress: bool = True,
                          prior_power: float | None = None) -> tuple[PredictionResult, pd.DataFrame]:
    """test.csv + test parquets -> ``out`` (submission.csv). Bad inputs, and an output path that cannot be
    written, fail before any prediction; so does an ``out`` that is one of the inputs (``overwrite`` or not).
    ``prior_power``: the class-prior correction k (None: the one the checkpoints carry, as the kernel does)."""
    data_dir, out = Path(data_dir), Path(out)
    ckpts = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    check_output_file(out, overwrite=overwrite, inputs=[*data_files(data_dir), *ckpts])
    test_df = read_test_csv(data_dir / "test.csv")
    result = predict(data_dir, checkpoints, batch_size=batch_size, device=device, tta=tta, progress=progress,
                     prior_power=prior_power)
    sub = make_submission(test_df, result.image_ids, result.labels, source=data_dir / "test.csv")
    write_submission(sub, out, overwrite=overwrite)
    return result, sub
