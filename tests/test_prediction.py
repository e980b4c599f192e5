"""Inference: streaming prediction, the submission's rows, scoring a run's validation images, errors, no network."""
from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bengali_kit import evaluation, prediction, submission
from bengali_kit.cli import main
from bengali_kit.components import COMPONENTS, N_CLASSES
from bengali_kit.data import read_sample_submission, read_test_csv, read_train_csv, write_image_parquet
from bengali_kit.errors import DataError
from bengali_kit.model import Logits, ModelConfig, build_model, save_checkpoint
from bengali_kit.preprocess import iter_preprocessed

torch.set_num_threads(2)


# ----------------------------------------------------------------------------------------- helpers
class Oracle(torch.nn.Module):
    """A 'model' that is right by construction: it recognises each preprocessed image among templates
    (nearest neighbour) and answers that image's true labels. Any mix-up of images, rows or components
    between the parquet and submission.csv makes it wrong."""

    def __init__(self, templates: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.cfg = ModelConfig()
        self.register_buffer("t", torch.from_numpy(templates.reshape(len(templates), -1)).float() / 255)
        self.register_buffer("y", torch.from_numpy(labels))
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(len(x))
        idx = torch.cdist(x.flatten(1).float(), self.t).argmin(1)
        lab = self.y[idx]
        return Logits(*(F.one_hot(lab[:, j], n).float() * 20 for j, n in enumerate(N_CLASSES)))


def _oracle_for(data_dir: Path, split: str, labels_df: pd.DataFrame) -> Oracle:
    ids, images = zip(*iter_preprocessed(data_dir, split, size=32, workers=1))
    ids, images = np.concatenate(ids), np.concatenate(images)
    lab = labels_df.set_index("image_id").loc[ids, list(COMPONENTS)].to_numpy(np.int64)
    return Oracle(images, lab)


@pytest.fixture(scope="module")
def train_oracle(synth_dir) -> Oracle:
    return _oracle_for(synth_dir, "train", read_train_csv(synth_dir / "train.csv"))


@pytest.fixture(scope="module")
def tiny_pred(synth_dir, tiny_checkpoint) -> prediction.PredictionResult:
    return prediction.predict(synth_dir, [tiny_checkpoint], batch_size=64, device="cpu", progress=False)


def _use_model(monkeypatch, model, ckpt_extra=None):
    ckpt = {"image_size": 32, "preprocess": {}, **(ckpt_extra or {})}
    monkeypatch.setattr(prediction, "load_model", lambda path, map_location="cpu": (model, dict(ckpt)))
    monkeypatch.setattr(evaluation, "load_checkpoint", lambda path, map_location="cpu": dict(ckpt))


def _key(synth_dir: Path) -> pd.DataFrame:
    return pd.read_csv(synth_dir / "test_labels.csv", dtype={"image_id": str})


def _expected_targets(test_df: pd.DataFrame, key: pd.DataFrame) -> np.ndarray:
    k = key.set_index("image_id")
    return np.array([k.at[i, c] for i, c in zip(test_df["image_id"], test_df["component"])], dtype=np.int64)


# ----------------------------------------------------------------------------------------- submission rows
def test_submission_matches_real_layout(reference_dir):
    test_df = read_test_csv(reference_dir / "test.csv")
    sample = read_sample_submission(reference_dir / "sample_submission.csv")
    image_ids = test_df["image_id"].unique()
    # Distinct values per component (consonant != vowel for every image), given in a shuffled order:
    # rows must be filled by image_id and component, not by position.
    rng = np.random.default_rng(0)
    order = rng.permutation(len(image_ids))
    truth = {img: (10 + 3 * i, 1 + i % 10, (i % 6) + 1 if (i % 6) + 1 != 1 + i % 10 else 0)
             for i, img in enumerate(image_ids)}
    ids = image_ids[order]
    labels = np.array([truth[i] for i in ids])
    sub = submission.make_submission(test_df, ids, labels)
    assert list(sub.columns) == ["row_id", "target"]
    assert list(sub["row_id"]) == list(sample["row_id"]) == list(test_df["row_id"])
    for row_id, target in zip(sub["row_id"], sub["target"]):
        img, comp = row_id.split("_", 2)[:2], row_id.split("_", 2)[2]
        assert target == truth["_".join(img)][COMPONENTS.index(comp)], row_id


def test_submission_refuses_missing_images(reference_dir):
    test_df = read_test_csv(reference_dir / "test.csv")
    ids = test_df["image_id"].unique()[:-1]
    with pytest.raises(DataError, match="no image"):
        submission.make_submission(test_df, ids, np.zeros((len(ids), 3), dtype=int))


def test_write_submission_is_atomic_and_refuses_overwrite(tmp_path):
    df = pd.DataFrame({"row_id": ["Test_0_grapheme_root"], "target": [3]})
    path = tmp_path / "sub.csv"
    submission.write_submission(df, path)
    assert path.read_text() == "row_id,target\nTest_0_grapheme_root,3\n"
    with pytest.raises(DataError, match="sub.csv: already exists"):
        submission.write_submission(df.assign(target=4), path)
    assert path.read_text().endswith(",3\n")
    submission.write_submission(df.assign(target=4), path, overwrite=True)
    assert path.read_text().endswith(",4\n")
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temp file left


# ----------------------------------------------------------------------------------------- end to end
def test_correct_model_gives_correct_submission(synth_dir, tmp_path, monkeypatch):
    """Known labels end to end: every row's target is that image's label of that row's component."""
    key = _key(synth_dir)
    oracle = _oracle_for(synth_dir, "test", key)
    _use_model(monkeypatch, oracle)
    out = tmp_path / "submission.csv"
    # batch_size 7: batches cross the parquet boundary (30 + 30 images) and end short.
    result, sub = submission.predict_to_submission(synth_dir, ["oracle.pt"], out, batch_size=7, device="cpu",
                                              progress=False)
    assert max(oracle.calls) == 7 and sum(oracle.calls) == 60
    test_df = read_test_csv(synth_dir / "test.csv")
    written = pd.read_csv(out, dtype={"row_id": str})
    assert list(written["row_id"]) == list(test_df["row_id"])
    assert (written["target"].to_numpy() == _expected_targets(test_df, key)).all()
    assert result.n_images == 60 and result.images_per_second > 0
    assert list(result.image_ids) == [f"Test_{i}" for i in range(60)]
    # The answer key really tells the components apart, so a swap could not pass.
    assert (key["vowel_diacritic"] != key["consonant_diacritic"]).sum() > 30


def test_evaluate_all_with_correct_model(synth_dir, train_oracle, monkeypatch, capsys):
    _use_model(monkeypatch, train_oracle)
    assert main(["evaluate", "--data", str(synth_dir), "--checkpoint", "oracle.pt", "--all",
                 "--device", "cpu", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "scored 400 labelled images (all labelled images)" in out
    assert "weighted recall      1.0000" in out and "worst classes" in out
    for c in COMPONENTS:
        assert f"{c:<20} 1.0000" in out


def _run_folder(tmp_path: Path, ids) -> Path:
    """A run folder holding val_ids.csv (as training writes it) beside a (mocked) checkpoint path."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    pd.DataFrame({"image_id": list(ids)}).to_csv(run / "val_ids.csv", index=False)
    return run / "best.pt"


def test_evaluate_scores_the_runs_validation_images(synth_dir, train_oracle, tmp_path, monkeypatch, capsys):
    """Default evaluate = exactly the ids in val_ids.csv beside the checkpoint, read, not worked out again."""
    ids = read_train_csv(synth_dir / "train.csv")["image_id"].to_numpy()
    chosen = sorted(np.random.default_rng(3).choice(ids, 37, replace=False).tolist())
    ckpt = _run_folder(tmp_path, chosen)
    _use_model(monkeypatch, train_oracle, {"n_val": 37})
    res = evaluation.evaluate(synth_dir, ckpt, device="cpu", progress=False)
    assert sorted(res.prediction.image_ids.tolist()) == chosen and res.n_images == 37
    assert res.subset == "the run's validation images, val_ids.csv" and res.scores["weighted"] == 1.0
    assert main(["evaluate", "--data", str(synth_dir), "--checkpoint", str(ckpt), "--device", "cpu",
                 "--no-progress"]) == 0
    assert "scored 37 labelled images (the run's validation images, val_ids.csv)" in capsys.readouterr().out


def test_evaluate_refuses_a_val_ids_file_that_does_not_fit(synth_dir, train_oracle, tmp_path, monkeypatch):
    ids = read_train_csv(synth_dir / "train.csv")["image_id"].tolist()
    ckpt = tmp_path / "run" / "best.pt"
    _use_model(monkeypatch, train_oracle, {"n_val": 5})
    with pytest.raises(DataError, match=r"run/val_ids.csv: not found: .*pass --all to score every labelled image"):
        evaluation.evaluate(synth_dir, ckpt, device="cpu", progress=False)
    _run_folder(tmp_path, ids[:4])  # another run's list
    with pytest.raises(DataError, match=r"val_ids.csv: lists 4 images but best.pt was validated on 5: not this "
                                        r"checkpoint's run\? \(pass --all"):
        evaluation.evaluate(synth_dir, ckpt, device="cpu", progress=False)
    _run_folder(tmp_path, ids[:3] + ["Train_999999", "elsewhere_1"])  # another folder's images
    with pytest.raises(DataError, match=r"val_ids.csv: 2 of its 5 image ids are not in .*train.csv \(e.g. "
                                        r"'Train_999999'\): not the folder this run validated on\?"):
        evaluation.evaluate(synth_dir, ckpt, device="cpu", progress=False)
    _run_folder(tmp_path, [""] * 5)  # validated on rendered images (--synthetic-stream)
    with pytest.raises(DataError, match="rendered images only"):
        evaluation.evaluate(synth_dir, ckpt, device="cpu", progress=False)
    res = evaluation.evaluate(synth_dir, ckpt, all_images=True, device="cpu", progress=False)  # --all needs none
    assert res.n_images == 400 and res.subset == "all labelled images"


@pytest.mark.slow
def test_evaluate_reads_the_val_ids_a_real_run_wrote(synth_dir, tmp_path):
    """The round trip through the real training engine: train writes val_ids.csv, evaluate scores those."""
    from bengali_kit.train import TrainConfig, train

    run = train(TrainConfig(data_dir=str(synth_dir), out_dir=str(tmp_path / "run"), image_size=32, batch_size=8,
                            epochs=1, max_steps=1, progress=False, cutmix_p=0.0, val_fraction=0.25,
                            cache_dir=str(tmp_path / "cache"), preprocess_workers=1))
    written = pd.read_csv(run / "val_ids.csv", dtype=str)["image_id"].tolist()
    res = evaluation.evaluate(synth_dir, run / "best.pt", device="cpu", progress=False)
    assert 80 <= len(written) <= 120 and sorted(res.prediction.image_ids.tolist()) == sorted(written)


def test_predict_without_network(synth_dir, tiny_checkpoint, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("prediction tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    res = prediction.predict(synth_dir, [tiny_checkpoint], batch_size=32, device="auto", progress=False)
    assert res.device == "cpu" and res.n_images == 60
    for c, n in zip(COMPONENTS, N_CLASSES):
        p = res.probabilities[c]
        assert p.shape == (60, n) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (res.labels == np.stack([res.probabilities[c].argmax(1) for c in COMPONENTS], 1)).all()
    assert len({tuple(r) for r in res.labels}) > 10  # predictions depend on the image


def test_ensemble_averages_probabilities_across_preprocessings(synth_dir, tiny_checkpoint, tiny_pred, tmp_path):
    """Two models with different crop parameters: each gets its own preprocessing, softmax averaged."""
    torch.manual_seed(1)
    other = tmp_path / "b0_other.pt"
    save_checkpoint(other, build_model(ModelConfig(neck_dim=16)), image_size=32,
                    preprocess={"margin": 40, "pad_x": 0})
    b = prediction.predict(synth_dir, [other], batch_size=64, device="cpu", progress=False)
    both = prediction.predict(synth_dir, [tiny_checkpoint, other], batch_size=64, device="cpu", progress=False)
    assert both.n_models == 2
    for c in COMPONENTS:
        np.testing.assert_allclose(both.probabilities[c], (tiny_pred.probabilities[c] + b.probabilities[c]) / 2,
                                   atol=1e-5)


def test_evaluate_scores_the_average_of_several_checkpoints(synth_dir, tiny_checkpoint, tmp_path, capsys):
    """Repeated --checkpoint: evaluate scores the softmax average that predict would submit, on the
    validation images the runs share; runs that validated on other images are refused."""
    import json
    import shutil

    torch.manual_seed(2)
    ids = read_train_csv(synth_dir / "train.csv")["image_id"].tolist()
    runs = []
    for name, model in (("a", None), ("b", build_model(ModelConfig(neck_dim=16)))):
        ckpt = tmp_path / name / "best.pt"
        ckpt.parent.mkdir()
        if model is None:
            shutil.copy(tiny_checkpoint, ckpt)
        else:
            save_checkpoint(ckpt, model, image_size=32, n_val=50)
        pd.DataFrame({"image_id": ids[:50]}).to_csv(ckpt.parent / "val_ids.csv", index=False)
        runs.append(ckpt)
    one = [evaluation.evaluate(synth_dir, c, all_images=True, device="cpu", progress=False) for c in runs]
    both = evaluation.evaluate(synth_dir, runs, all_images=True, device="cpu", progress=False)
    assert both.prediction.n_models == 2 and both.n_images == 400
    for c in COMPONENTS:
        np.testing.assert_allclose(both.prediction.probabilities[c],
                                   (one[0].prediction.probabilities[c] + one[1].prediction.probabilities[c]) / 2,
                                   atol=1e-5)
    assert not (one[0].prediction.labels == one[1].prediction.labels).all()  # the average is of two opinions
    shared = evaluation.evaluate(synth_dir, runs, device="cpu", progress=False)  # val_ids.csv, shared by both
    assert sorted(shared.prediction.image_ids.tolist()) == sorted(ids[:50])
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(synth_dir), "--checkpoint", str(runs[0]), "--checkpoint", str(runs[1]),
                 "--device", "cpu", "--no-progress", "--worst", "0", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["checkpoint"] == [str(r) for r in runs] and record["n_images"] == 50
    assert record["scores"]["weighted"] == pytest.approx(shared.scores["weighted"])
    assert "with 2 model(s)" in capsys.readouterr().out
    pd.DataFrame({"image_id": ids[50:100]}).to_csv(runs[1].parent / "val_ids.csv", index=False)
    with pytest.raises(DataError, match=r"b/val_ids.csv: lists other validation images than .*a/val_ids.csv.*--all"):
        evaluation.evaluate(synth_dir, runs, device="cpu", progress=False)


def test_tta_views_are_flip_free_shifts_and_scales():
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 8:12, 20:26] = 1.0  # an asymmetric stroke, right of centre
    views = prediction._tta_batch(x, prediction.TTA_VIEWS)
    assert views.shape == (len(prediction.TTA_VIEWS) * 2, 1, 32, 32)
    torch.testing.assert_close(views[:2], x)  # the identity view
    com = lambda im: (im.sum(0) * torch.arange(32.0)).sum() / im.sum()  # noqa: E731 - column centre of mass
    base = com(x[0, 0])
    assert base > 16
    for v, (scale, sx, _) in enumerate(prediction.TTA_VIEWS[1:], start=1):
        c = com(views[2 * v, 0])
        assert c > 16  # still right of centre: nothing mirrored
        if sx:
            assert np.sign(float(c - base)) == np.sign(sx) and abs(float(c - base) - sx * 32) < 1.0
        else:
            assert c < base and 0.85 < views[2 * v].sum() / x[0].sum() / scale**2 < 1.15


def test_tta_runs_end_to_end(synth_dir, tiny_checkpoint, tiny_pred):
    res = prediction.predict(synth_dir, [tiny_checkpoint], batch_size=64, device="cpu", tta=True, progress=False)
    assert res.tta and res.n_images == 60 and list(res.image_ids) == list(tiny_pred.image_ids)
    np.testing.assert_allclose(res.probabilities["grapheme_root"].sum(1), 1.0, atol=1e-5)
    assert not np.allclose(res.probabilities["grapheme_root"], tiny_pred.probabilities["grapheme_root"])


def test_cli_predict(synth_dir, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    args = ["predict", "--data", str(synth_dir), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "predicted 60 images" in text and "images/s" in text and "180 rows" in text
    assert len(pd.read_csv(out)) == 180
    assert main(args) == 2  # exists: refused before any prediction
    assert "already exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- errors
def _copy_csvs(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("test.csv", "train.csv", "sample_submission.csv", "class_map.csv"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_missing_test_parquets(synth_dir, tiny_checkpoint, tmp_path):
    d = _copy_csvs(synth_dir, tmp_path / "d")
    with pytest.raises(DataError, match="no test_image_data"):
        prediction.predict(d, [tiny_checkpoint], progress=False)
    with pytest.raises(DataError, match="not found"):
        prediction.predict(tmp_path / "nowhere", [tiny_checkpoint], progress=False)


def test_malformed_and_empty_parquets(synth_dir, tiny_checkpoint, tmp_path):
    d = _copy_csvs(synth_dir, tmp_path / "bad")
    (d / "test_image_data_0.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="test_image_data_0.parquet"):
        prediction.predict(d, [tiny_checkpoint], progress=False)
    e = _copy_csvs(synth_dir, tmp_path / "empty")
    write_image_parquet(e / "test_image_data_0.parquet", [], np.zeros((0, 137, 236), np.uint8))
    with pytest.raises(DataError, match="empty"):
        prediction.predict(e, [tiny_checkpoint], progress=False)


def test_test_csv_without_images(synth_dir, tiny_checkpoint, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "test_image_data_0.parquet").write_bytes((synth_dir / "test_image_data_0.parquet").read_bytes())
    (d / "test.csv").write_bytes((synth_dir / "test.csv").read_bytes())  # names 60 images, 30 present
    with pytest.raises(DataError, match="test.csv.*no image"):
        submission.predict_to_submission(d, [tiny_checkpoint], tmp_path / "s.csv", device="cpu", progress=False)
    assert not (tmp_path / "s.csv").exists()
    (d / "test.csv").write_text("row_id,image\nx,y\n")
    with pytest.raises(DataError, match="missing column"):
        submission.predict_to_submission(d, [tiny_checkpoint], tmp_path / "s.csv", device="cpu", progress=False)


def test_checkpoints_that_do_not_fit(synth_dir, tmp_path):
    model = build_model(ModelConfig(neck_dim=8))
    no_size = save_checkpoint(tmp_path / "nosize.pt", model)
    with pytest.raises(DataError, match="nosize.pt.*image_size"):
        prediction.predict(synth_dir, [no_size], progress=False)
    wrong = save_checkpoint(tmp_path / "wrong.pt", build_model(ModelConfig(neck_dim=8, n_classes=(10, 11, 7))),
                            image_size=32)
    with pytest.raises(DataError, match="wrong.pt.*classes"):
        prediction.predict(synth_dir, [wrong], progress=False)
    params = save_checkpoint(tmp_path / "params.pt", model, image_size=32, preprocess={"blur": 3})
    with pytest.raises(DataError, match="params.pt.*crop parameter"):
        prediction.predict(synth_dir, [params], progress=False)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="junk.pt"):
        prediction.predict(synth_dir, [junk], progress=False)
    with pytest.raises(DataError, match="missing.pt"):
        prediction.predict(synth_dir, [tmp_path / "missing.pt"], progress=False)
