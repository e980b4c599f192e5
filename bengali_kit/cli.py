"""The ``bengali-kit`` command line: thin wrappers that parse options, call the library and print.

Each subcommand has an ``_add_<name>`` function (its options) and a ``_run_<name>`` function.
Errors from bad input (``DataError``, ``FileNotFoundError``, ``ValueError``) exit with status 2 and a
one-line message; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import DataError

# ---------------------------------------------------------------- synth
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="folder to write the competition-format files into")
    p.add_argument("--train-rows", type=int, default=2000, help="number of training images (default 2000)")
    p.add_argument("--test-rows", type=int, default=200, help="number of test images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives byte-identical files")
    p.add_argument("--files", type=int, default=4, help="number of parquet files per split (default 4, as the real data)")
    p.add_argument("--holdout-fonts", action="store_true", help="render the test split with fonts never used for train")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")


def _run_synth(args: argparse.Namespace) -> int:
    raise NotImplementedError("synth: not implemented yet")


# ---------------------------------------------------------------- preprocess
def _add_preprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", help="competition folder with {train,test}_image_data_*.parquet")
    p.add_argument("--size", type=int, default=128, help="output image side in pixels (default 128)")
    p.add_argument("--out", required=True, help="cache folder for the <split>_<size>.npy arrays and their ids")


def _run_preprocess(args: argparse.Namespace) -> int:
    raise NotImplementedError("preprocess: not implemented yet")


# ---------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="competition folder (train.csv + train parquets)")
    p.add_argument("--out", required=True, help="run folder for checkpoints, history and curves")


def _run_train(args: argparse.Namespace) -> int:
    raise NotImplementedError("train: not implemented yet")


# ---------------------------------------------------------------- predict
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="competition folder with test.csv and test parquets")


def _run_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError("predict: not implemented yet")


# ---------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="competition folder with train.csv and train parquets")


def _run_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate: not implemented yet")


# ---------------------------------------------------------------- package
def _add_package(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", required=True, help="checkpoint to bundle (repeatable)")


def _run_package(args: argparse.Namespace) -> int:
    raise NotImplementedError("package: not implemented yet")


# ---------------------------------------------------------------- import-crops
def _add_import_crops(p: argparse.ArgumentParser) -> None:
    p.add_argument("npz", help="npz of real crops (e.g. real_sample_64.npz)")
    p.add_argument("out_dir", help="folder to write train/ and val/ competition folders into")


def _run_import_crops(args: argparse.Namespace) -> int:
    raise NotImplementedError("import-crops: not implemented yet")


SUBCOMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "synth": ("write a synthetic competition folder (rendered Bengali graphemes)", _add_synth, _run_synth),
    "preprocess": ("crop/resize the image parquets of a folder into a uint8 cache", _add_preprocess, _run_preprocess),
    "train": ("train the multi-output EfficientNet", _add_train, _run_train),
    "predict": ("predict the test parquets and write submission.csv", _add_predict, _run_predict),
    "evaluate": ("score a checkpoint on labelled images", _add_evaluate, _run_evaluate),
    "package": ("build the Kaggle dataset folder (weights, wheels, offline kernel)", _add_package, _run_package),
    "import-crops": ("turn an npz of real crops into competition folders", _add_import_crops, _run_import_crops),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bengali-kit",
        description="Bengali.AI handwritten grapheme classification: data, training, inference, Kaggle packaging.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bengali-kit`` and ``python -m bengali_kit``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as err:
        if args.debug:
            raise
        print(f"bengali-kit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bengali-kit {args.command}: interrupted", file=sys.stderr)
        return 130
