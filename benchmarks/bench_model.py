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

With ``--levers`` it measures instead the speed levers against today's default (b0, 96 px, batch 64,
channels_last, float32 eager, 2 threads), all in one process, interleaved (A B C ... C B A,
``--repeats`` rounds, median): the training step (``engine.train_step``: augmentation, forward, loss,
backward, AdamW) and inference (``prediction._run_models``, the model call of ``predict``), each lever alone
and stacked: ``torch.compile`` (first-call seconds reported apart), bfloat16 autocast (inference; training
with float32 master weights), batch norm folded (inference), the static SAME padding moved into the convs
(inference and training), batch size, intra-op threads, inter-op threads
(per process, so in alternating child processes), DataLoader workers 0/1 over a CacheDataset with the kit's
batch augmentation, and the data path alone. Before timing, each lever's predictions are checked against
float32 eager with the real checkpoint on real crops (tolerances: the constants below); the exit status
is 1 if a check fails. Prints a table (img/s, ratio to the default) and writes ``--json``.

    python benchmarks/bench_model.py --levers --json levers.json      # the full measurement (quiet machine)
    python benchmarks/bench_model.py --quick --json /tmp/q.json       # toy size, 1 thread, compile: dynamo only

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


# ---------------------------------------------------------------- levers against today's default
#: Tolerances of the correctness checks (each lever's output against float32 eager, the real checkpoint).
FOLD_TOL = 1e-4  # batch-norm or padding folding: max |prob difference| (exact in float32 up to rounding)
COMPILE_TOL = 1e-4  # torch.compile inference: max |prob difference|
COMPILE_LOSS_TOL = 1e-4  # torch.compile training: |first-step loss difference|, same batch, same weights
BATCH_TOL = 1e-4  # batch 256 vs 64: max |prob difference|
BF16_AGREE = 0.95  # bfloat16: share of images whose three predicted labels all agree with float32
BF16_PROB_TOL = 0.05  # bfloat16: max |prob difference| over every class of every image

CHECKPOINT = ROOT / "weights" / "real-b0-96.pt"
REAL_CROPS = ROOT / "tests" / "data" / "real_slice_64.npz"

#: Today's defaults (train and predict on this CPU): what every ratio is against.
DEFAULT = dict(name="efficientnet-b0", size=96, batch=64, threads=2)
#: --quick: toy sizes, one timed call per variant, one thread (two crawl on a loaded 2-core machine); compile
#: captures graphs with the "eager" backend (dynamo only: no AOT autograd, no C++ build) unless asked.
QUICK = dict(size=32, batch=4, threads=1, repeats=1, steps=1, warmup=1, crops=16, backend="eager")


def _bf16():
    import torch

    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def _autocast_module(model):
    """``model`` whose forward runs under CPU bfloat16 autocast: survives ``_run_models``' own (disabled) autocast."""
    from torch import nn

    class Bf16(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            with _bf16():
                return self.inner(*args, **kwargs)

    return Bf16(model)


def _augmenter():
    """The kit's batch augmentation with ``TrainConfig``'s defaults."""
    from bengali_kit.augment import BatchAugmenter
    from bengali_kit.train_config import TrainConfig

    c = TrainConfig()
    return BatchAugmenter(c.affine_degrees, c.affine_scale, c.affine_translate, c.affine_shear, c.cutmix_p,
                          c.mixup_p, c.mix_alpha, device="cpu", seed=0)


def _train_state(model, bf16: bool = False, compile_kw: dict | None = None):
    """The engine's TrainState as ``train`` builds it (AdamW on the kit's groups, augmentation, channels_last);
    ``bf16``: bfloat16 autocast over forward and loss, float32 master weights; ``compile_kw``: net compiled."""
    import torch

    from bengali_kit.engine import TrainState
    from bengali_kit.losses import MultiHeadLoss
    from bengali_kit.optim import lars_param_groups
    from bengali_kit.speed import maybe_compile
    from bengali_kit.train_config import TrainConfig

    class Bf16State(TrainState):  # the engine's step, only its autocast swapped (TrainState.amp is CUDA-only)
        def autocast(self):
            return _bf16()

    c = TrainConfig()
    optimizer = torch.optim.AdamW(lars_param_groups(model, c.weight_decay), lr=c.lr, weight_decay=c.weight_decay)
    cls = Bf16State if bf16 else TrainState
    state = cls(model=model, net=model, optimizer=optimizer, loss_fn=MultiHeadLoss(), augment=_augmenter(),
                device=torch.device("cpu"), peak_lr=c.lr, channels_last=True)
    if compile_kw is not None:
        state.net = maybe_compile(model, True, **compile_kw)
    model.train()
    return state


def _random_batch(batch: int, size: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8, generator=g)
    labels = torch.stack([torch.randint(0, n, (batch,), generator=g) for n in (168, 11, 7)], 1)
    return images, labels


class _Cycle:
    """Endless batches from a DataLoader (a new epoch when one ends); ``drain`` takes what workers prefetched
    while other variants ran, so a timed block never starts on batches made for free."""

    def __init__(self, loader):
        self.loader, self.it = loader, iter(loader)
        self.ahead = loader.num_workers * (loader.prefetch_factor or 0)

    def __next__(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def drain(self) -> None:
        for _ in range(self.ahead):
            next(self)


def _cache_loader(tmp: Path, batch: int, size: int, workers: int):
    """A DataLoader over a CacheDataset (a uint8 .npy of random images), as ``train`` builds it."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from bengali_kit.datasets import CacheDataset

    path = tmp / f"cache_{size}.npy"
    n = max(16 * batch, 512)
    if not path.exists():
        np.save(path, np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8))
    labels = np.stack([np.random.default_rng(1).integers(0, k, n) for k in (168, 11, 7)], 1)
    ds = CacheDataset(path, np.arange(n), labels)
    return DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))


class Variant:
    """One thing to time: ``step()`` processes ``batch`` images; ``before()`` runs untimed before each block."""

    def __init__(self, name: str, kind: str, batch: int, step, threads: int, before=None, compiled: bool = False):
        self.name, self.kind, self.batch, self.step, self.threads = name, kind, batch, step, threads
        self.before, self.compiled = before, compiled
        self.rates: list[float] = []
        self.first_call_s = 0.0


def _infer_variant(name: str, model, batch: int, size: int, threads: int, compiled: bool = False) -> Variant:
    """Inference through prediction's own model call (``_run_models``: uint8 -> input -> model -> softmax sums)."""
    import torch

    from bengali_kit.prediction import _Group, _run_models

    images = _random_batch(batch, size)[0].numpy()
    group = _Group(size=size, params={}, models=[model])
    return Variant(name, "infer", batch, lambda: _run_models(group, images, torch.device("cpu"), False), threads,
                   compiled=compiled)


def _train_variant(name: str, state, batch: int, size: int, threads: int, loader=None,
                   compiled: bool = False) -> Variant:
    """One ``engine.train_step`` (augment, forward, loss, backward, AdamW step) per call."""
    from bengali_kit.engine import train_step

    if loader is None:
        images, labels = _random_batch(batch, size)
        return Variant(name, "train", batch, lambda: train_step(state, images, labels), threads, compiled=compiled)
    batches = _Cycle(loader)
    return Variant(name, "train", batch, lambda: train_step(state, *next(batches)), threads, before=batches.drain)


def _data_variant(name: str, loader, threads: int) -> Variant:
    """The data path alone: next batch from the loader, model input, the kit's batch augmentation."""
    import torch

    from bengali_kit.model import model_input

    augment, batches = _augmenter(), _Cycle(loader)

    def step():
        images, labels = next(batches)
        augment(model_input(images).contiguous(memory_format=torch.channels_last), labels)

    return Variant(name, "data", loader.batch_size, step, threads, before=batches.drain)


def _model(name: str, seed: int = 0):
    import torch

    from bengali_kit.model import ModelConfig, build_model

    torch.manual_seed(seed)
    return build_model(ModelConfig(name=name)).to(memory_format=torch.channels_last)


def build_variants(o: dict, tmp: Path) -> list[Variant]:
    """Every lever alone and the combinations that stack, each against the default of its kind (first)."""
    import torch

    from bengali_kit.speed import fold_batch_norm, fold_static_padding, maybe_compile

    name, size, b, t = o["name"], o["size"], o["batch"], o["threads"]
    ckw = {"backend": o["backend"], "dynamic": False}
    eager = _model(name).eval()
    folded = fold_batch_norm(eager).to(memory_format=torch.channels_last)
    unpadded = fold_static_padding(eager).to(memory_format=torch.channels_last)
    both = fold_batch_norm(unpadded).to(memory_format=torch.channels_last)
    infer = [
        _infer_variant("default", eager, b, size, t),
        _infer_variant("batch x2", eager, 2 * b, size, t),
        _infer_variant("batch x4", eager, 4 * b, size, t),
        _infer_variant("bn-fold", folded, b, size, t),
        _infer_variant("pad-fold", unpadded, b, size, t),
        _infer_variant("bn-fold + pad-fold", both, b, size, t),
        _infer_variant("bn-fold + pad-fold + batch x4", both, 4 * b, size, t),
        _infer_variant("bf16", _autocast_module(eager), b, size, t),
        _infer_variant("bf16 + bn-fold", _autocast_module(folded), b, size, t),
        _infer_variant("compile", maybe_compile(eager, True, **ckw), b, size, t, compiled=True),
        _infer_variant("compile + bn-fold", maybe_compile(folded, True, **ckw), b, size, t, compiled=True),
        _infer_variant("compile + bn-fold + batch x4", maybe_compile(folded, True, **ckw), 4 * b, size, t,
                       compiled=True),
        _infer_variant("compile + bn-fold + pad-fold + batch x4", maybe_compile(both, True, **ckw), 4 * b, size, t,
                       compiled=True),
        _infer_variant("compile + bn-fold + bf16", maybe_compile(_autocast_module(folded), True, **ckw), b, size, t,
                       compiled=True),
    ]
    infer += [_infer_variant(f"threads {n}", eager, b, size, n) for n in o["thread_levels"] if n != t]
    train = [
        _train_variant("default", _train_state(_model(name)), b, size, t),
        _train_variant("batch x2", _train_state(_model(name)), 2 * b, size, t),
        _train_variant("pad-fold", _train_state(fold_static_padding(_model(name))), b, size, t),
        _train_variant("pad-fold + batch x2", _train_state(fold_static_padding(_model(name))), 2 * b, size, t),
        _train_variant("bf16 (fp32 master)", _train_state(_model(name), bf16=True), b, size, t),
        _train_variant("compile", _train_state(_model(name), compile_kw=ckw), b, size, t, compiled=True),
        _train_variant("compile + bf16", _train_state(_model(name), bf16=True, compile_kw=ckw), b, size, t,
                       compiled=True),
        _train_variant("compile + batch x2", _train_state(_model(name), compile_kw=ckw), 2 * b, size, t,
                       compiled=True),
        _train_variant("loader workers 0", _train_state(_model(name)), b, size, t, _cache_loader(tmp, b, size, 0)),
        _train_variant("loader workers 1", _train_state(_model(name)), b, size, t, _cache_loader(tmp, b, size, 1)),
    ]
    train += [_train_variant(f"threads {n}", _train_state(_model(name)), b, size, n)
              for n in o["thread_levels"] if n != t]
    data = [_data_variant("data path, workers 0", _cache_loader(tmp, b, size, 0), t),
            _data_variant("data path, workers 1", _cache_loader(tmp, b, size, 1), t)]
    return infer + train + data


def _time_block(v: Variant, steps: int) -> float:
    """Images per second of ``steps`` consecutive calls of ``v`` at its thread count."""
    import torch

    torch.set_num_threads(v.threads)
    if v.before is not None:
        v.before()
    t0 = time.perf_counter()
    for _ in range(steps):
        v.step()
    return v.batch * steps / (time.perf_counter() - t0)


def run_variants(variants: list[Variant], repeats: int, steps: int, warmup: int) -> None:
    """Warm every variant up (its first call, the compile for compiled ones, timed apart), then time them
    in rounds, A B C ... then ... C B A, so that drift and load hit every variant alike."""
    import torch

    for v in variants:
        torch.set_num_threads(v.threads)
        t0 = time.perf_counter()
        v.step()
        v.first_call_s = time.perf_counter() - t0
        for _ in range(max(warmup - 1, 0)):
            v.step()
        print(f"  warm: {v.kind:<5} {v.name:<32} first call {v.first_call_s:6.1f} s", flush=True)
    for r in range(repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            v.rates.append(_time_block(v, steps))


# ---------------------------------------------------------------- correctness: each lever against float32 eager
def _real_inputs(n: int):
    """The real checkpoint (float32 eager, channels_last) and ``n`` real crops as ``predict`` would see them."""
    import numpy as np
    import torch

    from bengali_kit.model import load_model
    from bengali_kit.preprocess import crop_resize_batch
    from bengali_kit.realdata import place_crops

    model, ckpt = load_model(CHECKPOINT)
    model = model.eval().to(memory_format=torch.channels_last)
    # import-crops' path: each crop on a competition-sized white frame, then the checkpoint's own crop/resize
    frames = place_crops(np.load(REAL_CROPS)["images"][:n])
    images = crop_resize_batch(frames, size=int(ckpt["image_size"]), **(ckpt.get("preprocess") or {}))[0]
    return model, images


def _probs(model, images, batch: int):
    """Prediction's probabilities (``_run_models``) of ``images``, ``batch`` at a time: a list of 3 arrays."""
    import numpy as np
    import torch

    from bengali_kit.prediction import _Group, _run_models

    group = _Group(size=images.shape[-1], params={}, models=[model])
    parts = [_run_models(group, images[i:i + batch], torch.device("cpu"), False) for i in range(0, len(images), batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(3)]


def _compare(a, b) -> dict:
    """Max |prob difference| and the share of images whose three argmax labels agree."""
    import numpy as np

    diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
    same = np.all([x.argmax(1) == y.argmax(1) for x, y in zip(a, b)], axis=0)
    return {"max_prob_diff": diff, "label_agreement": float(same.mean())}


def _first_loss(model, images, labels, compile_kw: dict | None) -> tuple[float, float]:
    """The loss of one engine train step from ``model``'s weights, and the largest weight after it."""
    import copy

    from bengali_kit.engine import seed_everything, train_step

    state = _train_state(copy.deepcopy(model), compile_kw=compile_kw)
    seed_everything(0)
    state.augment.reseed(1)
    loss = float(train_step(state, images, labels))
    return loss, max(float(p.detach().abs().max()) for p in state.model.parameters())


def correctness_checks(o: dict) -> dict:
    """Each lever's predictions against float32 eager on real crops with the real checkpoint; ``ok`` per check."""
    import numpy as np
    import torch
    from torch._inductor import config as inductor_config

    from bengali_kit.speed import fold_batch_norm, fold_static_padding, maybe_compile

    torch.set_num_threads(o["threads"])
    model, images = _real_inputs(o["crops"])
    ckw = {"backend": o["backend"], "dynamic": False}
    b = min(64, len(images))
    ref = _probs(model, images, b)
    folded = fold_batch_norm(model).to(memory_format=torch.channels_last)
    out = {
        "bn-fold": {**_compare(ref, _probs(folded, images, b)), "tol": FOLD_TOL},
        "pad-fold": {**_compare(ref, _probs(fold_static_padding(model), images, b)), "tol": FOLD_TOL},
        "bf16": {**_compare(ref, _probs(_autocast_module(model), images, b)), "tol": BF16_PROB_TOL,
                 "min_agreement": BF16_AGREE},
        "compile": {**_compare(ref, _probs(maybe_compile(model, True, **ckw), images, b)), "tol": COMPILE_TOL},
        "batch x4": {**_compare(ref, _probs(model, images, 4 * b)), "tol": BATCH_TOL},
    }
    # Training: one step from the real weights on real crops, eager vs compiled; inductor draws dropout from
    # its own generator unless told to fall back to torch's, so the masks match only with fallback_random.
    imgs = torch.from_numpy(images[:b])
    labels = torch.stack([torch.from_numpy(np.load(REAL_CROPS)[c][:b].astype(np.int64))
                          for c in ("grapheme_root", "vowel_diacritic", "consonant_diacritic")], 1)
    with inductor_config.patch(fallback_random=True):
        eager_loss, eager_w = _first_loss(model, imgs, labels, None)
        comp_loss, comp_w = _first_loss(model, imgs, labels, ckw)
    out["compile train"] = {"loss_diff": abs(eager_loss - comp_loss), "loss": eager_loss,
                            "max_weight_diff": abs(eager_w - comp_w), "tol": COMPILE_LOSS_TOL}
    for name, c in out.items():
        if name == "bf16":
            c["ok"] = c["label_agreement"] >= BF16_AGREE and c["max_prob_diff"] <= BF16_PROB_TOL
        elif name == "compile train":
            c["ok"] = c["loss_diff"] <= COMPILE_LOSS_TOL
        else:
            c["ok"] = c["max_prob_diff"] <= c["tol"]
    return out


# ---------------------------------------------------------------- inter-op threads: per process, so in children
def measure_interop(o: dict) -> dict:
    """(Child process) default inference and training rates at this process's inter-op thread count."""
    import torch

    from bengali_kit.speed import set_threads

    set_threads(o["threads"], o["interop"])
    name, size, b, t = o["name"], o["size"], o["batch"], o["threads"]
    variants = [_infer_variant("default", _model(name).eval(), b, size, t),
                _train_variant("default", _train_state(_model(name)), b, size, t)]
    for v in variants:
        for _ in range(o["warmup"]):
            v.step()
    rates = {v.kind: [_time_block(v, o["steps"]) for _ in range(2)] for v in variants}
    return {"interop": torch.get_num_interop_threads(), "rates": rates}


def interop_rounds(o: dict, levels: list[int]) -> dict[int, dict[str, list[float]]]:
    """Children at each inter-op level in turn (A B A B ...), ``repeats`` rounds: rates per level and kind."""
    out: dict[int, dict[str, list[float]]] = {n: {"infer": [], "train": []} for n in levels}
    for _ in range(o["interop_repeats"]):
        for n in levels:
            r = subprocess.run([sys.executable, __file__, "--one-interop", json.dumps({**o, "interop": n})],
                               capture_output=True, text=True, check=False,
                               env={**os.environ, "OMP_NUM_THREADS": str(o["threads"])})
            if r.returncode != 0:
                raise RuntimeError(f"inter-op child failed:\n{r.stderr[-2000:]}")
            rates = json.loads(r.stdout.strip().splitlines()[-1])["rates"]
            for kind in out[n]:
                out[n][kind] += rates[kind]
    return out


# ---------------------------------------------------------------- the report
def _median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs) if xs else float("nan")


def summarise(variants: list[Variant], interop: dict, default_interop: int) -> list[dict]:
    """One row per variant: median images/s over the rounds and its ratio to the default of its kind."""
    rows, base = [], {}
    for v in variants:
        rate = _median(v.rates)
        base.setdefault(v.kind, rate)  # the first variant of each kind is its default
        rows.append({"kind": v.kind, "name": v.name, "batch": v.batch, "threads": v.threads,
                     "images_per_s": rate, "ratio": rate / base[v.kind], "rates": v.rates,
                     "first_call_s": v.first_call_s, "compiled": v.compiled})
    for n, kinds in interop.items():
        for kind, rates in kinds.items():
            ref = _median(interop[default_interop][kind])
            rows.append({"kind": kind, "name": f"inter-op {n} (own process)", "batch": None, "threads": None,
                         "images_per_s": _median(rates), "ratio": _median(rates) / ref, "rates": rates,
                         "first_call_s": None, "compiled": False})
    return rows


def print_table(rows: list[dict], checks: dict) -> None:
    print("\n| kind | variant | batch | threads | img/s | x default | first call s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        first = f"{r['first_call_s']:.1f}" if r["first_call_s"] is not None else ""
        print(f"| {r['kind']} | {r['name']} | {r['batch'] or ''} | {r['threads'] or ''} | "
              f"{r['images_per_s']:.1f} | {r['ratio']:.2f} | {first} |")
    print("\n| check (real checkpoint, real crops) | result | ok |\n|---|---|---|")
    for name, c in checks.items():
        vals = ", ".join(f"{k} {v:.3g}" for k, v in c.items() if k != "ok" and isinstance(v, float))
        print(f"| {name} | {vals} | {'yes' if c['ok'] else 'NO'} |")


def _raise_recompile_limit(limit: int = 64) -> None:
    """Every compiled variant is another graph of BengaliNet.forward: past dynamo's limit (8) it would run eager."""
    from torch._dynamo import config

    for key in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, key):
            setattr(config, key, max(getattr(config, key), limit))


def levers(args) -> int:
    """The lever benchmark: variants interleaved in one process, checks, inter-op children, table and JSON."""
    import tempfile

    import torch

    from bengali_kit.speed import cpu_has_bf16, set_threads

    o = dict(DEFAULT, threads=args.threads, repeats=args.repeats, steps=args.steps or 3, warmup=args.warmup or 2,
             crops=300, backend=args.compile_backend or "inductor", interop_repeats=max(1, args.repeats // 2))
    if args.quick:
        o.update(QUICK, interop_repeats=1)
        o["backend"] = args.compile_backend or QUICK["backend"]
    o["thread_levels"] = [1, o["threads"]] + ([os.cpu_count()] if (os.cpu_count() or 1) > o["threads"] else [])
    default_interop = set_threads(o["threads"])[1]
    _raise_recompile_limit()
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_has_bf16": cpu_has_bf16(),
            "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default (warm after a first run)"),
            "load_start": os.getloadavg()[0], **{k: v for k, v in o.items()}}
    print(f"# levers: {json.dumps(meta)}", flush=True)
    t0 = time.perf_counter()
    checks = correctness_checks(o)
    print(f"# checks done in {time.perf_counter() - t0:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_levers_") as tmp:
        variants = build_variants(o, Path(tmp))
        run_variants(variants, o["repeats"], o["steps"], o["warmup"])
    levels = sorted({default_interop, 1})
    interop = interop_rounds(o, levels) if len(levels) > 1 else {}
    rows = summarise(variants, interop, default_interop)
    meta.update(load_end=os.getloadavg()[0], seconds=time.perf_counter() - t0)
    print_table(rows, checks)
    print(f"# {meta['seconds']:.0f} s, load average {meta['load_start']:.1f} -> {meta['load_end']:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "checks": checks, "rows": rows}, indent=1))
    return 0 if all(c["ok"] for c in checks.values()) else 1


# ---------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-interop", help=argparse.SUPPRESS)
    ap.add_argument("--levers", action="store_true",
                    help="the speed levers against today's default instead of the seed comparison")
    ap.add_argument("--quick", action="store_true", help="--levers at toy size, in well under a minute")
    ap.add_argument("--repeats", type=int, default=5, help="--levers: timed rounds (median reported)")
    ap.add_argument("--compile-backend", help="--levers: torch.compile backend (default inductor; --quick: eager)")
    ap.add_argument("--fresh-compile-cache", action="store_true",
                    help="--levers: compile into an empty inductor cache, so the first-call times are cold")
    ap.add_argument("--models", default="efficientnet-b0,efficientnet-b3")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--extra-sizes", default="64,128", help="sizes for the BengaliNet b0 training figures")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, help="untimed calls per model first (default 3; --levers 2)")
    ap.add_argument("--steps", type=int, help="timed calls per block (default 5; --levers 3)")
    ap.add_argument("--memory-format-sizes", default="64,96",
                    help="sizes for BengaliNet b0 contiguous vs channels_last (empty: skip)")
    ap.add_argument("--json", type=Path, help="also write all results here")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return 0
    if args.one_interop:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(measure_interop(json.loads(args.one_interop))))
        return 0
    if args.levers or args.quick:
        if args.fresh_compile_cache:  # read when inductor is first imported: before any compile
            import tempfile

            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cold_")
        return levers(args)

    common = dict(batch_size=args.batch_size, threads=args.threads, warmup=args.warmup or 3, steps=args.steps or 5)
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
