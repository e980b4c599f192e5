"""``03_inference`` on a fake Kaggle machine: it finds the competition data and the package with the kernel's
search (newer layout), predicts with the package's checkpoints, writes the submission into the working folder,
and only warns when the rows differ from sample_submission.csv (Kaggle's rerun replaces test.csv)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from bengali_kit.kaggle import build_package
from bengali_kit.model import ModelConfig, build_model, save_checkpoint
from bengali_kit.synthetic import write_competition_folder

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _with_parameters(source: str, **values: str) -> str:
    for name, value in values.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, count=1, flags=re.MULTILINE)
        assert n == 1, f"no parameter {name} in the notebook"
    return source


def test_inference_notebook_on_a_fake_kaggle_input(tmp_path):
    kin = tmp_path / "input"
    comp = write_competition_folder(kin / "competitions" / "bengaliai-cv19", train_rows=16, test_rows=12, seed=1,
                                    files=1, progress=False)
    (comp / "test_labels.csv").unlink()  # a real competition folder has no answer key
    sample = pd.read_csv(comp / "sample_submission.csv")
    sample.iloc[:-3].to_csv(comp / "sample_submission.csv", index=False)  # as in Kaggle's rerun: rows differ
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "best.pt", build_model(ModelConfig(neck_dim=16)), image_size=32,
                           preprocess={}, metric=0.1)
    wheels = tmp_path / "wheels"  # the notebook never installs them: empty stand-ins spare a wheel build
    wheels.mkdir()
    for name in ("bengali_kit-0.1.0-py3-none-any.whl", "efficientnet_pytorch-0.7.1-py3-none-any.whl"):
        zipfile.ZipFile(wheels / name, "w").close()
    pkg = build_package([ckpt], kin / "datasets" / "someone" / "bengali-nb-test", user="someone",
                        slug="bengali-nb-test", wheel_dir=wheels).out_dir
    working = tmp_path / "working"
    working.mkdir()

    script = _with_parameters((REPO / "notebooks" / "03_inference.py").read_text(encoding="utf-8"),
                              KAGGLE_INPUT=str(kin), KAGGLE_WORKING=str(working), WORK_DIR=str(tmp_path / "work"))
    (tmp_path / "nb.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "BENGALI_KIT_NB_DATA": "", "BENGALI_KIT_NB_CHECKPOINT": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    proc = subprocess.run([sys.executable, "nb.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"data:        {comp}" in proc.stdout
    assert f"checkpoints: {pkg / 'checkpoints' / 'best.pt'}" in proc.stdout
    assert "differ from sample_submission.csv" in proc.stderr  # a warning, and the notebook went on
    assert "no answer key" in proc.stdout
    sub = pd.read_csv(working / "submission.csv")
    assert list(sub["row_id"]) == list(pd.read_csv(comp / "test.csv")["row_id"])
    assert not (tmp_path / "work" / "submission.csv").exists()
