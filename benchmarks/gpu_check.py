"""GPU check: every CUDA path of the kit measured in at most 8 minutes on one GPU.

Here, with no GPU (builds the wheels the GPU machine may lack, then proves every step still runs)::

    python benchmarks/gpu_check.py --prepare benchmarks/.cache/gpu_wheels
    python benchmarks/gpu_check.py --dry-run              # every step on the CPU at toy size, < 1 minute

On the GPU machine (offline, maybe another Python; a CUDA torch already there)::

    python benchmarks/gpu_check.py --wheels benchmarks/.cache/gpu_wheels --out $OUT

Steps, each with a time budget printed before it and its time after it; a failing step is recorded with a
one-line reason and the next one runs:

  imports     the modules the check needs; the missing pure-Python ones installed from ``--wheels``
  device      ``resolve_device("auto")`` on the card, and what torch says about it
  train_b0    training steps (``engine.train_step``: AMP, channels_last, on-device augmentation) of
  train_b3    efficientnet-b0 / -b3 at 128 px: images/s and peak memory
  predict     ``prediction.predict`` at 128 px for b0 and b3, with and without TTA, and the network alone
  kernel      the rendered Kaggle kernel end to end on a 50,210-row test parquet (installing the kit from
              the package's wheels, offline), timed against ``kaggle/estimate.py``'s assumption
  ema_resume  ``train(cfg)`` with an EMA, interrupted after its first checkpoint and resumed, against the
              same run uninterrupted
  finetune    ``--preset kaggle`` fine-tune at 128 px on the vendored real crops (``import-crops``) for a
              fixed number of steps: its recall and images/s

Results go to ``<out>/gpu_check.json`` (rewritten after every step, so a run cut short keeps what it
measured) and ``<out>/gpu_check.log``; ``--out`` defaults to ``$OUT`` if set, else
benchmarks/.cache/gpu_check. Images are random ink strokes drawn with OpenCV (no fonts needed), written
through the kit's competition-folder writer.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REAL_CROPS = ROOT / "tests" / "data" / "real_slice_64.npz"
INIT_WEIGHTS = ROOT / "weights" / "synth-b0-96.pt"
JSON_NAME, LOG_NAME = "gpu_check.json", "gpu_check.log"
TOTAL_BUDGET_S = 480.0  # the whole check on one GPU: 8 minutes
KERNEL_ROWS = 50_210  # rows of one real test parquet
MODELS = ("efficientnet-b0", "efficientnet-b3")

#: What the check imports: (module, the distribution ``--prepare`` brings as a wheel, or None when it is a
#: compiled package the GPU machine must already have).
NEEDED: tuple[tuple[str, str | None], ...] = (
    ("torch", None), ("numpy", None), ("pandas", None), ("pyarrow", None), ("cv2", None), ("PIL", None),
    ("matplotlib", None), ("sklearn", None), ("tqdm", "tqdm"), ("efficientnet_pytorch", "efficientnet-pytorch"),
    ("bengali_kit", "bengali_kit"),
)
#: Pure-Python distributions ``--prepare`` repacks besides the kit itself.
PURE_DEPENDENCIES = ("efficientnet-pytorch", "tqdm")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each step is: the GPU run, or the CPU dry run at toy size."""

    image_size: int = 128
    train_batch: int = 128
    train_warmup: int = 5
    train_steps: int = 40
    ema_rows: int = 1024
    ema_batch: int = 64
    ema_steps: int = 6  # per epoch, 2 epochs
    predict_rows: int = 8192
    predict_batch: int = 256
    network_batches: int = 10
    kernel_rows: int = KERNEL_ROWS
    finetune_batch: int = 48
    finetune_epochs: int = 20
    finetune_steps: int = 5  # per epoch: 240 training crops / 48
    workers: int = 4  # DataLoader workers (the kaggle preset's)
    preprocess_workers: int | None = None  # the cache's processes (None: all cores)


DRY_SIZES = Sizes(image_size=32, train_batch=8, train_warmup=1, train_steps=1, ema_rows=40, ema_batch=8,
                  ema_steps=1, predict_rows=16, predict_batch=16, network_batches=1, kernel_rows=48,
                  finetune_batch=8, finetune_epochs=2, finetune_steps=1, workers=0,
                  preprocess_workers=1)

#: Seconds each step may take on the GPU (printed before it); a step is stopped at twice that (the dry run
#: is stopped only by the total budget).
BUDGETS = {"device": 20, "train_b0": 25, "train_b3": 30, "predict": 60, "kernel": 150, "ema_resume": 50,
           "finetune": 45}
STEPS = tuple(BUDGETS)


class StepTimeout(Exception):
    """A step ran past its hard limit."""


class Interrupted(Exception):
    """Raised right after the first last.pt of a run, to resume from it."""


class Tee:
    """A stream that writes to the terminal and to the log file."""

    def __init__(self, stream: Any, log: Any):
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False


def say(text: str) -> None:
    """Progress, as it goes."""
    print(text, flush=True)


def one_line(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
    return f"{type(err).__name__}: {first}"[:300] if first else type(err).__name__


# ---------------------------------------------------------------- wheels and imports
def prepare(dest: Path) -> list[Path]:
    """Build the kit's wheel and repack its pure-Python dependencies into ``dest`` (offline)."""
    from bengali_kit.errors import DataError
    from bengali_kit.kaggle.wheels import build_kit_wheel, pip_wheel, wheel_from_installed, wheel_key

    dest.mkdir(parents=True, exist_ok=True)
    keys = {wheel_key("bengali_kit"), *(wheel_key(d) for d in PURE_DEPENDENCIES)}
    for old in dest.glob("*.whl"):  # one version of each: two would stop pip
        if wheel_key(old.name) in keys:
            old.unlink()
    wheels = [build_kit_wheel(dest)]
    for dist in PURE_DEPENDENCIES:
        try:
            wheels.append(wheel_from_installed(dist, dest))
        except DataError:  # not installed here as a plain wheel: build it (needs the package index)
            wheels.append(pip_wheel(dist, dest))
    return wheels


def missing_modules() -> list[str]:
    """The modules of ``NEEDED`` that cannot be found (without importing them: fast)."""
    importlib.invalidate_caches()
    missing = []
    for module, _ in NEEDED:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken install or finder: as good as absent
            found = False
        if not found:
            missing.append(module)
    return missing


def install_wheels(wheel_dir: Path, modules: list[str], site: Path) -> list[str]:
    """pip install (offline, no dependencies) the wheels of ``wheel_dir`` that provide ``modules``."""
    dists = {m: d for m, d in NEEDED if d is not None}
    keys = {re.sub(r"[-_.]+", "_", dists[m]).lower() for m in modules if m in dists}
    wheels = [w for w in sorted(wheel_dir.glob("*.whl")) if re.sub(r"[-_.]+", "_", w.name.split("-")[0]).lower()
              in keys]
    if not wheels:
        return []
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile", "--quiet",
           "--disable-pip-version-check", "--target", str(site), *map(str, wheels)]
    say("imports: " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()] or ["no output"]
        raise RuntimeError(f"pip install from {wheel_dir} failed: {lines[-1].strip()}")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    return [w.name for w in wheels]


def check_imports(wheel_dir: Path | None, site: Path) -> dict:
    """Make every needed module importable (wheels, else the checkout the script is in); say what is missing."""
    missing = missing_modules()
    installed: list[str] = []
    if missing and wheel_dir is not None:
        if not wheel_dir.is_dir():
            raise RuntimeError(f"--wheels {wheel_dir}: no such folder (make it here with --prepare)")
        installed = install_wheels(wheel_dir, missing, site)
        missing = missing_modules()
    if "bengali_kit" in missing and (ROOT / "bengali_kit" / "__init__.py").is_file():
        sys.path.insert(0, str(ROOT))  # the checkout this script sits in
        missing = missing_modules()
    if missing:
        brought = [m for m, d in NEEDED if m in missing and d is not None]
        hint = f" (--prepare DIR here, then --wheels DIR brings {', '.join(brought)})" if brought else ""
        raise RuntimeError(f"missing module(s): {', '.join(missing)}{hint}")
    import efficientnet_pytorch
    import torch

    import bengali_kit

    return {"installed_wheels": installed, "python": platform.python_version(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "bengali_kit": bengali_kit.__version__,
            "bengali_kit_from": str(Path(bengali_kit.__file__).parent),
            "efficientnet_pytorch_from": str(Path(efficientnet_pytorch.__file__).parent)}


# ---------------------------------------------------------------- data without fonts
def stroke_images(n: int, seed: int) -> Any:
    """``n`` uint8 137x236 frames of random dark ink strokes on white (stands in for handwriting)."""
    import cv2
    import numpy as np

    from bengali_kit.data import IMAGE_HEIGHT, IMAGE_WIDTH

    rng = np.random.default_rng(seed)
    out = np.full((n, IMAGE_HEIGHT, IMAGE_WIDTH), 255, dtype=np.uint8)
    for img in out:
        cx, cy = rng.integers(70, 166), rng.integers(45, 92)
        for _ in range(rng.integers(2, 6)):
            pts = np.stack([cx + rng.integers(-55, 56, 4), cy + rng.integers(-35, 36, 4)], 1).astype(np.int32)
            cv2.polylines(img, [pts], False, int(rng.integers(0, 70)), int(rng.integers(3, 8)), cv2.LINE_AA)
    return out


def write_folder(out: Path, train_rows: int, test_rows: int, seed: int = 0) -> Path:
    """A competition folder of stroke images (one parquet per split) through the kit's folder writer.

    A pool of at most 512 images is repeated to the row counts; each pool image keeps one label, so a
    model trained on the folder can learn it.
    """
    import numpy as np
    import pandas as pd

    from bengali_kit.competition_folder import write_competition_files, write_folders
    from bengali_kit.components import COMPONENTS, N_CLASSES

    pool = stroke_images(min(512, max(train_rows, test_rows)), seed)
    rng = np.random.default_rng(seed + 1)
    pool_labels = np.stack([rng.integers(0, min(k, 16), len(pool)) for k in N_CLASSES], 1)

    def split(prefix: str, n: int) -> tuple[pd.DataFrame, list]:
        idx = np.arange(n) % len(pool)
        df = pd.DataFrame({"image_id": [f"{prefix}_{i}" for i in range(n)],
                           **{c: pool_labels[idx, j] for j, c in enumerate(COMPONENTS)}})
        chunks = (pool[idx[s:s + 2048]] for s in range(0, n, 2048))  # streamed: one row group in memory
        return df, [chunks]

    train, train_images = split("Train", train_rows)
    test, test_images = split("Test", test_rows)
    return write_folders(out, overwrite=True, write=lambda tmp: write_competition_files(
        tmp, train, test, train_images, test_images, files=1))


def random_checkpoint(work: Path, name: str, size: int) -> Path:
    """A randomly initialised kit checkpoint of ``name`` at ``size`` px (made once per run)."""
    import torch

    from bengali_kit.model import ModelConfig, build_model, save_checkpoint
    from bengali_kit.preprocess import CropParams

    path = work / "checkpoints" / f"{name}-{size}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        save_checkpoint(path, build_model(ModelConfig(name=name)), image_size=size,
                        preprocess=CropParams().asdict())
    return path


# ---------------------------------------------------------------- steps
def step_device(ctx: dict) -> dict:
    """``resolve_device("auto")`` and what torch says about the card."""
    import torch

    from bengali_kit.device import cuda_problem, resolve_device

    dev = resolve_device("auto")
    out: dict[str, Any] = {"resolved": str(dev), "cuda_available": torch.cuda.is_available(),
                           "cuda_problem": cuda_problem(0), "cudnn": torch.backends.cudnn.version()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, capability=f"sm_{props.major}{props.minor}", memory_gib=round(
            props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
            arch_list=list(torch.cuda.get_arch_list()))
    if not ctx["dry_run"] and dev.type != "cuda":
        raise RuntimeError(f"no usable GPU: {out['cuda_problem']}")
    return out


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_mib(dev: Any) -> dict:
    import torch

    if dev.type != "cuda":
        return {"peak_allocated_mib": None, "peak_reserved_mib": None}
    return {"peak_allocated_mib": round(torch.cuda.max_memory_allocated(dev) / 2**20),
            "peak_reserved_mib": round(torch.cuda.max_memory_reserved(dev) / 2**20)}


def step_train(ctx: dict, name: str) -> dict:
    """Training steps of the kit's engine (kaggle preset's augmentation, AMP, channels_last): images/s, memory."""
    import torch

    from bengali_kit.augment import BatchAugmenter
    from bengali_kit.components import N_CLASSES
    from bengali_kit.engine import TrainState, train_step
    from bengali_kit.losses import MultiHeadLoss
    from bengali_kit.model import ModelConfig, build_model
    from bengali_kit.optim import lars_param_groups
    from bengali_kit.train_config import TrainConfig

    sz, dev = ctx["sizes"], ctx["dev"]
    cfg = TrainConfig.from_preset("kaggle", model=name, image_size=sz.image_size, batch_size=sz.train_batch)
    _reset_peak(dev)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name, pooling=cfg.pooling)).to(dev)
    state = TrainState(
        model=model, net=model, optimizer=torch.optim.AdamW(lars_param_groups(model, cfg.weight_decay), lr=cfg.lr),
        loss_fn=MultiHeadLoss(label_smoothing=cfg.label_smoothing),
        augment=BatchAugmenter(cfg.affine_degrees, cfg.affine_scale, cfg.affine_translate, cfg.affine_shear,
                               cfg.cutmix_p, cfg.mixup_p, cfg.mix_alpha, device=dev),
        device=dev, peak_lr=cfg.lr, amp=cfg.amp and dev.type == "cuda", channels_last=cfg.channels_last)
    model.train()
    # one batch kept on the device: this measures the step, not the data path
    images = torch.randint(0, 256, (sz.train_batch, sz.image_size, sz.image_size), dtype=torch.uint8, device=dev)
    labels = torch.stack([torch.randint(0, k, (sz.train_batch,)) for k in N_CLASSES], 1).to(dev)
    t0 = time.perf_counter()
    losses = [float(train_step(state, images, labels)) for _ in range(sz.train_warmup)]
    _sync(dev)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(sz.train_steps):
        loss = train_step(state, images, labels)
    _sync(dev)
    seconds = time.perf_counter() - t0
    losses.append(float(loss))
    n = sz.train_steps * sz.train_batch
    return {"model": name, "image_size": sz.image_size, "batch": sz.train_batch, "amp": state.amp,
            "channels_last": state.channels_last, "steps": sz.train_steps, "img_s": round(n / seconds, 1),
            "ms_per_step": round(1000 * seconds / sz.train_steps, 2), "warmup_s": round(warmup_s, 2),
            "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
            "grad_scale": float(state.scaler.get_scale()) if state.amp else None, **_peak_mib(dev)}


def step_predict(ctx: dict) -> dict:
    """``predict`` over a test folder for b0 and b3, without and with TTA, and the network alone."""
    import numpy as np
    import torch

    from bengali_kit.prediction import TTA_VIEWS, _load_groups, _run_models, predict

    sz, dev, work = ctx["sizes"], ctx["dev"], ctx["work"]
    t0 = time.perf_counter()
    folder = write_folder(work / "predict_data", train_rows=8, test_rows=sz.predict_rows)
    out: dict[str, Any] = {"rows": sz.predict_rows, "image_size": sz.image_size, "batch": sz.predict_batch,
                           "data_s": round(time.perf_counter() - t0, 1), "tta_views": len(TTA_VIEWS)}
    for name in MODELS:
        ckpt = random_checkpoint(work, name, sz.image_size)
        short = name.split("-")[-1]
        for tta in (False, True):
            _reset_peak(dev)
            res = predict(folder, [ckpt], batch_size=sz.predict_batch, device=str(dev), tta=tta, progress=False)
            key = f"{short}{'_tta' if tta else ''}"
            out[f"{key}_img_s"] = round(res.images_per_second, 1)
            out[f"{key}_peak_allocated_mib"] = _peak_mib(dev)["peak_allocated_mib"]
            say(f"  predict {key}: {res.summary()}")
            # the network alone on preprocessed images: how much of predict's time the GPU is busy
            group = _load_groups([ckpt], dev)[0]
            images = np.random.default_rng(0).integers(0, 256, (sz.predict_batch, sz.image_size, sz.image_size),
                                                       dtype=np.uint8)
            _run_models(group, images, dev, tta)  # warm-up
            t = time.perf_counter()
            for _ in range(sz.network_batches):
                _run_models(group, images, dev, tta)  # returns numpy arrays: synchronised
            out[f"{key}_network_img_s"] = round(sz.network_batches * sz.predict_batch / (time.perf_counter() - t), 1)
            del group
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return out


def _fake_kaggle_input(root: Path, data: Path, package: Path, dataset_id: str) -> Path:
    """``root/input`` as a Kaggle session sees it: the competition's test files and the package dataset."""
    comp = root / "input" / "competitions" / "bengaliai-cv19"
    comp.mkdir(parents=True, exist_ok=True)
    for f in sorted(data.iterdir()):
        if f.is_file() and f.name != "test_labels.csv" and not f.name.startswith("train_image_data_"):
            try:
                os.link(f, comp / f.name)  # the 1.6 GB parquet is not copied
            except OSError:
                shutil.copy2(f, comp / f.name)
    owner, slug = dataset_id.split("/", 1)
    shutil.copytree(package, root / "input" / "datasets" / owner / slug)
    return root / "input"


def step_kernel(ctx: dict) -> dict:
    """The packaged kernel, run as Kaggle would (offline install from its wheels), on a 50,210-row test parquet."""
    import pandas as pd

    from bengali_kit.kaggle import build_package
    from bengali_kit.kaggle.estimate import HIDDEN_TEST_IMAGES, STARTUP_S, estimate_runtime
    from bengali_kit.kaggle.verify import SITECUSTOMIZE, venv_env

    sz, work = ctx["sizes"], ctx["work"]
    model = "efficientnet-b3"  # the kaggle preset's
    t0 = time.perf_counter()
    data = write_folder(work / "kernel_data", train_rows=8, test_rows=sz.kernel_rows)
    data_s = time.perf_counter() - t0
    say(f"  kernel: wrote {sz.kernel_rows:,} test rows in {data_s:.1f} s")
    wheels = ctx["wheels"]
    if wheels is None:  # no --wheels: build them now (the dry run checks --prepare this way)
        wheels = work / "wheels"
        prepare(wheels)
    ckpt = random_checkpoint(work, model, sz.image_size)
    info = build_package([ckpt], work / "package", user="gpucheck", slug="bengali-kit-gpu-check",
                         wheel_dir=wheels, overwrite=True, accel="t4")
    shutil.rmtree(work / "kaggle", ignore_errors=True)  # a --work folder used before
    kin = _fake_kaggle_input(work / "kaggle", data, info.out_dir, info.dataset_id)
    working = work / "kaggle" / "working"
    working.mkdir(parents=True, exist_ok=True)
    # The kernel must install the kit from the package's wheels: a sitecustomize (the offline check's) hides
    # bengali_kit and efficientnet_pytorch except in this folder, where PIP_TARGET makes its pip install them.
    site = work / "kaggle" / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = venv_env(BENGALI_KIT_INPUT_ROOT=str(kin), BENGALI_KIT_OUTPUT_DIR=str(working), BENGALI_KIT_PROGRESS="0",
                   PYTHONPATH=str(site), PIP_TARGET=str(site))
    if ctx["dry_run"]:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")  # the dry run stays on the CPU, one thread
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(info.out_dir / "kernel" / "kernel.py")], capture_output=True,
                          text=True, cwd=working, env=env, timeout=max(ctx["limit"]() - 2, 1), check=False)
    kernel_s = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    (ctx["out"] / "kernel.log").write_text(log, encoding="utf-8")
    if proc.returncode != 0:
        lines = [ln for ln in log.splitlines() if ln.strip()] or ["no output"]
        raise RuntimeError(f"kernel exited {proc.returncode}: {lines[-1].strip()[:200]}")
    m = re.search(r"predicted (\d+) images in ([\d.]+) s \(([\d.]+) images/s\) on (\S+)", log)
    sub = pd.read_csv(working / "submission.csv")
    if len(sub) != 3 * sz.kernel_rows:
        raise RuntimeError(f"submission has {len(sub)} rows, expected {3 * sz.kernel_rows}")
    if "pip install" not in log:
        raise RuntimeError("the kernel did not install the kit from the package's wheels")
    models = [(model, sz.image_size)]
    lo, hi = estimate_runtime(models, "t4", images=sz.kernel_rows).minutes
    hidden = estimate_runtime(models, "t4").minutes
    predict_img_s = float(m.group(3)) if m else None
    startup_s = kernel_s - float(m.group(2)) if m else STARTUP_S  # install, imports, model loading
    say(f"  kernel: {kernel_s:.1f} s for {sz.kernel_rows:,} rows (predicting at {predict_img_s} images/s on "
        f"{m.group(4) if m else '?'}); kaggle/estimate.py assumes {lo * 60:.0f}-{hi * 60:.0f} s on a T4")
    return {"model": model, "image_size": sz.image_size, "rows": sz.kernel_rows, "data_s": round(data_s, 1),
            "kernel_s": round(kernel_s, 1), "predict_s": float(m.group(2)) if m else None,
            "predict_img_s": predict_img_s, "kernel_device": m.group(4) if m else None,
            "startup_s": round(startup_s, 1),
            "estimate_t4_s": [round(lo * 60, 1), round(hi * 60, 1)], "estimate_startup_s": STARTUP_S,
            "measured_over_estimate": [round(kernel_s / (lo * 60), 3), round(kernel_s / (hi * 60), 3)],
            "hidden_test_min_at_measured_rate": round((startup_s + HIDDEN_TEST_IMAGES / predict_img_s) / 60, 1)
            if predict_img_s else None,
            "hidden_test_min_estimate_t4": [round(hidden[0], 1), round(hidden[1], 1)],
            "package_estimate": info.estimate.lines()[0] if info.estimate else None}


def _max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts' floating tensors."""
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].is_floating_point()),
               default=0.0)


def step_ema_resume(ctx: dict) -> dict:
    """``train(cfg)`` with an EMA, interrupted after its first last.pt and resumed, against an uninterrupted run."""
    import torch

    import bengali_kit.train as train_module
    from bengali_kit.model import load_checkpoint
    from bengali_kit.train_config import TrainConfig

    sz, dev, work = ctx["sizes"], ctx["dev"], ctx["work"]
    data = write_folder(work / "train_data", train_rows=sz.ema_rows, test_rows=8)
    cfg = TrainConfig(data_dir=str(data), out_dir=str(work / "runs" / "whole"), cache_dir=str(work / "cache"),
                      model="efficientnet-b0", image_size=sz.image_size, batch_size=sz.ema_batch, epochs=2,
                      max_steps=sz.ema_steps, ema_decay=0.99, device=str(dev), num_workers=sz.workers,
                      preprocess_workers=sz.preprocess_workers,
                      amp=True, channels_last=True, progress=False, overwrite=True)
    t0 = time.perf_counter()
    whole = Path(train_module.train(cfg))
    whole_s = time.perf_counter() - t0

    real_save_last = train_module.save_last

    first: dict[str, Any] = {}

    def save_then_stop(path: Path, model: Any, **extra: Any) -> Path:
        real_save_last(path, model, **extra)
        # epoch 1 always improves on nothing: best.pt, just written, must hold the EMA's weights
        first["best_is_ema"] = _max_diff(load_checkpoint(path.parent / "best.pt")["model"],
                                         extra["ema"]["model"]) == 0.0
        raise Interrupted(path)

    parted = dataclasses.replace(cfg, out_dir=str(work / "runs" / "resumed"))
    train_module.save_last = save_then_stop  # the name train() looks up, for this interruption
    try:
        train_module.train(parted)
        raise RuntimeError("the run was not interrupted after its first epoch")
    except Interrupted:
        pass
    finally:
        train_module.save_last = real_save_last
    t0 = time.perf_counter()
    resumed = Path(train_module.train(dataclasses.replace(parted, resume=True, overwrite=False)))
    resume_s = time.perf_counter() - t0

    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(resumed / "last.pt")
    if "ema" not in a:
        raise RuntimeError("last.pt holds no EMA")
    weights_diff, ema_diff = _max_diff(a["model"], b["model"]), _max_diff(a["ema"]["model"], b["ema"]["model"])
    return {"device": str(dev), "epochs": int(a["epoch"]), "steps": int(a["step"]), "whole_s": round(whole_s, 1),
            "resume_s": round(resume_s, 1), "ema_updates": int(a["ema"]["updates"]),
            "best_is_ema": first.get("best_is_ema"),
            "grad_scale": float(a["scaler"]["scale"]) if a.get("scaler") else None,
            "resume_weights_max_diff": weights_diff, "resume_ema_max_diff": ema_diff,
            "resume_bit_exact": weights_diff == 0.0 and ema_diff == 0.0,
            "val_weighted_whole": round(float(a["history"][-1]["val_weighted"]), 4),
            "val_weighted_resumed": round(float(b["history"][-1]["val_weighted"]), 4),
            "cuda_rng_saved": "cuda" in a.get("rng", {}) if torch.cuda.is_available() else None}


def step_finetune(ctx: dict) -> dict:
    """``--preset kaggle`` (b0 from the shipped synthetic init) on the real crops at 128 px: recall, images/s."""
    from bengali_kit.realdata import import_crops
    from bengali_kit.train import train
    from bengali_kit.train_config import TrainConfig

    sz, dev, work = ctx["sizes"], ctx["dev"], ctx["work"]
    rep = import_crops(REAL_CROPS, work / "real", val_per_triple=1, seed=0, files=1, overwrite=True)
    init = str(INIT_WEIGHTS) if INIT_WEIGHTS.is_file() else None
    # b0: the one shipped init is b0 (a b3 would start from scratch and score ~0 in a few dozen steps)
    cfg = TrainConfig.from_preset(
        "kaggle", data_dir=str(rep.train_dir), val_data_dir=str(rep.val_dir), out_dir=str(work / "runs" / "finetune"),
        cache_dir=str(work / "cache"), model="efficientnet-b0", init=init, image_size=sz.image_size,
        batch_size=sz.finetune_batch, epochs=sz.finetune_epochs, max_steps=sz.finetune_steps,
        val_every=sz.finetune_epochs, num_workers=sz.workers, preprocess_workers=sz.preprocess_workers,
        device=str(dev), progress=False, overwrite=True)
    t0 = time.perf_counter()
    run = Path(train(cfg))
    total_s = time.perf_counter() - t0
    import pandas as pd

    last = pd.read_csv(run / "history.csv").iloc[-1]
    steps = int(last["step"])
    return {"preset": "kaggle", "model": cfg.model, "init": Path(init).name if init else None,
            "image_size": sz.image_size, "batch": cfg.batch_size, "n_train": rep.n_train, "n_val": rep.n_val,
            "steps": steps, "train_s": round(float(last["seconds"]), 1), "total_s": round(total_s, 1),
            "img_s": round(steps * cfg.batch_size / float(last["seconds"]), 1),
            "val_weighted": round(float(last["val_weighted"]), 4),
            **{k: round(float(last[k]), 4) for k in ("val_grapheme_root", "val_vowel_diacritic",
                                                     "val_consonant_diacritic")}}


# ---------------------------------------------------------------- the run
def write_json(out: Path, results: dict) -> None:
    """The results file, replaced whole (a reader never sees half of it)."""
    tmp = out / f".{JSON_NAME}.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out / JSON_NAME)


def run_step(results: dict, name: str, fn: Callable[[], dict], deadline: float, out: Path, ctx: dict) -> None:
    """Run one step under its budget and a hard limit; record its numbers or a one-line reason."""
    budget = float(BUDGETS[name])
    left = deadline - time.monotonic()
    rec: dict[str, Any] = {"status": "skipped", "budget_s": budget, "seconds": 0.0}
    results["steps"][name] = rec
    if left < 5:
        rec["reason"] = f"the {results['meta']['budget_s']:.0f}-s total budget is spent"
        say(f"[{name}] skipped: {rec['reason']}")
        write_json(out, results)
        return
    # the dry run's CPU times say nothing about the GPU's: only the total budget stops it
    limit = left if ctx["dry_run"] else min(2 * budget, left)
    end = time.monotonic() + limit
    ctx["limit"] = lambda: max(end - time.monotonic(), 1.0)
    say(f"[{name}] budget {budget:.0f} s (stopped at {limit:.0f} s); {left:.0f} s of the total left")

    def on_alarm(signum: int, frame: Any) -> None:
        raise StepTimeout(f"ran past its {limit:.4g}-s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    t0 = time.perf_counter()
    try:
        rec.update(fn())
        rec["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - each step is isolated: record it and go on
        traceback.print_exc()
        rec.update(status="failed", reason=one_line(err))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        rec["seconds"] = round(time.perf_counter() - t0, 2)
    over = " OVER BUDGET" if rec["seconds"] > budget and not ctx["dry_run"] else ""
    numbers = {k: v for k, v in rec.items() if k not in ("status", "budget_s", "seconds", "reason")
               and isinstance(v, (int, float)) and not isinstance(v, bool)}
    shown = ", ".join(f"{k} {v}" for k, v in list(numbers.items())[:8])
    say(f"[{name}] {rec['status']} in {rec['seconds']:.1f} s (budget {budget:.0f} s){over}"
        + (f": {rec['reason']}" if "reason" in rec else (f": {shown}" if shown else "")))
    write_json(out, results)


def default_out() -> Path:
    """``$OUT`` where the device machine sets it, else a cache folder of the checkout."""
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / ".cache" / "gpu_check"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", type=Path, metavar="DIR", help="build the wheels to carry to the GPU machine "
                   "into DIR, then stop")
    p.add_argument("--wheels", type=Path, metavar="DIR", help="a folder made by --prepare: installs what is missing "
                   "(pip --no-index --no-deps) and is the Kaggle package's wheel source")
    p.add_argument("--out", type=Path, default=None, help=f"where {JSON_NAME} and {LOG_NAME} go (default: $OUT if "
                   "set, else benchmarks/.cache/gpu_check)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder for the generated data and runs "
                   "(default: a temporary folder, removed at the end)")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU at toy size")
    p.add_argument("--only", default=None, help=f"comma-separated steps to run (of {', '.join(STEPS)})")
    p.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole check")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Prepare the wheels, or run the check and write its JSON and log."""
    args = parse_args(argv)
    if args.prepare:
        sys.path.insert(0, str(ROOT))  # --prepare runs in the checkout, installed or not
        for w in prepare(args.prepare):
            say(f"wheel: {w} ({w.stat().st_size / 1024:.0f} KiB)")
        say(f"carry {args.prepare} to the GPU machine and run: python benchmarks/gpu_check.py --wheels "
            f"{args.prepare} --out $OUT")
        return 0
    only = (set(args.only.split(",")) | {"device"}) if args.only else set(STEPS)  # the others need the device
    unknown = only - set(STEPS)
    if unknown:
        raise SystemExit(f"gpu_check: unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    out = (args.out or default_out()).absolute()
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / LOG_NAME, "w", encoding="utf-8")  # open for the whole run: closed at the end
    sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
    start = time.monotonic()
    deadline = start + args.budget
    keep_work = args.work is not None
    work = (args.work or Path(tempfile.mkdtemp(prefix="bk-gpu-check-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": {"dry_run": args.dry_run, "budget_s": args.budget, "host": platform.node(),
                                        "cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "argv": sys.argv[1:]}, "steps": {}}
    plan = ", ".join(f"{s} {BUDGETS[s]} s" for s in STEPS if s in only)
    say(f"gpu_check{' (dry run: CPU, toy size)' if args.dry_run else ''}: {plan}; total at most {args.budget:.0f} s"
        f" -> {out / JSON_NAME}")
    status = 0
    try:
        t0 = time.perf_counter()
        try:
            results["steps"]["imports"] = {"status": "ok", **check_imports(args.wheels, work / "site")}
        except Exception as err:  # noqa: BLE001 - said in one line, then nothing else can run
            results["steps"]["imports"] = {"status": "failed", "reason": one_line(err)}
        results["steps"]["imports"].update(seconds=round(time.perf_counter() - t0, 2), budget_s=30.0)
        imp = results["steps"]["imports"]
        say(f"[imports] {imp['status']} in {imp['seconds']:.1f} s: " + (imp.get("reason") or (
            f"python {imp['python']}, torch {imp['torch']} (CUDA {imp['torch_cuda']}), bengali_kit "
            f"{imp['bengali_kit']} from {imp['bengali_kit_from']}; wheels installed: "
            f"{', '.join(imp['installed_wheels']) or 'none'}")))
        write_json(out, results)
        if imp["status"] != "ok":
            return 2
        import torch

        if args.dry_run:
            torch.set_num_threads(1)  # toy sizes: threads cost more than they give, on a shared CPU most
        ctx: dict[str, Any] = {"dry_run": args.dry_run, "sizes": DRY_SIZES if args.dry_run else Sizes(),
                               "dev": torch.device("cpu"), "work": work, "out": out,
                               "wheels": args.wheels.absolute() if args.wheels else None}
        steps: dict[str, Callable[[], dict]] = {
            "device": lambda: step_device(ctx), "train_b0": lambda: step_train(ctx, "efficientnet-b0"),
            "train_b3": lambda: step_train(ctx, "efficientnet-b3"), "predict": lambda: step_predict(ctx),
            "kernel": lambda: step_kernel(ctx), "ema_resume": lambda: step_ema_resume(ctx),
            "finetune": lambda: step_finetune(ctx)}
        for name in STEPS:
            if name not in only:
                continue
            run_step(results, name, steps[name], deadline, out, ctx)
            if name == "device":
                dev_rec = results["steps"]["device"]
                results["meta"]["gpu"] = dev_rec.get("name")
                if dev_rec["status"] != "ok":
                    say("no usable GPU: the other steps are skipped")
                    for other in STEPS[1:]:
                        if other in only:
                            results["steps"][other] = {"status": "skipped", "budget_s": float(BUDGETS[other]),
                                                       "seconds": 0.0, "reason": "no usable GPU"}
                    break
                if not args.dry_run:
                    ctx["dev"] = torch.device(dev_rec["resolved"])
        status = 0 if all(r["status"] == "ok" for r in results["steps"].values()) else 1
    finally:
        results["meta"]["total_s"] = round(time.monotonic() - start, 1)
        write_json(out, results)
        counts = {s: sum(r["status"] == s for r in results["steps"].values()) for s in ("ok", "failed", "skipped")}
        say(f"gpu_check: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in "
            f"{results['meta']['total_s']:.0f} s -> {out / JSON_NAME}")
        sys.stdout.flush()
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        log.close()
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
