"""Benchmark: reading an image parquet, and crop/resize, against the common kernel ways.

    python benchmarks/bench_data_preprocess.py                      # full size: 50,210 synthetic rows
    python benchmarks/bench_data_preprocess.py --rows 8192          # quicker
    python benchmarks/bench_data_preprocess.py --parquet train_image_data_0.parquet   # a real file

Each variant runs in its own subprocess, so its peak memory (ru_maxrss) is its own:
  read-ours      bengali_kit.data.read_images(p)
  read-pandas    pd.read_parquet(p).iloc[:, 1:].values.reshape(-1, 137, 236)
  crop-ours      preprocess.crop_resize_batch(images, workers=W) on images already in memory
  crop-reference preprocess.crop_resize_reference in a Python loop, one image at a time
  cache          preprocess.build_cache straight from the parquet (the streaming pipeline: its peak
                 memory is the figure for "preprocessing one full parquet")
Without --parquet a full-size parquet is made first: with bengali_kit.synthetic when it works, else with
simple random strokes drawn by OpenCV (dark ink on a noisy white background).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bengali_kit import data, preprocess  # noqa: E402

FULL_ROWS = 50_210


def _peak_mb() -> dict[str, float]:
    """Peak RSS of this process and of its largest finished child (Linux ru_maxrss is in KiB)."""
    return {"self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


class TreeRSS:
    """Peak of the summed RSS of this process and all its descendants (pool workers started by a fork
    server are not our children, so ru_maxrss of RUSAGE_CHILDREN misses them), sampled every 50 ms."""

    def __init__(self) -> None:
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_rss_mb(root: int) -> float:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
                rss[int(entry)] = int(fields[21])  # pages
            except (OSError, IndexError, ValueError):
                continue
        tree, frontier = {root}, [root]
        while frontier:
            kids = [p for p, pp in parents.items() if pp in frontier and p not in tree]
            tree.update(kids)
            frontier = kids
        return sum(rss.get(p, 0) for p in tree) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_mb = max(self.peak_mb, self._tree_rss_mb(os.getpid()))

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def stroke_images(n: int, seed: int = 0) -> np.ndarray:
    """Random handwriting-like strokes: dark anti-aliased polylines on a slightly noisy white page."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, data.IMAGE_HEIGHT, data.IMAGE_WIDTH), dtype=np.uint8)
    for i in range(n):
        img = np.full((data.IMAGE_HEIGHT, data.IMAGE_WIDTH), 253, dtype=np.uint8)
        centre = np.array([rng.integers(50, 186), rng.integers(35, 102)])
        for _ in range(rng.integers(2, 7)):
            pts = (centre + rng.normal(0, 22, (rng.integers(3, 8), 2))).astype(np.int32)
            cv2.polylines(img, [pts], False, int(rng.integers(0, 100)), int(rng.integers(2, 8)), cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (3, 3), 0)
        out[i] = img - rng.integers(0, 4, img.shape, dtype=np.uint8) * (img > 4)
    return out


def make_parquet(folder: Path, rows: int) -> Path:
    """A competition-format train parquet of ``rows`` images in ``folder``."""
    try:
        from bengali_kit.synthetic import write_competition_folder

        out = write_competition_folder(folder / "synth", train_rows=rows, test_rows=8, files=1, seed=0)
        return data.image_parquets(out, "train")[0]
    except Exception as err:  # the renderer missing or unfinished: fall back to strokes
        print(f"(bengali_kit.synthetic unavailable: {type(err).__name__}: {err}; drawing strokes instead)")
    path = folder / "strokes" / "train_image_data_0.parquet"
    data.write_image_parquet(path, [f"Train_{i}" for i in range(rows)], stroke_images(rows))
    return path


# ---------------------------------------------------------------- variants (run in subprocesses)
def _variant(name: str, parquet: Path, workers: int, out: Path, interpolation: str = "linear") -> dict:
    if name == "read-ours":
        t = time.perf_counter()
        batch = data.read_images(parquet)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "n": len(batch.ids), "checksum": int(batch.images[::97].sum(dtype=np.int64))}
    if name == "read-pandas":
        import pandas as pd

        # pandas can need 100x the file's pixels on multi-row-group files: cap its address space so the
        # benchmark fails cleanly instead of driving a shared machine out of memory.
        limit = int(float(os.environ.get("BENCH_PANDAS_LIMIT_GB", "10")) * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        t = time.perf_counter()
        try:
            df = pd.read_parquet(parquet)
            images = df.iloc[:, 1:].values.reshape(-1, data.IMAGE_HEIGHT, data.IMAGE_WIDTH)
        except MemoryError:
            return {"seconds": float("nan"), "n": 0, "failed": f"MemoryError under a {limit / 2**30:.0f} GiB limit",
                    "after_s": time.perf_counter() - t}
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "n": len(images), "dtype": str(images.dtype),
                "checksum": int(images[::97].sum(dtype=np.int64))}
    if name in ("crop-ours", "crop-reference"):
        images = data.read_images(parquet).images
        t = time.perf_counter()
        if name == "crop-ours":
            result, n_blank = preprocess.crop_resize_batch(images, 128, workers=workers, interpolation=interpolation)
        else:
            result = np.stack([preprocess.crop_resize_reference(im, 128, interpolation=interpolation) for im in images])
            n_blank = int((result.reshape(len(result), -1).max(axis=1) == 0).sum())
        seconds = time.perf_counter() - t
        np.save(out, result)
        return {"seconds": seconds, "n": len(images), "n_blank": n_blank}
    if name == "cache":
        folder = out.parent / "cache_src"
        folder.mkdir(exist_ok=True)
        link = folder / "train_image_data_0.parquet"
        if not link.exists():
            link.symlink_to(parquet.resolve())
        t = time.perf_counter()
        with TreeRSS() as tree:
            info = preprocess.build_cache(folder, "train", 128, out.parent / "cache", workers=workers,
                                          progress=False, force=True, interpolation=interpolation)
        seconds = time.perf_counter() - t
        return {"seconds": seconds, "n": info.n_images, "n_blank": info.n_blank, "tree_peak_mb": tree.peak_mb}
    raise ValueError(name)


def _run_subprocess(name: str, parquet: Path, workers: int, out: Path, interpolation: str) -> dict:
    cmd = [sys.executable, __file__, "--variant", name, "--parquet", str(parquet), "--workers", str(workers),
           "--variant-out", str(out), "--interpolation", interpolation]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and name == "read-pandas":  # Arrow's threads abort on a failed allocation
        limit = os.environ.get("BENCH_PANDAS_LIMIT_GB")
        return {"seconds": float("nan"), "n": 0, "after_s": time.perf_counter() - t,
                "failed": f"died (status {proc.returncode}) under a {limit} GiB address-space limit",
                "self_mb": float(limit) * 1024, "child_mb": 0.0}
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parquet", type=Path, help="an existing image parquet (default: make a synthetic one)")
    ap.add_argument("--rows", type=int, default=FULL_ROWS, help="rows of the synthetic parquet")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes for our path")
    ap.add_argument("--json", type=Path, help="also write the figures to this json file")
    ap.add_argument("--pandas-limit-gb", type=float, default=10.0,
                    help="address-space cap for the pandas variant (it fails with MemoryError beyond it)")
    ap.add_argument("--interpolation", default="linear", choices=sorted(preprocess.INTERPOLATIONS),
                    help="cv2.resize interpolation of the crop/resize variants")
    ap.add_argument("--row-group-size", type=int,
                    help="rewrite the parquet with row groups of this many rows first (e.g. the row count: one "
                         "group, the layout pandas reads best)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--variant-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        res = _variant(args.variant, args.parquet, args.workers, args.variant_out, args.interpolation)
        print(json.dumps({**res, **_peak_mb()}))
        return 0

    os.environ["BENCH_PANDAS_LIMIT_GB"] = str(args.pandas_limit_gb)
    with tempfile.TemporaryDirectory(prefix="bench_bk_") as tmp:
        tmp = Path(tmp)
        if args.parquet is None:
            t = time.perf_counter()
            args.parquet = make_parquet(tmp, args.rows)
            print(f"made {args.parquet.name}: {args.rows} rows, {args.parquet.stat().st_size / 2**20:.0f} MiB "
                  f"in {time.perf_counter() - t:.0f} s")
        if args.row_group_size:
            batch = data.read_images(args.parquet)
            args.parquet = tmp / "regrouped" / "train_image_data_0.parquet"
            data.write_image_parquet(args.parquet, batch.ids, batch.images, row_group_size=args.row_group_size)
            del batch
        n = data.count_images(args.parquet)
        groups = __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(args.parquet).metadata.num_row_groups
        print(f"parquet: {args.parquet} ({n} rows in {groups} row groups); workers: {args.workers}; "
              f"cpus: {os.cpu_count()}; interpolation: {args.interpolation}; load average: {os.getloadavg()[0]:.1f}")
        res = {}
        for name in ("read-ours", "read-pandas", "crop-ours", "crop-reference", "cache"):
            res[name] = _run_subprocess(name, args.parquet, args.workers, tmp / f"{name}.npy", args.interpolation)
            r = res[name]
            if "failed" in r:
                print(f"  {name:15s} FAILED after {r['after_s']:.1f} s: {r['failed']} "
                      f"(peak RSS {r['self_mb']:.0f} MiB)")
                continue
            print(f"  {name:15s} {r['seconds']:8.2f} s  {r['n'] / r['seconds']:8.0f} images/s  "
                  f"peak RSS {r['self_mb']:7.0f} MiB (largest child {r['child_mb']:.0f} MiB)")
        ours, ref = np.load(tmp / "crop-ours.npy", mmap_mode="r"), np.load(tmp / "crop-reference.npy", mmap_mode="r")
        nonblank = ref.reshape(len(ref), -1).max(axis=1) > 0
        same = bool(np.array_equal(ours[nonblank], ref[nonblank]))
        same_all = bool(np.array_equal(ours, ref))
        ro, rp = res["read-ours"], res["read-pandas"]
        co, cr, cache = res["crop-ours"], res["crop-reference"], res["cache"]
        summary = {
            "rows": n, "row_groups": groups, "workers": args.workers, "interpolation": args.interpolation,
            "read_speedup": rp["seconds"] / ro["seconds"],
            "read_memory_ratio": ro["self_mb"] / rp["self_mb"],
            "read_same_pixels": ro["checksum"] == rp.get("checksum"),
            "crop_speedup": cr["seconds"] / co["seconds"],
            "crop_identical_nonblank": same, "crop_identical_all": same_all,
            "crop_blank": co["n_blank"],
            "cache_images_per_s": cache["n"] / cache["seconds"],
            "cache_peak_mb_process_tree": cache["tree_peak_mb"],
            "variants": res,
        }
        if "failed" in rp:  # pandas did not finish: no speed ratio, and its memory is at least the cap
            summary["read_speedup"] = None
            summary["read_memory_ratio"] = ro["self_mb"] / (args.pandas_limit_gb * 1024)
            summary["read_same_pixels"] = None
            print(f"(a) read: pandas could not read the file ({rp['failed']}); ours read it in "
                  f"{ro['seconds']:.1f} s with {ro['self_mb']:.0f} MiB, < {summary['read_memory_ratio']:.2f} of the "
                  f"memory pandas died at (targets: >= 2x faster, <= 0.5 of the memory)")
        else:
            print(f"(a) read: ours {summary['read_speedup']:.2f}x faster than pandas (target >= 2), "
                  f"peak memory {summary['read_memory_ratio']:.2f} of pandas' (target <= 0.5); "
                  f"same pixels: {summary['read_same_pixels']}")
        print(f"(b) crop/resize: ours {summary['crop_speedup']:.2f}x the reference loop's images/s (target >= 3); "
              f"identical on non-blank images: {same} (all images: {same_all}; {co['n_blank']} blank)")
        print(f"    build_cache from the parquet: {summary['cache_images_per_s']:.0f} images/s; peak memory "
              f"{cache['tree_peak_mb']:.0f} MiB for the process tree with {args.workers} crop threads "
              f"(sampled; the process's own high-water mark {cache['self_mb']:.0f} MiB; target < 1536)")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
