"""The data-scaling table: recall against real crops per triple, a power-law fit, and its reading at Kaggle's 155.

Reads the rows ``real_accuracy.py`` appended to ``benchmarks/.cache/results.jsonl`` on the standard split
(no ``--unseen``, no ``--split 5``), run by epochs: (a) plain at 96 px (``--plain-size 96``) and (b) the recipe at
96 px (``--tag recipe96``), at 5, 15 and 39 training crops per triple (``--train-per-triple``; 39 when absent),
each with the same work (epochs × crops per triple). Seeds of one point are averaged.

Per row it fits error = A · n^(-alpha) (error = 1 - weighted recall; least squares on logs) and reads it at
``--at`` crops per triple; and the same for pretraining's gain, (b) - (a). A power law with no floor keeps
falling where real curves flatten, so its reading is the optimistic end. Prints a markdown table (with each
fit's largest miss of its own points; a row whose recall falls as the data grows is flagged, since no power law
runs through it) and writes a log-log plot (such a row's fit dashed)::

    python benchmarks/data_scaling.py --plot benchmarks/figures/data_scaling.png
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from bengali_kit.plots import save_figure

CACHE = Path(__file__).resolve().parent / ".cache"
KAGGLE_PER_TRIPLE = 155
TRAIN_PER_TRIPLE = 39  # the standard split's training crops per triple (no --train-per-triple)
WORK = 5 * TRAIN_PER_TRIPLE  # epochs × crops per triple of every point: the recipe's 5 epochs of the 39


@functools.lru_cache(maxsize=1)
def _real_accuracy_parser() -> argparse.ArgumentParser:
    """real_accuracy.py's own command line, raising ValueError where it would exit."""
    spec = importlib.util.spec_from_file_location("real_accuracy", Path(__file__).with_name("real_accuracy.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = module.build_parser()

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser.error = refuse
    return parser


def run_options(record: dict) -> argparse.Namespace | None:
    """The options a results.jsonl record ran with, as real_accuracy.py read them; None when it would not."""
    try:
        options, _unknown = _real_accuracy_parser().parse_known_args(record.get("argv", []))
    except ValueError:
        return None
    return options


def row_of(record: dict, options: argparse.Namespace | None) -> str | None:
    """Which data-scaling row a results.jsonl record, run with ``options``, belongs to: "(a)", "(b)", or None."""
    if options is None or options.unseen or options.split != "45" or not options.epochs or options.blend:
        return None
    name = record.get("name", "")
    if name == "(a) plain" and options.plain_size == 96:
        return "(a)"
    if name == "(b) recipe-recipe96":
        return "(b)"
    return None


def load_points(results: Path, work: int = WORK) -> dict[str, dict[int, dict[int, float]]]:
    """{row: {crops per triple: {seed: weighted recall}}} of the runs whose epochs × crops per triple is ``work``,
    from results.jsonl; a later record of a run wins."""
    points: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for number, line in enumerate(results.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{results}:{number}: not a JSON line ({exc.msg})") from None
        options = run_options(record)
        row = row_of(record, options)
        if row is None:
            continue
        per_triple = options.train_per_triple or TRAIN_PER_TRIPLE
        if options.epochs * per_triple != work:
            continue
        points[row][per_triple][options.seed] = float(record["scores"]["weighted"])
    return {row: dict(by_n) for row, by_n in points.items()}


def add_point(points: dict[str, dict[int, dict[int, float]]], spec: str) -> None:
    """Add ``ROW:N:SEED:RECALL`` (e.g. ``b:39:0:0.8992``), a point measured where this results file was not."""
    try:
        row, per_triple, seed, recall = spec.split(":")
        row, per_triple, seed, recall = f"({row.strip('()')})", int(per_triple), int(seed), float(recall)
    except ValueError:
        raise SystemExit(f"--point {spec}: expected ROW:N:SEED:RECALL, e.g. b:39:0:0.8992") from None
    if row not in ("(a)", "(b)") or not 0 <= recall <= 1:
        raise SystemExit(f"--point {spec}: ROW is a or b and RECALL lies in [0, 1]")
    points.setdefault(row, {}).setdefault(per_triple, {})[seed] = recall


def fit_power_law(per_triple: list[float], error: list[float]) -> tuple[float, float]:
    """(A, alpha) of error = A · n^(-alpha), least squares on log error against log n; needs two points or more."""
    if len(per_triple) < 2 or min(error) <= 0:
        raise ValueError("a power law needs two or more points with a positive error")
    slope, intercept = np.polyfit(np.log(per_triple), np.log(error), 1)
    return float(math.exp(intercept)), float(-slope)


def seed_means(points: dict[str, dict[int, dict[int, float]]]) -> dict[str, dict[int, float]]:
    """{row: {crops per triple: recall averaged over its seeds}}, rows in order."""
    return {row: {n: float(np.mean(list(seeds.values()))) for n, seeds in by_n.items()}
            for row, by_n in sorted(points.items())}


def sizes_of(points: dict[str, dict[int, dict[int, float]]]) -> list[int]:
    """Every crops-per-triple size that some row has a point at, ascending."""
    return sorted({n for by_n in points.values() for n in by_n})


def falls(recall: dict[int, float]) -> list[tuple[int, int]]:
    """Neighbouring sizes (smaller, larger) where recall falls as the data grows: no power law runs there."""
    ns = sorted(recall)
    return [(small, large) for small, large in zip(ns, ns[1:]) if recall[large] < recall[small]]


def table(points: dict[str, dict[int, dict[int, float]]], at: int = KAGGLE_PER_TRIPLE) -> tuple[str, dict]:
    """The markdown table (mean recall per row and n, the fit, its reading at ``at``) and the fits by row."""
    sizes = sizes_of(points)
    means = seed_means(points)
    fits = {}
    warnings = []
    lines = ["| row | " + " | ".join(f"{n} per triple" for n in sizes) + f" | alpha | fit at {at} | largest miss |",
             "|---|" + "---:|" * (len(sizes) + 3)]

    def add(label: str, values: dict[int, float], error_of) -> None:
        ns = sorted(values)
        style = "+.4f" if label.startswith("gain") else ".4f"
        cells = " | ".join(format(values[n], style) if n in values else "" for n in sizes)
        try:
            amplitude, alpha = fit_power_law(ns, [error_of(values[n]) for n in ns])
        except ValueError:
            lines.append(f"| {label} | {cells} | | | |")
            return
        fits[label] = (amplitude, alpha)
        # error_of is its own inverse (1 - recall, or the gain itself): the fit in the row's units
        fitted = {n: error_of(amplitude * n ** -alpha) for n in ns + [at]}
        miss = max(abs(fitted[n] - values[n]) for n in ns)
        lines.append(f"| {label} | {cells} | {alpha:.2f} | {fitted[at]:{style}} | {miss:.4f} |")

    for row, values in means.items():
        add(row, values, lambda recall: 1.0 - recall)
        for small, large in falls(values):
            warnings.append(f"{row} falls from {values[small]:.4f} at {small} to {values[large]:.4f} at {large} "
                            "crops per triple: its fit is no trend (more seeds first)")
    if "(a)" in means and "(b)" in means:
        both = {n: means["(b)"][n] - means["(a)"][n] for n in means["(a)"] if n in means["(b)"]}
        add("gain (b) - (a)", both, lambda gain: gain)
    seeds = {row: {n: len(s) for n, s in by_n.items()} for row, by_n in sorted(points.items())}
    lines.append("")
    lines += [f"warning: {text}" for text in warnings]
    lines.append("seeds per point: " + "; ".join(f"{row} " + ", ".join(f"{n}: {k}" for n, k in sorted(by.items()))
                                                  for row, by in seeds.items()))
    return "\n".join(lines), fits


def plot(points: dict[str, dict[int, dict[int, float]]], fits: dict, out: Path, at: int = KAGGLE_PER_TRIPLE) -> None:
    """Error against crops per triple on log-log axes, each row's points (every seed) and its fit out to ``at``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = sizes_of(points)
    means = seed_means(points)
    grid = np.geomspace(sizes[0], at, 50)
    for (row, by_n), colour in zip(sorted(points.items()), ("tab:grey", "tab:blue")):
        for n, seeds in by_n.items():
            ax.scatter([n] * len(seeds), [1 - r for r in seeds.values()], color=colour, zorder=3)
        if row in fits:
            amplitude, alpha = fits[row]
            trend = not falls(means[row])
            ax.plot(grid, amplitude * grid ** -alpha, color=colour, linestyle="-" if trend else "--",
                    label=f"{row}: error ∝ n^-{alpha:.2f}" + ("" if trend else " (no trend: recall falls)"))
            error_at = amplitude * at ** -alpha
            ax.annotate(f"recall {1 - error_at:.3f}", (at, error_at), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=8, color=colour)
    ax.axvline(at, color="k", linestyle=":", label=f"Kaggle's {at} per triple")
    ax.set(xscale="log", yscale="log", xlabel="real training crops per triple",
           ylabel="1 - weighted recall (validation)", title="Data scaling at equal work (epochs × crops)")
    # ticks where the points are, in plain decimals (powers of ten read badly over a factor of 30)
    ticks = sorted(set(sizes) | {at})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.set_xlim(right=at * 2.3)  # room for the readings at ``at``
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=CACHE / "results.jsonl", help="real_accuracy.py's results file")
    ap.add_argument("--at", type=int, default=KAGGLE_PER_TRIPLE, help="crops per triple to read the fits at")
    ap.add_argument("--work", type=int, default=WORK,
                    help="keep the runs whose epochs × crops per triple is this (5 epochs of 39: 195)")
    ap.add_argument("--point", action="append", default=[], metavar="ROW:N:SEED:RECALL",
                    help="a point recorded in another machine's results file (benchmarks/README.md quotes it), "
                         "e.g. b:39:0:0.8992; it wins over this file's record of the same run")
    ap.add_argument("--sizes", default=None, metavar="N,N,...",
                    help="keep only these crops per triple, e.g. 5,39 to read a row between its ends "
                         "(default: every size recorded)")
    ap.add_argument("--plot", type=Path, default=None, help="write the log-log plot to this PNG")
    args = ap.parse_args(argv)
    try:
        sizes = {int(n) for n in args.sizes.split(",")} if args.sizes else None
    except ValueError:
        ap.error(f"--sizes {args.sizes}: expected crops per triple separated by commas, e.g. 5,39")
    if not args.results.is_file():
        raise SystemExit(f"{args.results}: no such file (run benchmarks/real_accuracy.py's data-scaling rows first)")
    points = load_points(args.results, args.work)
    for spec in args.point:
        add_point(points, spec)
    if sizes is not None:
        points = {row: {n: seeds for n, seeds in by_n.items() if n in sizes} for row, by_n in points.items()}
        points = {row: by_n for row, by_n in points.items() if by_n}
    if not points:
        raise SystemExit(f"{args.results}: no data-scaling row yet (real_accuracy.py --epochs N --only a,b ...)")
    text, fits = table(points, args.at)
    print(text)
    if args.plot:
        plot(points, fits, args.plot, args.at)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
