"""Real handwriting beside the on-the-fly rendered stream, as the model sees both (64×64 crops, ink bright).

Real: ``real_sample_64.npz`` placed on frames (``realdata.place_crops``) and cropped/resized by the kit.
Rendered: ``SyntheticGraphemes`` (the pretraining stream, handwriting on) for the same triples.

Writes one PNG: for each of ``--rows`` triples, ``--per`` real crops then ``--per`` rendered ones, under a
table of simple statistics over ``--stats`` triples (one real crop and one rendered crop each), and prints
the statistics and the stream's speed (images/s, one process)::

    python benchmarks/real_vs_rendered.py --out benchmarks/figures/real_vs_rendered.png
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from bengali_kit.preprocess import crop_resize, crop_resize_batch
from bengali_kit.realdata import load_crops, place_crops
from bengali_kit.synthetic import StreamConfig, SyntheticGraphemes

DEFAULT_NPZ = Path(__file__).resolve().parents[2] / "shared" / "reference" / "real_sample_64.npz"
INK = 80  # a pixel of a preprocessed crop (ink bright) is ink above this


def real_preprocessed(npz: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All real crops as the kit sees them after import, and their labels (N, 3)."""
    crops = load_crops(npz)
    out = np.empty((len(crops), size, size), dtype=np.uint8)
    for s in range(0, len(crops), 512):
        out[s:s + 512] = crop_resize_batch(place_crops(crops.images[s:s + 512]), size)[0]
    return out, crops.labels


def rendered(ds: SyntheticGraphemes, labels: np.ndarray, start: int = 0) -> np.ndarray:
    """One stream image per label triple, seeded like stream item ``start + k``."""
    out = np.empty((len(labels), ds.cfg.size, ds.cfg.size), dtype=np.uint8)
    for k, t in enumerate(labels):
        out[k] = crop_resize(ds.render_labels(t, start + k), size=ds.cfg.size)
    return out


def stats(imgs: np.ndarray) -> np.ndarray:
    """Per image (rows): ink share, stroke width (px), ink brightness, box aspect and fill, softness, sharpness."""
    rows = []
    for im in imgs:
        ink = im > INK
        n = int(ink.sum())
        if n == 0:
            continue
        dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 3)
        ys, xs = np.nonzero(ink)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        lap = cv2.Laplacian(im.astype(np.float32), cv2.CV_32F)
        soft = (im > 28) & (im < 200)
        rows.append((
            n / im.size,
            # twice the mean distance to the background over the ridge pixels ~ stroke width
            2.0 * float(dist[ink & (dist >= cv2.dilate(dist, np.ones((3, 3), np.uint8)))].mean()),
            float(im[ink].mean()),
            w / h,
            max(h, w) / im.shape[0],
            float(soft.sum()) / max(int((im > 28).sum()), 1),
            float(np.abs(lap)[ink].mean()),
        ))
    return np.asarray(rows)


STAT_NAMES = ("ink_frac", "stroke_w", "ink_mean", "aspect_wh", "box_fill", "soft_frac", "sharpness")


def table(per_image: dict[str, np.ndarray]) -> list[str]:
    """One text line per statistic: its 10th/50th/90th percentiles in each set of images."""
    lines = [f"{'p10/p50/p90':11s}" + "".join(f"{name:>24s}" for name in per_image)]
    q = {name: np.percentile(a, [10, 50, 90], axis=0) for name, a in per_image.items()}
    for j, stat in enumerate(STAT_NAMES):
        lines.append(f"{stat:11s}" + "".join(f"{v[0, j]:8.3g}{v[1, j]:8.3g}{v[2, j]:8.3g}" for v in q.values()))
    return lines


def speed(ds: SyntheticGraphemes, n: int) -> tuple[float, float]:
    """Stream items per second (wall, CPU) for ``ds[i]`` in this process, fonts already loaded."""
    for i in range(20):  # warm the glyph caches a little, as a long run has them warm
        ds[i]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        ds[1000 + i]
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def grid(real: np.ndarray, synth: np.ndarray, per: int, text: list[str]) -> np.ndarray:
    """Rows of ``per`` real then ``per`` rendered tiles (ink dark, as on paper), with a text header."""
    n_rows = len(real) // per
    s = real.shape[1]
    gap = 2
    tile = s + gap
    width = 2 * per * tile + 12
    head = 16 * len(text) + 8
    canvas = np.full((head + n_rows * tile, width), 255, dtype=np.uint8)
    for j, line in enumerate(text):
        cv2.putText(canvas, line, (4, 14 + 16 * j), cv2.FONT_HERSHEY_PLAIN, 0.8, 0, 1, cv2.LINE_AA)
    for r in range(n_rows):
        for c in range(per):
            y = head + r * tile
            canvas[y:y + s, c * tile:c * tile + s] = 255 - real[r * per + c]
            x = per * tile + 12 + c * tile
            canvas[y:y + s, x:x + s] = 255 - synth[r * per + c]
    canvas[head:, per * tile + 4:per * tile + 8] = 128  # divider: real | rendered
    return canvas


def main() -> None:
    """Write the comparison PNG and print the statistics and the stream's speed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=DEFAULT_NPZ)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/figures/real_vs_rendered.png"))
    ap.add_argument("--rows", type=int, default=14, help="triples shown")
    ap.add_argument("--per", type=int, default=5, help="images per triple and side")
    ap.add_argument("--stats", type=int, default=1292, help="triples measured (one image each side)")
    ap.add_argument("--speed", type=int, default=300, help="stream items timed (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    real, labels = real_preprocessed(args.npz, 64)
    ds = SyntheticGraphemes(StreamConfig(size=64, seed=args.seed))
    rng = np.random.default_rng(args.seed)
    # the real sample holds 5 crops per triple, in blocks: one crop of each of --stats triples
    first = np.unique(labels, axis=0, return_index=True)[1]
    pick = rng.choice(first, size=min(args.stats, len(first)), replace=False)
    lines = table({"real": stats(real[pick]), "rendered": stats(rendered(ds, labels[pick]))})
    print("\n".join(lines))

    show = rng.choice(first, size=args.rows, replace=False)
    codes = labels[:, 0] * 10000 + labels[:, 1] * 100 + labels[:, 2]
    real_tiles, synth_tiles = [], []
    for k, i in enumerate(show):
        same = np.flatnonzero(codes == codes[i])[:args.per]
        real_tiles.append(real[np.resize(same, args.per)])
        synth_tiles.append(rendered(ds, np.repeat(labels[i][None], args.per, 0), 50000 + k * args.per))
    head = ["left: real crops (place_crops + crop_resize 64); right: SyntheticGraphemes, same triples",
            f"statistics over {len(pick)} triples (see the script):", *lines]
    canvas = grid(np.concatenate(real_tiles), np.concatenate(synth_tiles), args.per, head)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    if args.speed:
        wall, cpu = speed(ds, args.speed)
        print(f"stream speed, 1 process: {wall:.0f} images/s wall, {cpu:.0f} images/s per CPU second")


if __name__ == "__main__":
    main()
