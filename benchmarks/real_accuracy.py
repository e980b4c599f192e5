"""Accuracy on real handwriting: plain training vs the kit's recipe vs synthetic pretraining alone.

Every figure comes from ``bengali-kit`` commands run in this process through ``bengali_kit.cli.main`` (the
same code paths a user runs); this script only chains them and tabulates ``best.pt``'s scores. Each command
is printed before it runs, so any row can be repeated by hand.

The standard split (default, ``--split 45``) reads both shared files, ``real_sample_64.npz`` and
``real_more_64.npz`` (45 crops for each of the 1,292 triples), leaves out the vendored held-out slice
(``tests/data/real_heldout_64.npz``: one crop per triple, never trained on by a shipped model) and sends 5 of
the other 44 crops of each triple to validation (6,460) and 39 to training (50,388), with seed 0:
``import-crops real_sample_64.npz real_more_64.npz --exclude tests/data/real_heldout_64.npz --val-per-triple 5``.
``--train-per-triple K`` keeps K of the 39 (nested subsets; the same validation crops): the data-scaling rows.
``--split 5`` is the older few-shot split of ``real_sample_64.npz`` alone, 4 train / 1 validation per triple.
Side by side:

  (a)  plain: b0 from scratch, average pooling, AdamW without weight decay, one-cycle peak 3e-3, batch 64,
       affine ±11° / scale ±15 % / shift ±10 %, no EMA, no label smoothing; ``--budget`` seconds;
  (a+) the same, given the fine-tuning budget plus the pretraining time (equal total CPU);
  (b)  the recipe of kit 0.3 (``--preset cpu-real`` with the 0.3 values pinned: 64 px, no rendered share,
       no erasing) from the 0.3 start, ``synth-b0-64.pt`` (shipped until 2026-12-06; restored from git history
       into the cache, or ``--init-b``), ``--budget`` seconds; the knob rows are (b) + ``--set``;
  (c)  the synthetic checkpoint (``--init``, default ``weights/synth-b0-96.pt``) alone (``evaluate --all`` on
       the validation crops): no real image seen;
  (d)  the recipe as it stands: ``--preset cpu-real --init <synthetic checkpoint>``, ``--budget`` seconds; its
       checkpoints carry the preset's class-prior correction k 0.5 (from 2026-12-06), so its rows are scored
       with it; ``--prior-sweep`` rescores every row at each k.

    python benchmarks/real_accuracy.py --budget 3600 --init weights/synth-b0-96.pt
    python benchmarks/real_accuracy.py --budget 600 --only b --set ema_decay=0 --tag no-ema   # a knob row
    python benchmarks/real_accuracy.py --budget 3600 --unseen        # unseen graphemes (below)
    python benchmarks/real_accuracy.py --epochs 44 --only a,b --unseen  # epochs instead of seconds
    python benchmarks/real_accuracy.py --epochs 11 --only b --set image_size=96 --train-per-triple 15
    python benchmarks/real_accuracy.py --split 5 --budget 3500 --only b --set image_size=96   # 5 per triple

``--epochs N`` trains each row for N epochs instead of ``--budget`` seconds: the same work whatever else loads
the machine (a shared CPU makes a time budget buy fewer steps), so rows run side by side stay comparable.

``--unseen``: about 10 % of the triples are held out entirely (``import-crops --unseen-fraction 0.1``: every
root, vowel and consonant still seen in training); the rest is split as above. Each row then reports the
recall on the validation crops of seen triples and on all crops of the unseen ones (``evaluate --all``).
The unseen triples hold about half of the roots, and Kaggle's call counts a zero for every root a mistake lands
on that the subset lacks; so each row also gives the unseen recall over the subset's own labels
(``metrics.present_label_recalls``: how those images count in a test set holding every class), and seen
triples scored both ways on draws of as many triples as ``unseen/`` holds (what the subset alone costs).
``--split-seed`` picks the held-out triples (and the validation crops): choose a recipe on one seed, report it
on another.

Results are appended to ``benchmarks/.cache/results.jsonl`` (one JSON object per run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bengali_kit.cli import main as kit  # noqa: E402
from bengali_kit.components import COMPONENTS  # noqa: E402
from bengali_kit.files import atomic_write_bytes  # noqa: E402
from bengali_kit.model import load_checkpoint  # noqa: E402

SHARED = ROOT.parent / "shared" / "reference"
REFERENCE = SHARED / "real_sample_64.npz"
MORE = SHARED / "real_more_64.npz"
HELDOUT = ROOT / "tests" / "data" / "real_heldout_64.npz"
CACHE = Path(__file__).resolve().parent / ".cache"

# (b): what ``cpu-real`` held in kit 0.3, before issue 28's levers joined the preset
RECIPE_0_3 = ["--image-size", "64", "--synthetic-mix", "0", "--erase-p", "0", "--prior-power", "0"]
# and its start, the synthetic checkpoint shipped until 2026-12-06 (64 px, 4,505 s of pretraining): every
# published (b) row fine-tunes it. Restored from the repository's history into the cache when first needed.
START_0_3 = CACHE / "synth-b0-64.pt"
START_0_3_COMMIT = "0295374c400ace5168575f44d1c1834e3247cc86"

PLAIN = ["--pooling", "avg", "--optimizer", "adamw", "--weight-decay", "0", "--lr", "3e-3", "--batch-size", "64",
         "--schedule", "onecycle", "--warmup", "0.1", "--affine-degrees", "11", "--affine-scale", "0.85", "1.15",
         "--affine-translate", "0.1", "--affine-shear", "0", "--cutmix-p", "0", "--label-smoothing", "0",
         "--ema-decay", "0"]


def start_0_3() -> Path:
    """``weights/synth-b0-64.pt`` as it was shipped (sha256 7a81861f…), from git history into the cache."""
    if not START_0_3.is_file():
        data = subprocess.run(["git", "-C", str(ROOT), "show", f"{START_0_3_COMMIT}:weights/synth-b0-64.pt"],
                              check=True, capture_output=True).stdout
        atomic_write_bytes(START_0_3, data)
    return START_0_3


def pretraining_seconds(checkpoint: str | Path) -> float:
    """The training seconds a synthetic checkpoint records; SystemExit when it continued another checkpoint,
    whose time it does not hold (``synth-b0-96.pt`` records its second stage only: give --pretrain-seconds)."""
    ck = load_checkpoint(checkpoint)
    if ck.get("init_from"):
        raise SystemExit(f"{checkpoint}: continued from {ck['init_from'].get('path')}, so its 'seconds' are its last "
                         "stage's only; give the whole pretraining time with --pretrain-seconds")
    return float(ck.get("seconds", 0.0))


def run(argv: list[str]) -> None:
    """Run one ``bengali-kit`` command, printed first; stop on failure."""
    print("+ bengali-kit " + " ".join(argv), flush=True)
    status = kit(argv)
    if status:
        raise SystemExit(f"bengali-kit {argv[0]} failed with status {status}")


def prepare(split: str, unseen: bool = False, split_seed: int = 0, train_per_triple: int | None = None) -> Path:
    """The split as competition folders (``train/``, ``val/``, ``unseen/``) under benchmarks/.cache; its path."""
    name = {"45": "real_45", "5": "real_4_1"}[split]
    name += "_unseen" if unseen else ""
    name += f"_seed{split_seed}" if split_seed else ""
    name += f"_train{train_per_triple}" if train_per_triple else ""
    out = CACHE / name
    if split == "45":
        args = [str(REFERENCE), str(MORE), str(out), "--exclude", str(HELDOUT), "--val-per-triple", "5"]
    else:
        args = [str(REFERENCE), str(out), "--val-per-triple", "1"]
    if unseen:
        args += ["--unseen-fraction", "0.1"]
    if train_per_triple:
        args += ["--train-per-triple", str(train_per_triple)]
    if not (out / ("unseen" if unseen else "val") / "train.csv").is_file():
        run(["import-crops", *args, "--seed", str(split_seed), "--overwrite"])
    return out


def scores_on(folder: Path, checkpoint: str | Path, out: Path) -> dict:
    """``evaluate --all`` of ``checkpoint`` on every labelled crop of ``folder``."""
    if not out.is_file():
        run(["evaluate", "--data", str(folder), "--checkpoint", str(checkpoint), "--all", "--no-progress",
             "--worst", "0", "--json", str(out)])
    return json.loads(out.read_text())["scores"]


def seen_and_unseen(folders: Path, checkpoint: str | Path, out: Path) -> dict:
    """``evaluate`` of ``checkpoint`` on ``val/`` (seen triples) with ``--also unseen/``: per-folder scores (also
    over each folder's own labels) and the detector's AUROC of telling the two apart."""
    unseen = str(folders / "unseen")
    if not out.is_file() or "present_scores" not in json.loads(out.read_text())["folders"][unseen]:
        run(["evaluate", "--data", str(folders / "val"), "--also", unseen, "--checkpoint", str(checkpoint),
             "--all", "--no-progress", "--worst", "0", "--json", str(out), "--overwrite"])
    return json.loads(out.read_text())


def _probabilities(folders: Path, run: Path, name: str) -> dict[str, np.ndarray]:
    """Each head's probabilities (no prior correction) of ``run``'s best.pt on every crop of ``folders/name``,
    with ``y_true``; kept beside the run (npz), so that every sweep runs the network once per folder."""
    from bengali_kit.evaluation import evaluate

    out = run.parent / f"{run.name}-{name}-probabilities.npz"
    if not out.is_file():
        res = evaluate(folders / name, run / "best.pt", all_images=True, progress=False, prior_power=0.0)
        np.savez(out, y_true=res.y_true, image_ids=res.prediction.image_ids.astype(str),
                 **res.prediction.probabilities)
    with np.load(out) as found:
        return {k: found[k] for k in found.files}


def prior_sweep(folders: Path, run: Path, powers: list[float]) -> dict[str, tuple[float, ...]]:
    """Weighted recall of ``run``'s best.pt on the validation crops at each class-prior correction k; on a split
    with ``unseen/``, then the unseen triples' by Kaggle's call and over their own labels
    (``metrics.present_label_recalls``)."""
    from bengali_kit.evaluation import sweep_prior_power
    from bengali_kit.priors import checkpoint_class_counts, log_prior

    ck = run / "best.pt"
    prior = log_prior(checkpoint_class_counts(load_checkpoint(ck), ck))
    scored = [("val", False)] + ([("unseen", False), ("unseen", True)] if (folders / "unseen").is_dir() else [])
    probs = {name: _probabilities(folders, run, name) for name in {name for name, _ in scored}}
    found = [sweep_prior_power({c: probs[name][c] for c in COMPONENTS}, probs[name]["y_true"], prior, powers,
                               present_only=present_only)
             for name, present_only in scored]
    return {f"{k:g}": tuple(sweep[k] for sweep in found) for k in powers}


def seen_subset_control(folders: Path, run: Path, draws: int = 5) -> tuple[float, float]:
    """Seen triples scored as the unseen ones are: draws of as many seen triples as ``unseen/`` holds (seeded),
    each scored by Kaggle's call and over its own labels; the means. What the subset alone costs the figure."""
    from bengali_kit.metrics import component_recalls, present_label_recalls
    from bengali_kit.priors import in_triples

    seen = _probabilities(folders, run, "val")
    y_true, labels = seen["y_true"], np.stack([seen[c].argmax(1) for c in COMPONENTS], 1)
    triples = np.unique(y_true, axis=0)
    n_unseen = len(np.unique(_probabilities(folders, run, "unseen")["y_true"], axis=0))
    rng = np.random.default_rng(0)
    found = []
    for _ in range(draws):
        rows = in_triples(y_true, triples[rng.choice(len(triples), n_unseen, replace=False)])
        found.append((component_recalls(y_true[rows], labels[rows])["weighted"],
                      present_label_recalls(y_true[rows], labels[rows])["weighted"]))
    kaggle, own = np.mean(found, axis=0)
    return float(kaggle), float(own)


def blend_sweep(folders: Path, runs: Path, specialist: str, generalist: str,
                weights: list[float]) -> dict[str, tuple[float, float, float]]:
    """Seen and unseen weighted recall (and unseen over its own labels) when the root comes from a blend of
    two runs' root heads (``w`` of the generalist's), and when it is routed: the generalist's root for an image
    whose predicted triple is not one the specialist trained on, the specialist's elsewhere."""
    from bengali_kit.metrics import component_recalls, present_label_recalls
    from bengali_kit.priors import checkpoint_triples, in_triples

    ck = runs / specialist / "best.pt"
    triples = checkpoint_triples(load_checkpoint(ck), ck)
    root = COMPONENTS[0]
    labels: dict[str, dict[str, np.ndarray]] = {}
    truth = {}
    for name in ("val", "unseen"):
        spec = _probabilities(folders, runs / specialist, name)
        gen = _probabilities(folders, runs / generalist, name)
        assert (spec["image_ids"] == gen["image_ids"]).all()
        truth[name] = spec["y_true"]
        predicted = np.stack([spec[c].argmax(1) for c in COMPONENTS], 1)
        for w in weights:
            blended = predicted.copy()
            blended[:, 0] = ((1 - w) * spec[root] + w * gen[root]).argmax(1)
            labels.setdefault(f"root blend w={w:g}", {})[name] = blended
        routed = predicted.copy()
        novel = ~in_triples(predicted, triples)
        routed[novel, 0] = gen[root][novel].argmax(1)
        labels.setdefault("routed", {})[name] = routed
    return {k: (component_recalls(truth["val"], v["val"])["weighted"],
                component_recalls(truth["unseen"], v["unseen"])["weighted"],
                present_label_recalls(truth["unseen"], v["unseen"])["weighted"]) for k, v in labels.items()}


def _finished(out: Path, epochs: int, budget: float) -> bool:
    """Whether the run in ``out`` has trained its ``epochs`` (or spent its ``budget`` seconds)."""
    if not (out / "last.pt").is_file():
        return False
    last = load_checkpoint(out / "last.pt")
    # a time budget stops at the first step past it, so a finished run's clock is at or just over the budget
    return last["epoch"] >= epochs if epochs else float(last.get("seconds", 0.0)) >= budget - 1.0


def train_row(name: str, folders: Path, budget: float, extra: list[str], out: Path, epochs: int = 0) -> dict:
    """Train on ``folders/train`` for ``budget`` seconds (or ``epochs`` epochs when given), validating on
    ``folders/val``; best.pt's scores."""
    length = ["--epochs", str(epochs)] if epochs else ["--epochs", "1000", "--time-budget", str(budget)]
    if not _finished(out, epochs, budget):
        # a run stopped part-way (a session's end) continues from its last.pt: the same figures as one go
        again = ["--resume"] if (out / "last.pt").is_file() else ["--overwrite"]
        run(["train", "--data", str(folders / "train"), "--val-data", str(folders / "val"), "--out", str(out),
             "--cache-dir", str(CACHE / "cache"), *length, "--no-progress", *again, *extra])
    ck = load_checkpoint(out / "best.pt")
    return {"name": name, "scores": ck["scores"], "seconds": float(load_checkpoint(out / "last.pt")["seconds"]),
            "epoch": ck["epoch"], "run": str(out)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (data_scaling.py reads the results' argv with it too)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds of training on real crops for (a), (b), (d)")
    ap.add_argument("--epochs", type=int, default=0,
                    help="train (a), (b), (d) this many epochs instead of --budget seconds (load-independent)")
    ap.add_argument("--init", default=str(ROOT / "weights" / "synth-b0-96.pt"),
                    help="the synthetically pretrained checkpoint for (c), (d) and (a+)'s time")
    ap.add_argument("--init-b", default=None,
                    help="the start of (b) (default: the 0.3 recipe's, synth-b0-64.pt from git history)")
    ap.add_argument("--pretrain-seconds", type=float, default=None,
                    help="its pretraining time, for (a+) (default: the 'seconds' the checkpoint records; "
                         "needed for a checkpoint that continued another, such as synth-b0-96.pt: 9937)")
    ap.add_argument("--only", default="a,b,c", help="comma-separated rows to run: a, a+, b, c, d")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="extra train option for (b) and (d), e.g. ema_decay=0 (becomes --ema-decay 0)")
    ap.add_argument("--tag", default="", help="name of this setting in the results (knob table rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plain-size", type=int, default=64,
                    help="image size of (a) and (a+); 96 gives (a) the recipe's work per epoch")
    ap.add_argument("--unseen", action="store_true", help="hold out 10%% of the triples; report seen and unseen")
    ap.add_argument("--split", choices=("45", "5"), default="45",
                    help="45: both shared files, 39 train / 5 val per triple, the held-out slice left out "
                         "(default); 5: real_sample_64.npz alone, 4 train / 1 val per triple")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the split (and of the held-out triples)")
    ap.add_argument("--prior-sweep", default="", metavar="K,K,...",
                    help="recall of each trained row at these class-prior corrections k (argmax of "
                         "p / count**k), with --unseen for seen and unseen triples; e.g. 0,0.25,0.5,0.75,1")
    ap.add_argument("--train-per-triple", type=int, default=None,
                    help="train on this many crops of each triple (subsets of the 39; same validation crops)")
    ap.add_argument("--blend", default="", metavar="SPECIALIST,GENERALIST",
                    help="with --unseen, train nothing: two finished run folders' names (e.g. "
                         "b-recipe96-2ep-seed0,b-mix25-2ep-seed0); seen and unseen recall when the root is "
                         "blended from both, or routed to the generalist for predicted triples never trained on")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    if args.blend:
        if not args.unseen:
            ap.error("--blend needs --unseen (it reports seen and unseen triples)")
        folders = prepare(args.split, True, args.split_seed, args.train_per_triple)
        specialist, generalist = args.blend.split(",")
        sweep = blend_sweep(folders, CACHE / f"runs_{folders.name}", specialist, generalist, [0, 0.25, 0.5, 0.75, 1])
        print(f"specialist {specialist}, generalist {generalist}")
        for k, (seen, unseen, own) in sweep.items():
            print(f"  {k:<24} seen {seen:.4f}, unseen {unseen:.4f} (own labels {own:.4f})")
        with open(CACHE / "results.jsonl", "a") as fh:
            fh.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:], "blend": sweep}) + "\n")
        return 0

    folders = prepare(args.split, args.unseen, args.split_seed, args.train_per_triple)
    runs = CACHE / (f"runs_{folders.name}" if args.split == "45" else
                    "runs_unseen" if args.unseen else "runs")
    extra_b = [w for kv in args.set for w in (f"--{kv.split('=')[0].replace('_', '-')}", *kv.split("=", 1)[1].split())]
    tag = f"-{args.tag}" if args.tag else ""
    rows = []
    only = args.only.split(",")
    seed = ["--seed", str(args.seed)]
    length = f"{args.epochs}ep" if args.epochs else f"{args.budget:.0f}s"
    plain = [*PLAIN, "--size", str(args.plain_size), *seed]
    size = f"-{args.plain_size}px" if args.plain_size != 64 else ""
    if "a" in only:
        rows.append(train_row("(a) plain", folders, args.budget, plain, runs / f"a{size}-{length}-seed{args.seed}",
                              args.epochs))
    if "a+" in only:  # always by the clock: --budget plus the pretraining's seconds
        pre = args.pretrain_seconds or pretraining_seconds(args.init)
        rows.append(train_row("(a+) plain, + pretraining time", folders, args.budget + pre, plain,
                              runs / f"a+{size}-{args.budget + pre:.0f}s-seed{args.seed}"))
    if "b" in only:
        rows.append(train_row(f"(b) recipe{tag}", folders, args.budget,
                              ["--preset", "cpu-real", *RECIPE_0_3, "--init", str(args.init_b or start_0_3()), *seed,
                               *extra_b],
                              runs / f"b{tag}-{length}-seed{args.seed}", args.epochs))
    if "d" in only:
        rows.append(train_row(f"(d) recipe{tag}", folders, args.budget,
                              ["--preset", "cpu-real", "--init", args.init, *seed, *extra_b],
                              runs / f"d{tag}-{length}-seed{args.seed}", args.epochs))
    if "c" in only:
        t = time.perf_counter()
        rows.append({"name": "(c) synthetic only", "run": None, "seconds": time.perf_counter() - t,
                     "scores": scores_on(folders / "val", args.init, runs / f"c-{Path(args.init).stem}-val.json")})
    if args.unseen:  # every row's checkpoint on the held-out triples as well, and the unseen-image detector
        for r in rows:
            ck = Path(r["run"]) / "best.pt" if r.get("run") else Path(args.init)
            name = Path(r["run"]).name if r.get("run") else f"c-{ck.stem}"
            both = seen_and_unseen(folders, ck, runs / f"{name}-seen-unseen.json")
            part = both["folders"][str(folders / "unseen")]
            r["unseen_scores"], r["unseen_present"], r["detector"] = (part["scores"], part["present_scores"],
                                                                      both["detector"])
            if r.get("run"):
                r["seen_subset"] = seen_subset_control(folders, Path(r["run"]))
    if args.prior_sweep:
        for r in rows:
            if r.get("run"):
                r["prior_sweep"] = prior_sweep(folders, Path(r["run"]), [float(k) for k in args.prior_sweep.split(",")])
    print(f"\n{'':<40} weighted  root    vowel   consonant  seconds")
    for r in rows:
        for label, key in (("", "scores"), ("  unseen triples", "unseen_scores"),
                           ("  unseen, own labels", "unseen_present")):
            if key in r:
                s = r[key]
                print(f"{r['name'] + label:<40} {s['weighted']:.4f}   " + "  ".join(f"{s[c]:.4f}" for c in COMPONENTS)
                      + f"   {r['seconds']:7.0f}")
        if r.get("seen_subset"):
            kaggle, own = r["seen_subset"]
            print(f"{'  seen, as many triples as unseen':<40} {kaggle:.4f} (own labels {own:.4f}; mean of 5 draws)")
        if r.get("detector"):
            d = r["detector"]
            print(f"{'  detector AUROC':<40} confidence {d['auroc_confidence']:.4f}, "
                  f"predicted triple {d['auroc_predicted_triple']:.4f}")
        for k, (seen, *unseen) in r.get("prior_sweep", {}).items():
            print(f"{'  prior k=' + k:<40} seen {seen:.4f}"
                  + (f", unseen {unseen[0]:.4f} (own labels {unseen[1]:.4f})" if unseen else ""))
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "results.jsonl", "a") as fh:
        for r in rows:
            fh.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:], **r}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
