"""The notebooks' figure helpers: image grids coloured by right/wrong, predictions matched to their images,
rendered graphemes of triples absent from the real train set, and a labelled folder to score them in."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from bengali_kit.components import COMPONENTS, load_class_map
from bengali_kit.data import read_train_csv
from bengali_kit.notebook_utils import (
    predicted_labels,
    render_novel_triples,
    sample_images,
    show_predictions,
    write_labelled_folder,
)
from bengali_kit.plots import plot_labelled_images
from bengali_kit.prediction import PredictionResult


def _images(n: int) -> np.ndarray:
    """``n`` competition-sized frames (137x236, dark ink on white), each with a differently placed block."""
    out = np.full((n, 137, 236), 255, dtype=np.uint8)
    for k in range(n):
        out[k, 30 + 2 * k:80 + 2 * k, 60:140] = 0
    return out


def _frame_colours(fig) -> list[str]:
    """The frame colour of each image axes of a ``plot_labelled_images`` grid, in grid order."""
    from matplotlib.colors import to_hex

    return [to_hex(ax.spines["left"].get_edgecolor()) for ax in fig.axes if ax.images and ax.get_xlabel()]


def _result(ids: list[str], labels: np.ndarray) -> PredictionResult:
    probs = {c: np.zeros((len(ids), n), np.float32) for c, n in zip(COMPONENTS, (168, 11, 7))}
    return PredictionResult(image_ids=np.asarray(ids), probabilities=probs, labels=np.asarray(labels), seconds=1.0)


def test_predicted_labels_follow_the_ids_not_the_prediction_order():
    res = _result(["b", "a", "c"], np.array([[2, 0, 0], [1, 0, 0], [3, 0, 0]]))
    assert predicted_labels(res, ["a", "b", "c"])[:, 0].tolist() == [1, 2, 3]
    assert predicted_labels(res, ["c"]).tolist() == [[3, 0, 0]]
    with pytest.raises(KeyError):
        predicted_labels(res, ["z"])


def test_show_predictions_frames_mistakes_in_red():
    """An image whose prediction differs from the truth in any component is red, the others green."""
    ids = ["x0", "x1", "x2"]
    res = _result(["x2", "x0", "x1"], np.array([[5, 1, 0], [3, 0, 0], [4, 2, 1]]))
    truth = np.array([[3, 0, 0], [4, 2, 0], [5, 1, 0]])  # x1 has its consonant wrong
    fig = show_predictions(_images(3), ids, res, truth, load_class_map(), title="t")
    assert _frame_colours(fig) == ["#008000", "#ff0000", "#008000"]
    plt.close(fig)


def test_two_line_captions_get_room_below_each_image():
    """The true labels on a second caption line get their own space (else the next row's text covers them)."""
    one = plot_labelled_images(_images(16), ["ক"] * 16, ["id: 1-2-3"] * 16)
    two = plot_labelled_images(_images(16), ["ক"] * 16, ["id: 1-2-3\ntrue 1-2-0"] * 16)
    assert two.get_figheight() > one.get_figheight()
    assert two.axes[0].get_gridspec().hspace > one.axes[0].get_gridspec().hspace
    plt.close("all")


def test_render_novel_triples_draws_valid_triples_absent_from_the_real_train_set(reference_dir):
    try:
        triples, images = render_novel_triples(3, seed=1)
    except RuntimeError as err:
        pytest.skip(f"no Bengali font to render with: {err}")
    real = {tuple(t) for t in pd.read_csv(reference_dir / "grapheme_counts.csv")[list(COMPONENTS)].to_numpy()}
    assert triples.shape == (3, 3) and not {tuple(t) for t in triples.tolist()} & real
    assert images.shape == (3, 137, 236) and images.dtype == np.uint8
    assert (images < 128).any(axis=(1, 2)).all() and (images[:, 0, :] > 200).all()  # ink on white paper
    again, _ = render_novel_triples(3, seed=1)
    assert np.array_equal(again, triples)


@pytest.mark.slow  # four 32,332-column parquet files: seconds each on a busy CPU
def test_write_labelled_folder_round_trips_images_and_labels(tmp_path):
    labels = np.array([[10, 1, 0], [20, 2, 1], [30, 0, 2]])
    out = write_labelled_folder(tmp_path / "novel", _images(3), labels, prefix="Rendered")
    ids, images, truth = sample_images(out, "train", 3)
    assert ids.tolist() == ["Rendered_0", "Rendered_1", "Rendered_2"]
    assert np.array_equal(images, _images(3)) and np.array_equal(truth[list(COMPONENTS)].to_numpy(), labels)
    assert sample_images(out, "test", 3)[2] is not None  # the test split carries the answer key too
    # a second write replaces the folder whole
    write_labelled_folder(out, _images(1), labels[:1], prefix="Rendered")
    assert read_train_csv(out / "train.csv")["image_id"].tolist() == ["Rendered_0"]
