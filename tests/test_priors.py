"""Issue 28's inference levers: the class-prior correction (train records the counts, export and the kernel
carry k) and the unseen-image detector of evaluate (AUROC), on the arithmetic and on real-format crops."""
from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from bengali_kit import __version__, evaluation, prediction
from bengali_kit.cli import main
from bengali_kit.components import COMPONENTS, N_CLASSES
from bengali_kit.data import labels_array, read_test_csv, read_train_csv
from bengali_kit.errors import DataError
from bengali_kit.metrics import auroc, present_label_recalls, weighted_recall
from bengali_kit.priors import (
    confidence_novelty,
    in_triples,
    log_prior,
    prior_corrected,
    prior_corrected_labels,
    resolve_prior_power,
    training_label_record,
)

torch.set_num_threads(2)


# ----------------------------------------------------------------------------------------- auroc
def test_auroc_of_hand_computed_cases():
    # 4 (positive, negative) pairs: 0.35 < 0.4 is the one ordered wrong -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # pairs (0.5, 0.5) tie = 1/2, (0.5, 0.2), (0.9, 0.5), (0.9, 0.2) right -> 3.5/4
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == 0.875
    assert auroc([1, 1, 1], [True, False, False]) == 0.5  # a constant score tells nothing
    assert auroc([0, 1], [True, False]) == 0.0


def test_auroc_agrees_with_sklearn_on_many_ties():
    rng = np.random.default_rng(0)
    scores, positive = rng.integers(0, 6, 300).astype(float), rng.random(300) < 0.3
    assert auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)


def test_auroc_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="positives and negatives"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        auroc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan, 0.2], [True, False])


# ----------------------------------------------------------------------------------------- prior correction
def test_prior_correction_moves_the_argmax_to_rarer_classes_as_k_grows():
    p = np.array([[0.6, 0.3, 0.1]])
    prior = log_prior([np.array([100, 10, 1])])[0]
    # p / count**k: k=0 -> 0.6 wins; k=0.35 -> 0.3 / 2.24 beats 0.6 / 5.0 and 0.1; k=1 -> 0.1 / 1 wins
    assert [int(prior_corrected(p, prior, k)[0]) for k in (0.0, 0.35, 1.0)] == [0, 1, 2]
    # equal counts change nothing, whatever k
    flat = log_prior([np.full(3, 7)])[0]
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(3), size=50)
    for k in (0.5, 1.0, 3.0):
        assert (prior_corrected(q, flat, k) == q.argmax(1)).all()
    # a class the model gives no probability is never picked, however rare
    assert prior_corrected(np.array([[0.9, 0.1, 0.0]]), prior, 5.0)[0] == 1
    # a class never seen in training counts as the rarest class seen: finite, and never boosted above it
    unseen = log_prior([np.array([100, 10, 0])])[0]
    assert np.array_equal(unseen, log_prior([np.array([100, 10, 10])])[0])
    assert prior_corrected(np.array([[0.6, 0.3, 0.1]]), unseen, 3.0)[0] == 1
    assert np.array_equal(log_prior([np.zeros(3)])[0], log_prior([np.ones(3)])[0])


def test_prior_correction_is_the_argmax_of_p_over_count_to_the_k():
    rng = np.random.default_rng(2)
    counts = [rng.integers(1, 500, n) for n in N_CLASSES]
    probs = {c: rng.dirichlet(np.ones(n) * 0.3, size=40) for c, n in zip(COMPONENTS, N_CLASSES)}
    for k in (0.0, 0.3, 1.0):
        got = prior_corrected_labels(probs, log_prior(counts), k)
        want = np.stack([(probs[c] / counts[j] ** k).argmax(1) for j, c in enumerate(COMPONENTS)], axis=1)
        assert np.array_equal(got, want)
    assert np.array_equal(prior_corrected_labels(probs, None, 0.0),
                          np.stack([probs[c].argmax(1) for c in COMPONENTS], axis=1))


def test_training_label_record_counts_each_head_and_sorts_the_triples():
    labels = np.array([[5, 1, 0], [2, 0, 3], [5, 1, 0], [2, 4, 3]])
    rec = training_label_record(labels)
    assert [len(c) for c in rec["class_counts"]] == list(N_CLASSES)
    assert rec["class_counts"][0][5] == 2 and rec["class_counts"][0][2] == 2 and sum(rec["class_counts"][0]) == 4
    assert rec["class_counts"][2][3] == 2 and rec["class_counts"][2][0] == 2
    assert rec["train_triples"] == [[2, 0, 3], [2, 4, 3], [5, 1, 0]]
    assert training_label_record(None) == {} and training_label_record(np.zeros((0, 3))) == {}


def test_a_prior_power_needs_class_counts_and_a_sane_value():
    counts = {"class_counts": [[1] * n for n in N_CLASSES]}
    assert resolve_prior_power({}, "a.pt") == 0.0
    assert resolve_prior_power({"inference": {"prior_power": 0.5}, **counts}, "a.pt") == 0.5
    assert resolve_prior_power({"inference": {"prior_power": 0.5}, **counts}, "a.pt", 0.0) == 0.0  # override
    with pytest.raises(DataError, match=r"^a\.pt: prior_power 0\.5 needs the training class counts"):
        resolve_prior_power({"inference": {"prior_power": 0.5}}, "a.pt")
    with pytest.raises(DataError, match=r"^b\.pt: prior_power 1 needs"):
        resolve_prior_power({}, "b.pt", 1.0)
    with pytest.raises(DataError, match=r"^a\.pt: 'inference' must hold a finite prior_power >= 0"):
        resolve_prior_power({"inference": {"prior_power": -1}}, "a.pt")
    with pytest.raises(DataError, match=r"^a\.pt: 'class_counts' must be three lists"):
        resolve_prior_power({"class_counts": [[1, 2]] * 3}, "a.pt", 1.0)


def test_an_ensemble_corrects_once_by_its_models_mean_prior():
    a = {"class_counts": [[1 + i for i in range(n)] for n in N_CLASSES], "inference": {"prior_power": 0.5}}
    b = {"class_counts": [[3] * n for n in N_CLASSES], "inference": {"prior_power": 0.5}}
    k, prior = prediction._ensemble_prior([(Path("a.pt"), a), (Path("a2.pt"), a)], None)
    assert k == 0.5  # the same labels twice: exactly that model's prior
    assert all(np.allclose(x, y) for x, y in zip(prior, log_prior([np.array(c) for c in a["class_counts"]])))
    _, mixed = prediction._ensemble_prior([(Path("a.pt"), a), (Path("b.pt"), b)], None)
    freq_a, freq_b = (np.exp(h[0]) for h in (log_prior(a["class_counts"]), log_prior(b["class_counts"])))
    assert np.allclose(np.exp(mixed[0]), (freq_a + freq_b) / 2)
    with pytest.raises(DataError, match=r"^b\.pt: carries prior_power 0 but a\.pt carries 0\.5; pass --prior-power"):
        prediction._ensemble_prior([(Path("a.pt"), a), (Path("b.pt"), {**b, "inference": {}})], None)
    assert prediction._ensemble_prior([(Path("a.pt"), a), (Path("c.pt"), {})], 0.0) == (0.0, None)


# ----------------------------------------------------------------------------------------- detector, sweep
def test_detector_scores_tell_unseen_triples_by_confidence_and_by_predicted_triple():
    triples = np.array([[1, 0, 0], [2, 1, 0]])
    y_true = np.array([[1, 0, 0], [2, 1, 0], [3, 0, 0], [1, 1, 0]])  # the last two are unseen
    labels = np.array([[1, 0, 0], [3, 1, 0], [3, 0, 0], [1, 0, 0]])  # predicted: in, out, out, in
    assert in_triples(labels, triples).tolist() == [True, False, False, True]
    probs = {c: np.full((4, n), 1e-6) for c, n in zip(COMPONENTS, N_CLASSES)}
    for row, top in enumerate([0.9, 0.8, 0.3, 0.5]):  # confidence: the unseen images are the least sure
        for c in COMPONENTS:
            probs[c][row, 0] = top
    assert np.allclose(confidence_novelty(probs), 1 - np.array([0.9, 0.8, 0.3, 0.5]) ** 3)
    d = evaluation.detector_scores(probs, labels, y_true, triples)
    # confidence: both unseen score above both seen -> 1; predicted triple: 1 of 4 pairs right, 2 tied -> 0.5
    assert d == {"auroc_confidence": 1.0, "auroc_predicted_triple": 0.5, "n_seen": 2, "n_unseen": 2}
    assert evaluation.detector_scores({c: p[:2] for c, p in probs.items()}, labels[:2], y_true[:2], triples) is None


def test_sweep_prior_power_rescores_kept_probabilities():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, (300, 3))
    counts = [np.r_[400, 40, 4, 1, np.ones(n - 4)] for n in N_CLASSES]
    probs = {}
    for j, (c, n) in enumerate(zip(COMPONENTS, N_CLASSES)):  # some signal, leaning to the frequent classes
        logits = 2.0 * np.eye(n)[y[:, j]] + rng.normal(size=(300, n)) + 0.8 * np.log(counts[j])
        logits[:, 4:] = -30.0  # only the four classes of the truth are ever likely
        probs[c] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    prior = log_prior(counts)
    sweep = evaluation.sweep_prior_power(probs, y, prior, [0, 0.8, 2.0])
    assert list(sweep) == [0.0, 0.8, 2.0]
    for k, score in sweep.items():
        assert score == weighted_recall(y, prior_corrected_labels(probs, prior, k))
    # undoing the lean exactly helps the macro recall; twice as much overshoots to the rarest classes
    assert sweep[0.8] > sweep[0.0] + 0.1 and sweep[0.8] > sweep[2.0]


# ----------------------------------------------------------------------------------------- real-format crops
@pytest.fixture(scope="module")
def real_split(real_slice_npz, tmp_path_factory) -> Path:
    """import-crops of the vendored slice with 10 % of the triples held out: train/, val/, unseen/."""
    from bengali_kit.realdata import import_crops

    out = tmp_path_factory.mktemp("priors") / "split"
    import_crops(real_slice_npz, out, unseen_fraction=0.1, files=1)
    return out


@pytest.fixture(scope="module")
def counted_checkpoint(tiny_checkpoint, real_split, tmp_path_factory) -> Path:
    """The tiny image-dependent checkpoint, carrying the class counts and triples of ``real_split/train``."""
    ck = torch.load(tiny_checkpoint, weights_only=True)
    ck.update(training_label_record(labels_array(read_train_csv(real_split / "train" / "train.csv"))))
    path = tmp_path_factory.mktemp("counted") / "best.pt"
    torch.save(ck, path)
    return path


def test_evaluate_scores_val_and_unseen_together_with_the_detector(real_split, counted_checkpoint, tmp_path,
                                                                     capsys):
    val, unseen = real_split / "val", real_split / "unseen"
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(val), "--also", str(unseen), "--all", "--checkpoint",
                 str(counted_checkpoint), "--device", "cpu", "--no-progress", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["n_images"] == 54 + 30 and record["prior_power"] == 0.0
    assert {f: part["n_images"] for f, part in record["folders"].items()} == {str(val): 54, str(unseen): 30}
    d = record["detector"]
    assert (d["n_seen"], d["n_unseen"]) == (54, 30)
    assert [line for line in text.splitlines() if "unseen-triple detector AUROC" in line] == [
        f"  unseen-triple detector AUROC: confidence {d['auroc_confidence']:.3f}, predicted triple not trained "
        f"on {d['auroc_predicted_triple']:.3f} (30 unseen, 54 seen images)"]
    folder_line = next(line for line in text.splitlines() if line.startswith(f"  {unseen}: weighted "))
    assert "(root " in folder_line and "grapheme" not in folder_line  # the component names of the progress line
    # the same figures from the library, recomputed from the kept probabilities
    res = evaluation.evaluate(val, counted_checkpoint, all_images=True, also=[unseen], device="cpu", progress=False)
    triples = np.array(torch.load(counted_checkpoint, weights_only=True)["train_triples"])
    unseen_rows = ~in_triples(res.y_true, triples)
    assert unseen_rows[54:].all() and not unseen_rows[:54].any()  # val/ then unseen/, in --also order
    assert d["auroc_confidence"] == pytest.approx(auroc(confidence_novelty(res.prediction.probabilities),
                                                        unseen_rows))
    # each folder's recall is that folder scored alone
    alone = evaluation.evaluate(unseen, counted_checkpoint, all_images=True, device="cpu", progress=False)
    assert record["folders"][str(unseen)]["scores"] == pytest.approx(alone.scores)
    assert alone.detector is None  # only unseen triples: nothing to tell apart
    assert f"  {unseen}: weighted {alone.scores['weighted']:.4f}" in text
    # unseen/ holds 3 of the triples: over its own labels, a predicted class it lacks adds no zero
    part = record["folders"][str(unseen)]
    own, kaggle = part["present_scores"], part["scores"]
    assert own == pytest.approx(present_label_recalls(res.y_true[54:], res.prediction.labels[54:]))
    assert all(own[c] >= kaggle[c] for c in COMPONENTS)
    # a head differs exactly where it predicts a class the folder lacks and reads some of its own
    strays = [bool(set(res.prediction.labels[54:, i]) - set(res.y_true[54:, i])) for i in range(3)]
    assert [own[c] != kaggle[c] for c in COMPONENTS] == [s and own[c] > 0 for s, c in zip(strays, COMPONENTS)]
    assert (f"    over its own labels: weighted {own['weighted']:.4f} (root " in text) == (own != kaggle)


def test_prior_power_in_evaluate_matches_the_sweep_on_kept_probabilities(real_split, counted_checkpoint):
    plain = evaluation.evaluate(real_split / "val", counted_checkpoint, all_images=True, device="cpu",
                                progress=False)
    corrected = evaluation.evaluate(real_split / "val", counted_checkpoint, all_images=True, device="cpu",
                                    progress=False, prior_power=1.0)
    assert plain.prediction.prior_power == 0.0 and corrected.prediction.prior_power == 1.0
    assert (plain.prediction.labels == np.stack([plain.prediction.probabilities[c].argmax(1)
                                                 for c in COMPONENTS], 1)).all()
    want = prior_corrected_labels(plain.prediction.probabilities, plain.prediction.class_prior, 1.0)
    assert np.array_equal(corrected.prediction.labels, want)
    assert (corrected.prediction.labels != plain.prediction.labels).any()  # k=1 really changes predictions
    sweep = evaluation.sweep_prior_power(plain.prediction.probabilities, plain.y_true, plain.prediction.class_prior,
                                         [0.0, 1.0])
    assert sweep == {0.0: plain.scores["weighted"], 1.0: corrected.scores["weighted"]}


def test_export_carries_the_prior_power_and_predict_applies_it(real_split, counted_checkpoint, tiny_checkpoint,
                                                                tmp_path, capsys):
    shipped = tmp_path / "shipped.pt"
    assert main(["export", str(counted_checkpoint), str(shipped), "--prior-power", "1"]) == 0
    assert "class-prior correction k=1" in capsys.readouterr().out
    ck = torch.load(shipped, weights_only=True)
    src = torch.load(counted_checkpoint, weights_only=True)
    assert ck["inference"] == {"prior_power": 1.0}
    assert ck["class_counts"] == src["class_counts"] and ck["train_triples"] == src["train_triples"]
    comp = real_split / "val"  # its test parquets hold the val crops
    carried = prediction.predict(comp, shipped, device="cpu", progress=False)
    given = prediction.predict(comp, counted_checkpoint, device="cpu", progress=False, prior_power=1.0)
    plain = prediction.predict(comp, shipped, device="cpu", progress=False, prior_power=0.0)
    assert carried.prior_power == 1.0 and np.array_equal(carried.labels, given.labels)
    assert (carried.labels != plain.labels).any()
    # a checkpoint without class counts: one line naming it, from export, predict and evaluate
    for argv in (["export", str(tiny_checkpoint), str(tmp_path / "x.pt"), "--prior-power", "0.5"],
                 ["predict", "--data", str(comp), "--checkpoint", str(tiny_checkpoint), "--prior-power", "0.5",
                  "--out", str(tmp_path / "s.csv"), "--device", "cpu", "--no-progress"],
                 ["evaluate", "--data", str(comp), "--all", "--checkpoint", str(tiny_checkpoint), "--prior-power",
                  "0.5", "--device", "cpu", "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(tiny_checkpoint) in err and "needs the training class counts" in err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "s.csv").exists()


def _fake_wheels(folder: Path) -> Path:
    """Empty wheels: the in-process kernel finds the kit and efficientnet already importable."""
    folder.mkdir()
    for name in (f"bengali_kit-{__version__}-py3-none-any.whl", "efficientnet_pytorch-0.7.1-py3-none-any.whl"):
        with zipfile.ZipFile(folder / name, "w"):
            pass
    return folder


def test_the_kaggle_kernel_predicts_as_predict_does_with_the_carried_prior(real_split, counted_checkpoint,
                                                                           tmp_path, monkeypatch):
    """A packaged checkpoint with k=1: the kernel's submission.csv equals predict's with k=1, not with k=0."""
    from bengali_kit.export import export_weights
    from bengali_kit.kaggle import MANIFEST, build_package, kernel_source
    from bengali_kit.kaggle.verify import _fake_input
    from bengali_kit.submission import predict_to_submission

    shipped = tmp_path / "shipped.pt"
    export_weights(counted_checkpoint, shipped, prior_power=1.0)
    info = build_package([shipped], tmp_path / "pkg", user="someone", slug="bengali-prior-model",
                         wheel_dir=_fake_wheels(tmp_path / "wheels"))
    manifest = json.loads((info.out_dir / MANIFEST).read_text())
    assert manifest["checkpoints"][0]["prior_power"] == 1.0
    slim = torch.load(info.out_dir / manifest["checkpoints"][0]["file"], weights_only=True)
    assert slim["inference"] == {"prior_power": 1.0} and "train_triples" not in slim  # only what inference needs
    comp = real_split / "val"
    kin, _ = _fake_input(tmp_path / "root", info.out_dir, manifest, comp)
    kernel_path = tmp_path / "kernel.py"
    kernel_path.write_text(kernel_source("bengali-prior-model"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("bk_prior_kernel", kernel_path)
    kernel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel)
    monkeypatch.setenv("BENGALI_KIT_PROGRESS", "0")
    kernel.main(["--input-root", str(kin), "--output-dir", str(tmp_path / "working")])
    written = pd.read_csv(tmp_path / "working" / "submission.csv", dtype={"row_id": str})
    _, with_prior = predict_to_submission(comp, shipped, tmp_path / "k1.csv", device="cpu", progress=False)
    _, without = predict_to_submission(comp, shipped, tmp_path / "k0.csv", device="cpu", progress=False,
                                       prior_power=0.0)
    assert list(written["row_id"]) == list(read_test_csv(comp / "test.csv")["row_id"])
    assert list(written["target"]) == list(with_prior["target"])
    assert list(written["target"]) != list(without["target"])


@pytest.mark.slow
def test_training_records_the_real_labels_counts_and_triples(real_split, tmp_path):
    """With rendered images mixed in, the checkpoints count the real training labels only."""
    from bengali_kit.train import TrainConfig, train

    run = train(TrainConfig(data_dir=str(real_split / "train"), val_data_dir=str(real_split / "val"),
                            out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), image_size=32,
                            batch_size=8, epochs=1, max_steps=1, progress=False, cutmix_p=0.0,
                            preprocess_workers=1, synthetic_mix=0.5))
    labels = labels_array(read_train_csv(real_split / "train" / "train.csv"))
    for name in ("best.pt", "last.pt"):
        ck = torch.load(run / name, weights_only=True)
        assert ck["class_counts"] == [np.bincount(labels[:, j], minlength=n).tolist()
                                      for j, n in enumerate(N_CLASSES)]
        assert ck["train_triples"] == np.unique(labels, axis=0).tolist()
        assert "inference" not in ck  # k = 0 unless export sets it
