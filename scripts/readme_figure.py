"""The README's picture: real handwritten crops of the held-out slice with the shipped model's predictions.

Imports the held-out slice (``tests/data/real_heldout_64.npz``: 1,292 real crops, one per triple, that no
shipped model trained on) with the kit's own ``import_crops`` into a temporary folder, scores every crop with
``evaluation.evaluate`` (as ``bengali-kit evaluate --all`` and ``notebooks/03_inference`` do), and draws the
first ``--n`` crops in file order with ``notebook_utils.show_predictions`` (in larger print): the grapheme
composed from the predicted labels above each crop, its id, predicted and true labels below it, red where a
component is wrong, and the weighted recall over all crops in the title; at ``--dpi 80`` the PNG is about
160 KB. From the repository root (under a minute on 2 CPU cores)::

    python scripts/readme_figure.py                   # writes docs/figures/heldout_predictions.png
    python scripts/readme_figure.py --overwrite       # replaces it

An existing ``--out`` is refused (exit status 2) unless ``--overwrite``, and an input always is.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = "weights/real-b0-96.pt"
DEFAULT_HELDOUT = "tests/data/real_heldout_64.npz"
DEFAULT_OUT = "docs/figures/heldout_predictions.png"


def _path(value: str, default: str) -> Path:
    """A default is the repository's file wherever the script runs from; a path given is taken as typed."""
    return ROOT / value if value == default else Path(value)


def draw(images, ids, prediction, truth, class_map, title: str, ncols: int = 6, label_size: float = 10):
    """``notebook_utils.show_predictions`` (as ``notebooks/03_inference`` calls it) in larger print, so that the
    labels stay legible when the README scales the picture down, with room under each crop for its two lines."""
    from bengali_kit.notebook_utils import show_predictions

    fig = show_predictions(images, ids, prediction, truth, class_map, title=title, ncols=ncols)
    for ax in fig.axes:  # the captions are the x labels of the image axes
        if ax.xaxis.label.get_text():
            ax.xaxis.label.set_fontsize(label_size)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height * 1.1)
    fig.axes[0].get_subplotspec().get_gridspec().update(hspace=0.35 + 0.05 * label_size)
    fig.suptitle(title, fontsize=label_size + 3)  # replaces show_predictions' title
    return fig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="model to read the crops (default: %(default)s)")
    ap.add_argument("--heldout", default=DEFAULT_HELDOUT, help="npz of real crops to score (default: %(default)s)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="PNG to write (default: %(default)s)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    ap.add_argument("--n", type=int, default=24, help="crops shown, the first in file order (default: %(default)s)")
    ap.add_argument("--ncols", type=int, default=6, help="crops per row (default: %(default)s)")
    ap.add_argument("--dpi", type=int, default=80, help="resolution of the PNG (default: %(default)s)")
    ap.add_argument("--label-size", type=float, default=10,
                    help="font size of the labels under each crop (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="inference device (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.ncols < 1 or args.dpi < 10:
        ap.error("--n and --ncols must be >= 1, --dpi >= 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoint = _path(args.checkpoint, DEFAULT_CHECKPOINT)
    heldout = _path(args.heldout, DEFAULT_HELDOUT)
    out = _path(args.out, DEFAULT_OUT)
    for path in (checkpoint, heldout):
        if not path.is_file():
            print(f"readme_figure: {path}: not found", file=sys.stderr)
            return 2
    from bengali_kit.errors import DataError
    from bengali_kit.files import check_output_file

    try:  # the kit's own rule: never one of the inputs, an existing file only with --overwrite
        check_output_file(out, args.overwrite, inputs=(checkpoint, heldout))
    except DataError as err:
        print(f"readme_figure: {err}", file=sys.stderr)
        return 2

    # imported here so that --help and the checks above answer at once
    from bengali_kit.components import COMPONENTS, load_class_map
    from bengali_kit.evaluation import evaluate
    from bengali_kit.notebook_utils import sample_images
    from bengali_kit.plots import save_figure
    from bengali_kit.realdata import import_crops

    with tempfile.TemporaryDirectory(prefix="readme_figure_") as tmp:
        folder = import_crops(heldout, Path(tmp) / "heldout", val_per_triple=0, files=1).train_dir
        result = evaluate(folder, checkpoint, all_images=True, device=args.device, progress=False)
        print(result.summary(worst=5))
        n = min(args.n, result.n_images)
        ids, images, truth = sample_images(folder, "train", n)
        class_map = load_class_map(folder / "class_map.csv")
        title = (f"{checkpoint.name} on real handwriting it never saw: weighted recall "
                 f"{result.scores['weighted']:.3f} on all {result.n_images} held-out crops\n"
                 f"the first {n}: id and predicted root-vowel-consonant, then the true labels; "
                 f"red = a component wrong")
        fig = draw(images, ids, result.prediction, truth[list(COMPONENTS)].to_numpy(), class_map, title,
                   ncols=args.ncols, label_size=args.label_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=args.dpi)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
