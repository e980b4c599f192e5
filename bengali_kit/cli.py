"""The ``bengali-kit`` command line: thin wrappers that parse options, call the library and print.

Each subcommand has an ``_add_<name>`` function (its options) and a ``_run_<name>`` function.
Errors from bad input (``DataError``, ``FileNotFoundError``, ``ValueError``) exit with status 2 and a
one-line message; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, Callable, NoReturn, Sequence

from .argtypes import non_negative_float, non_negative_int, positive_int
from .errors import DataError, one_line
from .files import os_problem


# ---------------------------------------------------------------- synth
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write a folder with exactly the competition's files (train.csv, train_image_data_K.parquet, test.csv, "
        "test_image_data_K.parquet, class_map.csv, sample_submission.csv) plus test_labels.csv (the answer key of "
        "the synthetic test images). Images are real graphemes rendered with the Debian Bengali fonts and "
        "distorted to look handwritten; labels follow the real triple frequencies.")
    p.add_argument("out_dir", help="folder to write the competition-format files into (must be empty or new; "
                                   "it appears complete at the end, or not at all)")
    p.add_argument("--train-rows", type=positive_int, default=2000, help="number of training images")
    p.add_argument("--test-rows", type=positive_int, default=200, help="number of test images")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="random seed; the same seed gives byte-identical files")
    p.add_argument("--files", type=positive_int, default=4,
                   help="number of parquet files per split (rows split evenly; the real data has 4)")
    p.add_argument("--holdout-fonts", action="store_true",
                   help="render the test split with fonts never used for train (Jamrul and Noto Serif Bengali "
                        "go to test): a domain-shift proxy")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="rendering processes (default: one per CPU core, at most 3, for folders over 4,096 "
                        "images); never changes the output")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files an earlier synth or import-crops wrote there, as its .bengali_kit.json "
                        "lists them (other files are kept; a folder of competition files without one is refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_synth(args: argparse.Namespace) -> int:
    import time

    from .synthetic import write_competition_folder

    start = time.perf_counter()
    out = write_competition_folder(args.out_dir, train_rows=args.train_rows, test_rows=args.test_rows, seed=args.seed,
                                   files=args.files, holdout_fonts=args.holdout_fonts, overwrite=args.overwrite,
                                   progress=not args.no_progress, workers=args.workers)
    secs = time.perf_counter() - start
    n = args.train_rows + args.test_rows
    print(f"synth: wrote {out}: {args.train_rows} train + {args.test_rows} test images in {args.files} file(s) "
          f"per split, {secs:.1f} s, {n / secs:.0f} images/s")
    return 0


# ---------------------------------------------------------------- preprocess
def _add_preprocess(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Crop/resize (Iafoss) every image of the train and test parquets of DATA_DIR into "
        "CACHE_DIR/<split>_<size>.npy (uint8 N×size×size, ink bright on black) with the image ids in "
        "CACHE_DIR/<split>_<size>_ids.csv. A cache whose source parquets and parameters are unchanged is "
        "reused (see --force). A split without parquets is skipped with a note.")
    p.add_argument("data_dir", help="competition folder with {train,test}_image_data_*.parquet")
    p.add_argument("--size", type=int, default=128, help="output image side in pixels")
    p.add_argument("--out", required=True, metavar="CACHE_DIR",
                   help="cache folder for the <split>_<size>.npy arrays, their ids and manifests")
    p.add_argument("--split", choices=("train", "test", "both"), default="both", help="which parquets to preprocess")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="threads cropping in parallel (default: the number of CPUs)")
    p.add_argument("--batch-size", type=positive_int, default=2048, help="images read from a parquet at a time")
    p.add_argument("--interpolation", default="linear", choices=("area", "linear", "cubic", "nearest", "lanczos"),
                   help="cv2.resize interpolation (Iafoss's kernel used linear)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache is up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_preprocess(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import data
    from .preprocess import build_cache, check_split

    splits = ["train", "test"] if args.split == "both" else [args.split]
    todo = []
    for split in splits:
        try:
            data.image_parquets(args.data_dir, split)
        except DataError as err:
            if args.split != "both" or not Path(args.data_dir).is_dir() \
                    or (Path(args.data_dir) / data.INCOMPLETE_MARKER).exists():
                raise
            print(f"note: skipping {split}: {err.problem}")
            continue
        todo.append(split)
    if not todo:
        raise DataError(args.data_dir,
                        "no train_image_data_*.parquet or test_image_data_*.parquet files in this folder")
    for split in todo:  # every split checked before any is written (a bad test split leaves no train cache)
        check_split(args.data_dir, split)
    for split in todo:
        info = build_cache(args.data_dir, split, size=args.size, out_dir=args.out, workers=args.workers,
                           progress=not args.no_progress, batch_size=args.batch_size, force=args.force,
                           interpolation=args.interpolation)
        if info.reused:
            print(f"{split}: {info.n_images} images ({info.n_blank} blank), up to date: {info.images_path}")
        else:
            print(f"{split}: {info.n_images} images, {info.n_blank} blank, {info.seconds:.1f} s, "
                  f"{info.images_per_s:.0f} images/s -> {info.images_path}")
    return 0


# ---------------------------------------------------------------- train
def _add_train(p: argparse.ArgumentParser) -> None:
    from .train_config import add_config_arguments

    # One option per TrainConfig field: --data, --out, --model, --size, --epochs, --batch-size, --max-steps,
    # --resume, --overwrite, ...
    add_config_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    import os

    from .train import train
    from .train_config import config_from_args

    run = train(config_from_args(args))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only the first process reports
        print(run)
    return 0


_PRIOR_HELP = ("class-prior correction k: each head predicts the argmax of p / count**k, count = the training images "
               "of each class (recorded by train); 0 = plain argmax; default: the k the checkpoint carries "
               "(set by export --prior-power, else 0)")


# ---------------------------------------------------------------- predict
def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="competition folder with test.csv and test parquets")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="checkpoint to predict with (repeat to average several models)")
    p.add_argument("--out", default="submission.csv", help="submission file to write")
    p.add_argument("--tta", action="store_true", help="average flip-free shifted/scaled views (slower)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:N or mps; auto takes a GPU this torch can run on, else the CPU")
    p.add_argument("--prior-power", type=non_negative_float, default=None, metavar="K", help=_PRIOR_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_predict(args: argparse.Namespace) -> int:
    from .submission import predict_to_submission

    result, sub = predict_to_submission(args.data, args.checkpoint, args.out, batch_size=args.batch_size,
                                        device=args.device, tta=args.tta, overwrite=args.overwrite,
                                        progress=not args.no_progress, prior_power=args.prior_power)
    print(result.summary())
    print(f"wrote {args.out} ({len(sub)} rows)")
    return 0


# ---------------------------------------------------------------- evaluate
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="competition folder with train.csv and train parquets")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="checkpoint to score (repeat to score the average of several models, as predict makes it)")
    p.add_argument("--all", dest="all_images", action="store_true",
                   help="score every labelled image, not only the run's validation images (val_ids.csv beside "
                        "the checkpoint)")
    p.add_argument("--also", action="append", default=[], metavar="FOLDER",
                   help="also score every labelled image of this folder, reported alone and together with --data "
                        "(e.g. import-crops' unseen/ beside val/: the unseen-triple detector's AUROC needs both); "
                        "a folder lacking some classes is also scored over its own labels; may be repeated")
    p.add_argument("--prior-power", type=non_negative_float, default=None, metavar="K", help=_PRIOR_HELP)
    p.add_argument("--tta", action="store_true", help="average flip-free shifted/scaled views")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:N or mps; auto takes a GPU this torch can run on, else the CPU")
    p.add_argument("--worst", type=non_negative_int, default=10, help="how many of the worst classes to list")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the scores (weighted and per component), the image count and the checkpoint "
                        "to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .data import data_files
    from .evaluation import evaluate
    from .files import atomic_write_text, check_output_file

    if args.json:  # before the (slow) scoring; never one of the files it reads
        inputs = [*data_files(args.data), *(f for d in args.also for f in data_files(d)), *args.checkpoint,
                  *(Path(c).parent / "val_ids.csv" for c in args.checkpoint)]
        check_output_file(args.json, overwrite=args.overwrite, inputs=inputs)
    res = evaluate(args.data, args.checkpoint, all_images=args.all_images, batch_size=args.batch_size,
                   device=args.device, tta=args.tta, progress=not args.no_progress, prior_power=args.prior_power,
                   also=args.also)
    print(res.summary(worst=args.worst))
    print(res.prediction.summary())
    if args.json:
        ckpts = [str(c) for c in args.checkpoint]
        record = {"checkpoint": ckpts[0] if len(ckpts) == 1 else ckpts, "data": str(args.data), "subset": res.subset,
                  "n_images": int(res.n_images), "tta": bool(args.tta),
                  "prior_power": float(res.prediction.prior_power),
                  "scores": {k: float(v) for k, v in res.scores.items()},
                  "detector": res.detector}
        if res.folders:
            record["folders"] = {f: {"n_images": part["n_images"],
                                     **{key: {k: float(v) for k, v in part[key].items()}
                                        for key in ("scores", "present_scores")}}
                                 for f, part in res.folders.items()}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return 0


# ---------------------------------------------------------------- package
def _add_package(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", required=True, help="checkpoint to bundle (repeatable)")
    p.add_argument("--out", required=True, help="package folder to write (uploaded as a Kaggle dataset)")
    p.add_argument("--user", required=True, help="your Kaggle user name")
    p.add_argument("--slug", required=True, help="dataset slug, e.g. bengali-effnet-b0 (6-40 chars: a-z 0-9 -)")
    p.add_argument("--title", default=None, help="dataset title (default: from the slug)")
    p.add_argument("--accelerator", choices=("t4", "t4x2", "p100", "cpu"), default="t4",
                   help="the kernel's machine_shape: t4 and t4x2 both get Kaggle's GPU T4 x2 (NvidiaTeslaT4); "
                        "p100 (NvidiaTeslaP100) falls back to the CPU, Kaggle's torch having no P100 kernels")
    p.add_argument("--include-init", default=None, metavar="CKPT",
                   help="also bundle this checkpoint under init/ as a starting point for training on Kaggle "
                        "(e.g. weights/synth-b0-96.pt, for train --init)")
    p.add_argument("--wheel-dir", default=None,
                   help="folder of prebuilt wheels (bengali_kit-*.whl, efficientnet_pytorch-*.whl) to use "
                        "instead of building them")
    p.add_argument("--deps", choices=("auto", "installed", "pip"), default="auto",
                   help="how to make the efficientnet-pytorch wheel: repack the installed copy, pip wheel "
                        "(needs the package index), or auto (installed, then pip)")
    p.add_argument("--tta", action="store_true", help="make the kernel use test-time augmentation")
    p.add_argument("--batch-size", type=int, default=256, help="the kernel's batch size")
    p.add_argument("--verify", action="store_true",
                   help="then run the kernel offline in a fresh venv on synthetic data and check its submission")
    p.add_argument("--verify-data", default=None,
                   help="competition folder for --verify (default: a small synthetic one)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the package already in --out (only a package folder is replaced)")


def _run_package(args: argparse.Namespace) -> int:
    from .kaggle import build_package, verify_package

    info = build_package(args.checkpoint, args.out, user=args.user, slug=args.slug, title=args.title,
                         wheel_dir=args.wheel_dir, deps=args.deps, tta=args.tta, batch_size=args.batch_size,
                         overwrite=args.overwrite, accel=args.accelerator, include_init=args.include_init)
    print(f"package {info.dataset_id} written to {info.out_dir} in {info.seconds:.1f} s:")
    print(info.listing())
    status = 0
    if args.verify:
        report = verify_package(info.out_dir, data_dir=args.verify_data)
        print(report.summary())
        if not report.ok:
            print(report.kernel_log[-4000:], file=sys.stderr)
            status = 1
    if info.estimate is not None:
        print("\n".join(info.estimate.lines()))
    print(info.submission_text())
    return status


# ---------------------------------------------------------------- import-crops
def _add_import_crops(p: argparse.ArgumentParser) -> None:
    p.description = ("Turn npz files of real crops into competition folders: train/, val/ (and unseen/), split by "
                     "(root, vowel, consonant) triple. Several npz files are read as one set (an image_id in two "
                     "of them is an error); every option applies to that union.")
    p.add_argument("npz", nargs="+", help="npz file(s) of real crops (e.g. real_sample_64.npz real_more_64.npz)")
    p.add_argument("out_dir", help="folder to write train/ and val/ competition folders into")
    p.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="leave out the crops this file lists (an npz of crops or a text file of image ids, one a "
                        "line), e.g. the held-out slice tests/data/real_heldout_64.npz; may be repeated")
    p.add_argument("--train-per-triple", type=positive_int, default=None,
                   help="keep at most this many training crops of each triple (smaller counts give subsets of "
                        "larger ones; val/ does not change): the data-scaling rows")
    p.add_argument("--val-per-triple", type=non_negative_int, default=1,
                   help="images of each (root, vowel, consonant) triple sent to val/ (a triple keeps >= 1 for train); "
                        "0: every crop to train/, no val/ (to train a model on all of them)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the split")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="import only whole triples (first seen first) up to this many crops, e.g. for a quick test")
    p.add_argument("--placed-size", type=positive_int, default=112,
                   help="side in pixels a crop is scaled to before it is centred on the 137x236 frame")
    p.add_argument("--files", type=positive_int, default=4,
                   help="parquet files per split (default 4, as the real data)")
    p.add_argument("--unseen-fraction", type=float, default=0.0,
                   help="hold out about this share of the triples entirely into unseen/ (every root, vowel and "
                        "consonant stays in train/): graphemes the model never trains on, as in Kaggle's private "
                        "test set")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files an earlier import-crops or synth wrote there, as its .bengali_kit.json "
                        "lists them (other files are kept; a folder of competition files without one is refused)")


def _run_import_crops(args: argparse.Namespace) -> int:
    from .realdata import import_crops

    rep = import_crops(args.npz, args.out_dir, val_per_triple=args.val_per_triple, seed=args.seed,
                       limit=args.limit, placed_size=args.placed_size, files=args.files, overwrite=args.overwrite,
                       unseen_fraction=args.unseen_fraction, exclude=args.exclude,
                       train_per_triple=args.train_per_triple)
    if rep.n_excluded:
        print(f"{rep.n_excluded} crops left out (listed in {', '.join(args.exclude)})")
    if rep.n_unseen_triples < rep.n_unseen_asked:
        print(f"note: --unseen-fraction {args.unseen_fraction} asks for {rep.n_unseen_asked} held-out triples; "
              f"{rep.n_unseen_triples} can go while every root, vowel and consonant stays in train/")
    unseen = (f", {rep.n_unseen} of {rep.n_unseen_triples} held-out triples -> {rep.unseen_dir}"
              if rep.unseen_dir else "")
    val = f", {rep.n_val} -> {rep.val_dir}" if rep.val_dir else ""
    print(f"{rep.n_train + rep.n_val + rep.n_unseen} crops of {rep.n_triples} triples: "
          f"{rep.n_train} -> {rep.train_dir}{val}{unseen}")
    return 0


# ---------------------------------------------------------------- export
def _add_export(p: argparse.ArgumentParser) -> None:
    p.description = ("Write the shippable part of a run's checkpoint: the validated weights (the EMA when the run "
                     "kept one), model config, image size, crop parameters, scores and training config; no "
                     "optimizer or RNG state. Float16 by default (half the size; loading casts back).")
    p.add_argument("checkpoint", help="a run's best.pt or last.pt")
    p.add_argument("out", help="file to write, e.g. weights/synth-b0-96.pt")
    p.add_argument("--float32", action="store_true", help="keep float32 weights instead of float16")
    p.add_argument("--prior-power", type=non_negative_float, default=None, metavar="K",
                   help="class-prior correction k that predict, evaluate and the Kaggle kernel apply by default with "
                        "this file (argmax of p / count**k per head; needs the class counts train records); "
                        "default: keep the checkpoint's (0 when it has none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")


def _run_export(args: argparse.Namespace) -> int:
    import hashlib
    from pathlib import Path

    from .export import export_weights

    ck = export_weights(args.checkpoint, args.out, half=not args.float32, overwrite=args.overwrite,
                        prior_power=args.prior_power)
    data = Path(args.out).read_bytes()
    metric = ck.get("metric")
    power = (ck.get("inference") or {}).get("prior_power", 0)
    print(f"exported {args.checkpoint} -> {args.out}: {len(data) / 1e6:.2f} MB, "
          f"{'float32' if args.float32 else 'float16'} {ck['exported_from']['weights']} weights"
          + (f", validation metric {metric:.4f}" if isinstance(metric, float) else "")
          + (f", class-prior correction k={power:g}" if power else "")
          + f", sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


SUBCOMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "synth": ("write a synthetic competition folder (rendered Bengali graphemes)", _add_synth, _run_synth),
    "preprocess": ("crop/resize the image parquets of a folder into a uint8 cache", _add_preprocess, _run_preprocess),
    "train": ("train the multi-output EfficientNet", _add_train, _run_train),
    "predict": ("predict the test parquets and write submission.csv", _add_predict, _run_predict),
    "evaluate": ("score a checkpoint on labelled images", _add_evaluate, _run_evaluate),
    "export": ("write a small shippable checkpoint (weights only, float16)", _add_export, _run_export),
    "package": ("build the Kaggle dataset folder (weights, wheels, offline kernel)", _add_package, _run_package),
    "import-crops": ("turn an npz of real crops into competition folders", _add_import_crops, _run_import_crops),
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default worth showing and the help doesn't give it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line (the option, the problem, where to look), exit status 2 like any bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``bengali-kit`` parser with one subparser per command."""
    parser = _Parser(
        prog="bengali-kit",
        description="Bengali.AI handwritten grapheme classification: data, training, inference, Kaggle packaging.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=_HelpFormatter)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bengali-kit`` and ``python -m bengali_kit``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _stop_on_sigterm()
    try:
        return int(args._run(args) or 0)
    except (DataError, ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"bengali-kit {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except _Terminated:
        print(f"bengali-kit {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"bengali-kit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (how Kaggle and job schedulers stop a job), raised like Ctrl-C so that temp files are removed."""


def _stop_on_sigterm() -> Any:
    """Make SIGTERM raise ``_Terminated`` in this process (not in its forked workers); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    main_pid = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a forked worker: die as it would have died
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _message(err: BaseException) -> str:
    """One line for the user: the file and the problem, never a traceback or a multi-line library message."""
    if isinstance(err, OSError) and err.filename is not None:
        return one_line(f"{err.filename}: {os_problem(err)}")
    return one_line(str(err))
