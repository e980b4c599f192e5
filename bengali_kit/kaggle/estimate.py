"""How long the kernel will take on Kaggle's hidden test set, from stated figures (printed by ``package``).

Measured here (benchmarks/README.md, "bench_inference.py"; a loaded 2-core VM, so lower bounds):
parquet decoding ≈ 980 images/s in one thread, crop/resize 7,700 images/s per core, the network on the
CPU 15.5 b0 images/s at 128 px with 2 threads. Assumed, not measured (no GPU was lent to this work):
EfficientNet in float16 reaches an effective 0.75–1.5 TFLOP/s on a T4 (depthwise convolutions keep it
far below peak), and 4 unloaded Kaggle cores run the network 5–10× faster than the 2 loaded ones here.
The kernel decodes, crops and runs the network at once, so on a GPU the slowest stage sets the pace; on
the CPU the stages share the cores and their times add up.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..prediction import TTA_VIEWS
from .metadata import accelerator

#: Rows of Kaggle's hidden test set (images; the submission has three rows per image).
HIDDEN_TEST_IMAGES = 200_840
#: The competition's limit on a submission kernel's run time.
LIMIT_MINUTES = 120
#: Test-time augmentation: the network runs once per view and image.
TTA_VIEW_COUNT = len(TTA_VIEWS)

DECODE_RATE = 980.0  # images/s, measured
CROP_RATE_PER_CORE = 7_700.0  # images/s, measured
CORES = {"t4": 4, "t4x2": 4, "p100": 2, "cpu": 4}  # vCPUs of a Kaggle session of that kind
GPU_FLOPS = (0.75e12, 1.5e12)  # effective float16 FLOP/s on a T4: assumed
CPU_FLOPS_HERE = 15.5 * 2 * 0.127e9  # b0 at 128 px, 15.5 images/s on 2 loaded threads: measured (≈ 3.9 GFLOP/s)
CPU_SPEEDUP = (5.0, 10.0)  # 4 unloaded Kaggle cores against those: assumed
STARTUP_S = 60.0  # offline pip install, CUDA start-up, model loading
SLOW_CPU = 3.0  # the upper end also allows for Kaggle vCPUs decoding 3x slower than this VM

# Multiply-accumulates per image at each backbone's native resolution (EfficientNet paper, Table 2).
_GMAC = {"efficientnet-b0": (0.39, 224), "efficientnet-b1": (0.70, 240), "efficientnet-b2": (1.0, 260),
         "efficientnet-b3": (1.8, 300), "efficientnet-b4": (4.2, 380), "efficientnet-b5": (9.9, 456),
         "efficientnet-b6": (19.0, 528), "efficientnet-b7": (37.0, 600)}


def flops_per_image(model: str, size: int) -> float:
    """Forward FLOPs of one image (2 per multiply-accumulate), scaled from the native resolution."""
    gmac, native = _GMAC.get(model, _GMAC["efficientnet-b3"])
    return 2 * gmac * 1e9 * (size / native) ** 2


@dataclass
class RuntimeEstimate:
    """The kernel's estimated run time on the hidden test set, with the figures it comes from."""

    accelerator: str
    device: str
    minutes: tuple[float, float]
    assumptions: list[str]

    def lines(self) -> list[str]:
        """What ``package`` prints."""
        lo, hi = self.minutes
        verdict = "within" if hi <= LIMIT_MINUTES else ("may exceed" if lo <= LIMIT_MINUTES else "exceeds")
        head = (f"estimated kernel run time on the {HIDDEN_TEST_IMAGES:,} hidden test images with --accelerator "
                f"{self.accelerator} ({self.device}): {lo:.0f}–{hi:.0f} min, {verdict} the "
                f"{LIMIT_MINUTES}-minute limit")
        return [head] + [f"  {a}" for a in self.assumptions]


def estimate_runtime(models: Sequence[tuple[str, int]], accel: str, tta: bool = False,
                     images: int = HIDDEN_TEST_IMAGES) -> RuntimeEstimate:
    """Estimate the kernel's minutes for ``models`` (backbone name, image size) on accelerator ``accel``."""
    acc = accelerator(accel)
    views = TTA_VIEW_COUNT if tta else 1
    flops = sum(flops_per_image(m, s) for m, s in models) * views
    cores = CORES[acc.name]
    crop_rate = CROP_RATE_PER_CORE * cores / max(len({s for _, s in models}), 1)
    measured = (f"measured on this CPU: parquet decoding {DECODE_RATE:.0f} images/s, crop/resize "
                f"{CROP_RATE_PER_CORE:,.0f} images/s per core ({cores} cores), plus {STARTUP_S:.0f} s to start; "
                "see benchmarks/README.md")
    tta_note = f", {views} TTA views" if tta else ""
    network = f"network: {flops / 1e9:.2f} GFLOP per image ({len(models)} model(s){tta_note})"
    figures = [measured, network]
    if acc.kernel_device == "cuda":
        times = []
        for gpu_flops, slow in ((GPU_FLOPS[1], 1.0), (GPU_FLOPS[0], SLOW_CPU)):
            rate = min(DECODE_RATE / slow, crop_rate / slow, gpu_flops / flops)
            times.append((STARTUP_S + images / rate) / 60)
        figures.append(f"assumed (no GPU measured): {GPU_FLOPS[0] / 1e12:.2f}–{GPU_FLOPS[1] / 1e12:.1f} "
                       "effective TFLOP/s in float16 on one T4; Kaggle's vCPUs up to "
                       f"{SLOW_CPU:.0f}x slower than this VM's; the slowest stage sets the pace")
        device = "GPU, one T4"
    else:
        times = []
        for speedup, slow in ((CPU_SPEEDUP[1], 1.0), (CPU_SPEEDUP[0], SLOW_CPU)):
            per_image = slow / DECODE_RATE + slow / crop_rate + flops / (CPU_FLOPS_HERE * speedup)
            times.append((STARTUP_S + images * per_image) / 60)
        figures.append(f"assumed: the network on {cores} unloaded Kaggle cores {CPU_SPEEDUP[0]:.0f}–"
                       f"{CPU_SPEEDUP[1]:.0f}x the {CPU_FLOPS_HERE / 1e9:.1f} GFLOP/s measured here; the stages "
                       "share the cores")
        device = "CPU" if acc.name == "cpu" else "CPU: no kernels for the P100 in Kaggle's torch"
    return RuntimeEstimate(accelerator=acc.name, device=device, minutes=(min(times), max(times)),
                           assumptions=figures)
