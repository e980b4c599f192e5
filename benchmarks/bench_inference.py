"""Benchmark: inference end to end (test parquet -> submission.csv) on this machine, and the figures
needed to estimate a Kaggle GPU kernel's time on the ~200k hidden test images.

    python benchmarks/bench_inference.py                          # 50,210-row stream, 2,048-row e2e
    python benchmarks/bench_inference.py --rows 512 --stream-rows 8192 --threads 2   # quicker

Each phase runs in its own subprocess, so its peak memory (ru_maxrss) is its own:
  stream        preprocess.iter_preprocessed over a ``--stream-rows`` test parquet (read + crop/resize to
                128 px, one process): the CPU side of inference and its peak memory on a full-size file
  crop          preprocess.crop_resize_batch on 2,048 images already in memory (one process): crop rate
  model:<name>  the network alone on random 128-px batches (``--batch-size``): images/s on this CPU
  e2e:<name>    submission.predict_to_submission on a ``--rows`` folder, random-init weights: images/s, peak MB
Test images are rendered by bengali_kit.synthetic (a pool of 512, repeated to the row count).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_ROWS = 50_210  # rows of one real test/train parquet
HIDDEN_TEST = 200_840  # the hidden test set is about as large as train (4 parquets)
POOL = 512


def make_folder(folder: Path, rows: int, pool_dir: Path) -> Path:
    """A competition-format test folder of ``rows`` images: test_image_data_0.parquet + test.csv."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bengali_kit import data
    from bengali_kit.components import COMPONENTS

    if (folder / "test.csv").is_file() and data.count_images(folder / "test_image_data_0.parquet") == rows:
        return folder
    if not (pool_dir / "test_image_data_0.parquet").is_file():
        from bengali_kit.synthetic import write_competition_folder

        write_competition_folder(pool_dir, train_rows=1, test_rows=POOL, files=1, seed=0, progress=False,
                                 overwrite=True)
    pool = data.read_images(pool_dir / "test_image_data_0.parquet").images
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"Test_{i}" for i in range(rows)]
    schema = pa.schema([("image_id", pa.string())] + [(c, pa.uint8()) for c in data.PIXEL_COLUMNS])
    path = folder / "test_image_data_0.parquet"
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, rows, 2048):
            stop = min(start + 2048, rows)
            imgs = pool[np.arange(start, stop) % len(pool)]
            cols = np.ascontiguousarray(imgs.reshape(stop - start, data.N_PIXELS).T)
            arrays = [pa.array(ids[start:stop], type=pa.string())] + [pa.array(c) for c in cols]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    order = ["consonant_diacritic", "grapheme_root", "vowel_diacritic"]  # the real test.csv order
    assert sorted(order) == sorted(COMPONENTS)
    pd.DataFrame([(f"{i}_{c}", i, c) for i in ids for c in order],
                 columns=["row_id", "image_id", "component"]).to_csv(folder / "test.csv", index=False)
    return folder


# ---------------------------------------------------------------- phases (run in subprocesses)
def _phase(name: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from bengali_kit import data, preprocess, submission
    from bengali_kit.model import ModelConfig, build_model, save_checkpoint

    if name == "stream":
        folder = Path(args.stream_dir)
        t, n = time.perf_counter(), 0
        for ids, _images in preprocess.iter_preprocessed(folder, "test", size=args.size, batch_size=2048,
                                                        workers=1):
            n += len(ids)
        return {"seconds": time.perf_counter() - t, "n": n}
    if name == "crop":
        images = data.read_images(Path(args.e2e_dir) / "test_image_data_0.parquet").images[:2048]
        t = time.perf_counter()
        preprocess.crop_resize_batch(images, args.size, workers=1)
        return {"seconds": time.perf_counter() - t, "n": len(images)}
    kind, model_name = name.split(":", 1)
    if kind == "model":
        model = build_model(ModelConfig(name=model_name)).eval()
        x = torch.rand(args.batch_size, 1, args.size, args.size)
        with torch.inference_mode():
            model(x)  # warm-up: first-call allocations
            t, n = time.perf_counter(), 0
            while n < args.model_images:
                model(x)
                n += len(x)
        return {"seconds": time.perf_counter() - t, "n": n}
    if kind == "e2e":
        torch.manual_seed(0)
        ckpt = Path(args.work) / f"{model_name}_{args.size}.pt"
        save_checkpoint(ckpt, build_model(ModelConfig(name=model_name)), image_size=args.size,
                        preprocess=preprocess.CropParams().asdict())
        out = Path(args.work) / f"submission_{model_name}.csv"
        t = time.perf_counter()
        result, sub = submission.predict_to_submission(args.e2e_dir, [ckpt], out, batch_size=args.batch_size,
                                                  device="cpu", overwrite=True, progress=False)
        seconds = time.perf_counter() - t  # includes reading test.csv and writing submission.csv
        return {"seconds": seconds, "n": result.n_images, "rows": len(sub), "predict_seconds": result.seconds}
    raise ValueError(name)


def _run(name: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv, "--phase", name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def estimate(stream_rate: float, crop_rate: float, kaggle_cores: int, gpu_rate: float) -> dict:
    """Time for the hidden test set on a Kaggle GPU kernel, from rates measured on one core here.

    The reader (one thread) decodes parquet while ``kaggle_cores`` processes crop and the GPU runs the
    model; the slowest stage sets the pace.
    """
    read_rate = 1 / max(1 / stream_rate - 1 / crop_rate, 1e-9)  # images/s of decoding alone
    stages = {"read": read_rate, "crop": crop_rate * kaggle_cores, "gpu": gpu_rate}
    pace = min(stages.values())
    return {"stages_img_s": {k: round(v) for k, v in stages.items()}, "bottleneck": min(stages, key=stages.get),
            "minutes": HIDDEN_TEST / pace / 60}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2048, help="images of the end-to-end runs")
    p.add_argument("--stream-rows", type=int, default=FULL_ROWS, help="rows of the parquet streamed for memory")
    p.add_argument("--models", nargs="+", default=["efficientnet-b0", "efficientnet-b3"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    p.add_argument("--model-images", type=int, default=256, help="images per model-only measurement")
    p.add_argument("--work", default=str(ROOT / ".cache" / "bench_inference"))
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--stream-dir", help=argparse.SUPPRESS)
    p.add_argument("--e2e-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work)
    if args.phase:
        res = _phase(args.phase, args)
        res["peak_mb"] = round(peak_rss_mib(), 1)
        print(json.dumps(res))
        return 0

    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    e2e_dir = make_folder(work / f"test_{args.rows}", args.rows, work / "pool")
    stream_dir = make_folder(work / f"test_{args.stream_rows}", args.stream_rows, work / "pool")
    print(f"data ready in {time.perf_counter() - t:.0f} s ({args.rows} and {args.stream_rows} rows); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    base = ["--work", str(work), "--size", str(args.size), "--batch-size", str(args.batch_size),
            "--threads", str(args.threads), "--model-images", str(args.model_images),
            "--stream-dir", str(stream_dir), "--e2e-dir", str(e2e_dir)]
    results: dict[str, dict] = {}
    for name in ["stream", "crop", *[f"model:{m}" for m in args.models], *[f"e2e:{m}" for m in args.models]]:
        r = _run(name, base)
        r["img_s"] = round(r["n"] / r["seconds"], 1)
        results[name] = r
        print(f"{name:<24} {r['n']:>7} images  {r['seconds']:8.1f} s  {r['img_s']:8.1f} img/s  "
              f"peak {r['peak_mb']:7.0f} MB", flush=True)

    stream_rate, crop_rate = results["stream"]["img_s"], results["crop"]["img_s"]
    # GPU rates are not measured here (no GPU lent): conservative figures for 128 px with fp16
    # autocast, ~3,000 images/s for b0 and ~1,200 for b3 on a T4/P100 (see benchmarks/README.md).
    gpu = {"efficientnet-b0": 3000.0, "efficientnet-b3": 1200.0}
    est = {}
    for m in args.models:
        for gpu_name, cores in (("P100 (2 cores)", 2), ("T4 (4 cores)", 4)):
            est[f"{m} {gpu_name}"] = estimate(stream_rate, crop_rate, cores, gpu.get(m, 1000.0))
    for k, v in est.items():
        print(f"estimate {k:<34} {v['minutes']:6.1f} min for {HIDDEN_TEST} images "
              f"(bottleneck {v['bottleneck']}: {v['stages_img_s']})")
    results["estimates"] = est
    results["settings"] = {k: getattr(args, k) for k in ("rows", "stream_rows", "models", "size", "batch_size",
                                                          "threads")}
    results["settings"]["loadavg_1min"] = round(os.getloadavg()[0], 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
