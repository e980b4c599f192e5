"""Benchmark: BengaliNet (one backbone pass) vs a seed-style model (one backbone pass per head).

Measures, each configuration in its own subprocess (clean peak memory):
- training-step images/s (forward + MultiHeadLoss + backward + SGD step) and inference images/s
  (eval, inference_mode) of both models, for each backbone (default b0 and b3) at 128x128, batch 32.
  Both models live in one process and their timed steps alternate, so a CPU shared with other work
  slows both alike and the speed-up stays meaningful;
- training images/s of BengaliNet b0 alone at 64x64 and 128x128;
- training and inference images/s of BengaliNet b0 in the contiguous and the channels_last memory format
  (what ``train`` and ``predict`` use since 2026-12-03, on the CPU too), alternating in one process;
- peak resident memory of each subprocess (VmHWM from /proc/self/status; ru_maxrss as a fallback).

Usage (short run, the figures in benchmarks/README.md):
    python benchmarks/bench_model.py --threads 2 --batch-size 32 --warmup 3 --steps 5
Options: --models efficientnet-b0,efficientnet-b3 --size 128 --extra-sizes 64,128 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _common import peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the seed-style baseline
def make_seed_style(name: str):
    """The seed's design: the full ImageNet EfficientNet (1000-way ``_fc``, memory-efficient swish) run
    once per head, each pass followed by ``Linear(1000, 512) + BatchNorm1d`` and that head's classifier."""
    import torch
    from efficientnet_pytorch import EfficientNet
    from torch import nn

    class SeedStyleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = EfficientNet.from_name(name, in_channels=1)
            self.neck = nn.Sequential(nn.Linear(1000, 512), nn.BatchNorm1d(512))
            self.heads = nn.ModuleList(nn.Linear(512, n) for n in (168, 11, 7))

        def forward(self, x: torch.Tensor):
            return tuple(head(self.neck(self.backbone(x))) for head in self.heads)  # 3 backbone passes

    return SeedStyleNet()


# ---------------------------------------------------------------- one measurement (runs in a subprocess)
def _setup(spec: dict, kind: str):
    """Model, data and a step function for ``spec['mode']`` ("train" | "infer") of ``kind`` ("ours" | "seed")."""
    import torch

    from bengali_kit.engine import TrainState, train_step
    from bengali_kit.losses import MultiHeadLoss
    from bengali_kit.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = make_seed_style(spec["name"]) if kind == "seed" else build_model(ModelConfig(name=spec["name"]))
    b, s = spec["batch_size"], spec["size"]
    images = torch.randint(0, 256, (b, s, s), dtype=torch.uint8)  # as the cache holds them
    y = torch.stack([torch.randint(0, n, (b,)) for n in (168, 11, 7)], dim=1)
    # the kit's one training step (engine.train_step), without augmentation: both models step alike;
    # "ours-cl": TrainState puts the model and its inputs in channels_last, as train does
    state = TrainState(model=model, net=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                       loss_fn=MultiHeadLoss(), augment=None, device=torch.device("cpu"), peak_lr=0.01,
                       channels_last=kind == "ours-cl")
    x = state.to_input(images)

    def one_train_step():
        train_step(state, images, y)

    def infer_step():
        with torch.inference_mode():
            model(x)

    model.train(spec["mode"] == "train")
    return one_train_step if spec["mode"] == "train" else infer_step


def measure(spec: dict) -> dict:
    """Time the models in ``spec['models']`` in one process, alternating steps (ours, seed, ours, ...) so
    that a shared, loaded CPU slows both alike; returns images/s per model and the process's peak memory."""
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(spec["threads"])
    steps = {kind: _setup(spec, kind) for kind in spec["models"]}
    for step in steps.values():
        for _ in range(spec["warmup"]):
            step()
    times: dict[str, list[float]] = {kind: [] for kind in steps}
    for _ in range(spec["steps"]):
        for kind, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[kind].append(time.perf_counter() - t0)
    b = spec["batch_size"]
    return {**spec, "images_per_s": {k: b * len(t) / sum(t) for k, t in times.items()},
            "step_s": times, "peak_rss_mib": peak_rss_mib()}


def run_in_subprocess(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                         check=False, env={**os.environ, "OMP_NUM_THREADS": str(spec["threads"])})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed for {spec}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="efficientnet-b0,efficientnet-b3")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--extra-sizes", default="64,128", help="sizes for the BengaliNet b0 training figures")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--memory-format-sizes", default="64,96",
                    help="sizes for BengaliNet b0 contiguous vs channels_last (empty: skip)")
    ap.add_argument("--json", type=Path, help="also write all results here")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return 0

    common = dict(batch_size=args.batch_size, threads=args.threads, warmup=args.warmup, steps=args.steps)
    results = []
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, batch {args.batch_size}, "
          f"warm-up {args.warmup}, timed steps {args.steps}, load average {os.getloadavg()[0]:.1f} at start",
          flush=True)
    print("| backbone | size | mode | BengaliNet img/s | seed-style img/s | speed-up | peak MiB (both models) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in (n for n in args.models.split(",") if n):
        for mode in ("train", "infer"):
            r = run_in_subprocess(dict(common, models=["ours", "seed"], name=name, size=args.size, mode=mode))
            results.append(r)
            ours, seed = r["images_per_s"]["ours"], r["images_per_s"]["seed"]
            print(f"| {name} | {args.size} | {mode} | {ours:.1f} | {seed:.1f} | {ours / seed:.2f}x | "
                  f"{r['peak_rss_mib']:.0f} |", flush=True)
    print("\n| BengaliNet alone | size | training img/s | peak MiB |\n|---|---|---|---|", flush=True)
    for size in (int(v) for v in args.extra_sizes.split(",") if v):
        r = run_in_subprocess(dict(common, models=["ours"], name="efficientnet-b0", size=size, mode="train"))
        results.append(r)
        print(f"| efficientnet-b0 | {size} | {r['images_per_s']['ours']:.1f} | {r['peak_rss_mib']:.0f} |", flush=True)
    print("\n| BengaliNet b0 | size | mode | contiguous img/s | channels_last img/s | speed-up |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)
    for size in (int(v) for v in args.memory_format_sizes.split(",") if v):
        for mode in ("train", "infer"):
            r = run_in_subprocess(dict(common, models=["ours", "ours-cl"], name="efficientnet-b0", size=size,
                                       mode=mode))
            results.append(r)
            a, c = r["images_per_s"]["ours"], r["images_per_s"]["ours-cl"]
            print(f"| efficientnet-b0 | {size} | {mode} | {a:.1f} | {c:.1f} | {c / a:.2f}x |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at the end", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
