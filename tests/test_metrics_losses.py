"""The competition metric (against sklearn, argument order, label union) and the multi-head loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import recall_score

from bengali_kit.components import COMPONENTS, N_CLASSES
from bengali_kit.losses import MixedTargets, MultiHeadLoss
from bengali_kit.metrics import component_recalls, per_class_recall, present_label_recalls, weighted_recall
from bengali_kit.model import Logits


def _random_labels(n, seed, noise=0.3):
    rng = np.random.default_rng(seed)
    y_true = np.stack([rng.integers(0, k, n) for k in N_CLASSES], axis=1)
    y_pred = y_true.copy()
    for i, k in enumerate(N_CLASSES):
        wrong = rng.random(n) < noise
        y_pred[wrong, i] = rng.integers(0, k, wrong.sum())
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_matches_sklearn_on_random_labels(seed):
    y_true, y_pred = _random_labels(700, seed)
    expected = [recall_score(y_true[:, i], y_pred[:, i], average="macro") for i in range(3)]
    scores = component_recalls(y_true, y_pred)
    assert [scores[c] for c in COMPONENTS] == pytest.approx(expected, abs=1e-12)
    assert scores["weighted"] == pytest.approx((2 * expected[0] + expected[1] + expected[2]) / 4, abs=1e-12)
    assert weighted_recall(y_true, y_pred) == scores["weighted"]
    assert 0.5 < scores["weighted"] < 1.0
    # torch tensors are accepted too
    assert weighted_recall(torch.as_tensor(y_true), torch.as_tensor(y_pred)) == scores["weighted"]


def test_metric_argument_order_matters():
    # one column pattern where recall(true, pred) != recall(pred, true)
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 0, 1])
    y_true, y_pred = np.stack([t, t, t], 1), np.stack([p, p, p], 1)
    right = weighted_recall(y_true, y_pred)
    swapped = weighted_recall(y_pred, y_true)
    assert right == pytest.approx((1.0 + 0.5) / 2)  # recall of class 0: 2/2, class 1: 1/2
    assert swapped == pytest.approx((2 / 3 + 1.0) / 2)  # = precision
    assert right != pytest.approx(swapped)


def test_metric_uses_union_of_labels_like_kaggle():
    # a predicted class absent from the truth counts as a zero recall (sklearn labels=None)
    t = np.array([0, 0, 1])
    p = np.array([0, 2, 1])
    y = np.stack([t, t, t], 1)
    yp = np.stack([p, p, p], 1)
    scores = component_recalls(y, yp)
    assert scores["grapheme_root"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert scores["weighted"] == pytest.approx(0.5)


def test_present_label_recall_leaves_out_the_classes_the_truth_lacks():
    t = np.array([0, 0, 1])
    p = np.array([0, 2, 1])
    scores = present_label_recalls(np.stack([t, t, t], 1), np.stack([p, p, p], 1))
    assert scores["grapheme_root"] == pytest.approx((0.5 + 1.0) / 2)  # class 2 is predicted, never true
    # a subset holding half the roots, as unseen triples do: the mean recall of the roots it holds, while
    # Kaggle's call also averages in a zero for each root the mistakes land on
    y_true, y_pred = _random_labels(3000, 4)
    subset = y_true[:, 0] < 84
    own = present_label_recalls(y_true[subset], y_pred[subset])
    table = per_class_recall(y_true[subset], y_pred[subset])
    roots = table[(table["component"] == "grapheme_root") & (table["support"] > 0)]
    assert len(roots) == 84 and own["grapheme_root"] == pytest.approx(roots["recall"].mean(), abs=1e-12)
    assert component_recalls(y_true[subset], y_pred[subset])["grapheme_root"] < own["grapheme_root"] - 0.2
    # every class present in the truth: the two are the same figure
    assert present_label_recalls(y_true, y_pred) == component_recalls(y_true, y_pred)


def test_metric_is_over_the_whole_set_not_per_batch():
    y_true, y_pred = _random_labels(300, 7)
    whole = weighted_recall(y_true, y_pred)
    per_batch = np.mean([weighted_recall(y_true[i:i + 50], y_pred[i:i + 50]) for i in range(0, 300, 50)])
    assert whole != pytest.approx(per_batch, abs=1e-6)


def test_metric_bad_input():
    with pytest.raises(ValueError, match="shape"):
        weighted_recall(np.zeros((4, 2), int), np.zeros((4, 2), int))
    with pytest.raises(ValueError, match="rows"):
        weighted_recall(np.zeros((4, 3), int), np.zeros((5, 3), int))
    with pytest.raises(ValueError, match="empty"):
        weighted_recall(np.zeros((0, 3), int), np.zeros((0, 3), int))


def test_per_class_recall_table():
    y_true, y_pred = _random_labels(500, 3)
    df = per_class_recall(y_true, y_pred)
    assert list(df.columns) == ["component", "label", "recall", "support", "n_pred"]
    assert len(df) == sum(N_CLASSES)
    for i, c in enumerate(COMPONENTS):
        part = df[df.component == c].set_index("label")
        assert part["support"].sum() == 500 and part["n_pred"].sum() == 500
        present = part.index[part["support"] > 0].to_numpy()
        expected = recall_score(y_true[:, i], y_pred[:, i], labels=present, average=None)
        np.testing.assert_allclose(part.loc[present, "recall"].to_numpy(), expected)
        assert part.loc[part["support"] == 0, "recall"].isna().all()
        np.testing.assert_array_equal(part["n_pred"].to_numpy(), np.bincount(y_pred[:, i], minlength=N_CLASSES[i]))


# ---------------------------------------------------------------- loss
def _logits(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Logits(*(torch.randn(b, k, generator=g, requires_grad=True) for k in N_CLASSES))


def _targets(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (b,), generator=g) for k in N_CLASSES], dim=1)


def test_loss_is_weighted_mean_of_cross_entropies():
    z, y = _logits(), _targets()
    ce = [F.cross_entropy(z[k], y[:, k]) for k in range(3)]
    torch.testing.assert_close(MultiHeadLoss()(z, y), (2 * ce[0] + ce[1] + ce[2]) / 4)
    torch.testing.assert_close(MultiHeadLoss(weights=(1, 0, 3))(z, y), (ce[0] + 3 * ce[2]) / 4)
    smooth = [F.cross_entropy(z[k], y[:, k], label_smoothing=0.1) for k in range(3)]
    torch.testing.assert_close(MultiHeadLoss(label_smoothing=0.1)(z, y), (2 * smooth[0] + smooth[1] + smooth[2]) / 4)
    loss = MultiHeadLoss()(z, y)
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in z)


def test_loss_with_mixed_targets():
    z, y_a, y_b = _logits(), _targets(seed=1), _targets(seed=2)
    loss = MultiHeadLoss()
    lam = 0.3
    expected = sum(w * (lam * F.cross_entropy(z[k], y_a[:, k]) + (1 - lam) * F.cross_entropy(z[k], y_b[:, k]))
                   for k, w in enumerate((2, 1, 1))) / 4
    torch.testing.assert_close(loss(z, MixedTargets(y_a, y_b, lam)), expected)
    torch.testing.assert_close(loss(z, MixedTargets(y_a, y_b, 1.0)), loss(z, y_a))
    torch.testing.assert_close(loss(z, MixedTargets(y_a, y_b, 0.0)), loss(z, y_b))
    # per-sample lam (B,)
    lam_b = torch.linspace(0, 1, 6)
    per = sum(w * (lam_b * F.cross_entropy(z[k], y_a[:, k], reduction="none")
                   + (1 - lam_b) * F.cross_entropy(z[k], y_b[:, k], reduction="none")).mean()
              for k, w in enumerate((2, 1, 1))) / 4
    torch.testing.assert_close(loss(z, MixedTargets(y_a, y_b, lam_b)), per)


def test_grapheme_head_loss_counts_real_triples_only():
    """The grapheme head's classes are the real train set's triples; a triple absent from it adds nothing."""
    from bengali_kit.components import grapheme_index, read_grapheme_counts

    real = read_grapheme_counts()[["grapheme_root", "vowel_diacritic", "consonant_diacritic"]].to_numpy()
    index = grapheme_index()
    assert (index >= 0).sum() == len(real) == 1292 and sorted(index[index >= 0]) == list(range(1292))
    known = {tuple(t) for t in real.tolist()}
    novel = next((r, v, c) for r in range(168) for v in range(11) for c in range(7) if (r, v, c) not in known)
    y = torch.tensor([list(real[0]), list(real[5]), list(novel)])
    z = _logits(b=3)
    g = torch.randn(3, 1292, generator=torch.Generator().manual_seed(3), requires_grad=True)
    loss = MultiHeadLoss(grapheme_weight=0.5)
    gy = loss.grapheme_targets(y)
    assert gy[2] == -100 and gy[0] != gy[1] and gy[0] >= 0
    ce = F.cross_entropy(g[:2], gy[:2], reduction="sum") / 3  # the novel triple adds 0 to the batch mean
    torch.testing.assert_close(loss(z, y, g), MultiHeadLoss()(z, y) + 0.5 * ce)
    torch.testing.assert_close(loss(z, y), MultiHeadLoss()(z, y))  # validation: the three heads alone
    lam = 0.25
    mixed = loss(z, MixedTargets(y, y.flip(0), lam), g)
    expected = MultiHeadLoss()(z, MixedTargets(y, y.flip(0), lam)) + 0.5 * (
        lam * F.cross_entropy(g, gy, reduction="none") + (1 - lam) * F.cross_entropy(g, gy.flip(0), reduction="none")
    ).mean()
    torch.testing.assert_close(mixed, expected)
    loss(z, y, g).backward()
    assert g.grad[2].abs().sum() == 0 and g.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="no grapheme head"):
        MultiHeadLoss().grapheme_targets(y)


def test_loss_under_half_precision_logits():
    z = Logits(*(t.detach().half() for t in _logits()))
    y = _targets()
    out = MultiHeadLoss()(z, y)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_loss_bad_arguments():
    with pytest.raises(ValueError):
        MultiHeadLoss(weights=(1, 1))
    with pytest.raises(ValueError):
        MultiHeadLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="shape"):
        MultiHeadLoss()(_logits(), _targets()[:, :2])
