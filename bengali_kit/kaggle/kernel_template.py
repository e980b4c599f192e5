"""Bengali.AI offline inference kernel (internet off): install the kit from the attached package's wheels,
predict the competition's test images, write submission.csv.

Glue only: the logic lives in bengali_kit, and so does every inference setting the checkpoints carry (the
class-prior correction ``prior_power``): ``predict_to_submission`` applies them as ``bengali-kit predict``
does. ``bengali-kit package`` writes this file as ``kernel/kernel.py`` with the package's slug filled in
and bengali_kit/kaggle/search.py inlined (the kernel runs before the kit is installed). The paths default
to Kaggle's and can be overridden::

    python kernel.py [--input-root DIR] [--output-dir DIR] [--slug SLUG] [--batch-size N] [--tta|--no-tta]

or with the environment variables BENGALI_KIT_INPUT_ROOT, BENGALI_KIT_OUTPUT_DIR, BENGALI_KIT_SLUG,
BENGALI_KIT_COMPETITION, BENGALI_KIT_BATCH_SIZE, BENGALI_KIT_TTA (1/0), BENGALI_KIT_PROGRESS (1/0).
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

# >>> search: bengali_kit/kaggle/search.py, inlined here when the package is built
from bengali_kit.kaggle.search import COMPETITION, MANIFEST, InputSearchError, find_competition, find_package, locate

# <<< search

DATASET_SLUG = "bengali-kit-model"  # filled in when the package is built
#: Modules the wheels provide (the rest, torch, numpy, pandas, pyarrow and cv2, come with Kaggle's image).
FROM_WHEELS = ("bengali_kit", "efficientnet_pytorch")


def parse_args(argv=None):
    """The kernel's options; Kaggle's runner may add its own (e.g. -f for Jupyter), which are ignored."""
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-root", default=env("BENGALI_KIT_INPUT_ROOT", "/kaggle/input"))
    p.add_argument("--output-dir", default=env("BENGALI_KIT_OUTPUT_DIR", "/kaggle/working"))
    p.add_argument("--slug", default=env("BENGALI_KIT_SLUG", DATASET_SLUG), help="the package dataset's folder")
    p.add_argument("--competition", default=env("BENGALI_KIT_COMPETITION", COMPETITION))
    p.add_argument("--batch-size", type=int, default=int(env("BENGALI_KIT_BATCH_SIZE", "0")) or None)
    p.add_argument("--tta", dest="tta", action="store_true", default=None)
    p.add_argument("--no-tta", dest="tta", action="store_false")
    args, _ = p.parse_known_args(argv)
    if args.tta is None and env("BENGALI_KIT_TTA") is not None:
        args.tta = env("BENGALI_KIT_TTA") not in ("", "0", "false", "False")
    return args


def _missing(manifest):
    missing = []
    for module in FROM_WHEELS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            continue
        if module == "bengali_kit" and getattr(mod, "__version__", None) != manifest.get("kit_version"):
            missing.append(module)  # another version than the one the package was made with
    return missing


def ensure_installed(package_dir, manifest):
    """pip install the kit and efficientnet-pytorch from the package's wheels, offline, when not importable."""
    wheel_dirs = sorted({str(locate(package_dir, w).parent) for w in manifest.get("wheels", [])}) or \
        [str(package_dir / "wheels")]
    missing = _missing(manifest)
    if missing:
        # --no-deps: pip must not try to resolve (and fail offline on) the distributions the kit declares.
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed",
               "--disable-pip-version-check", "-q"]
        for d in wheel_dirs:
            cmd += ["--find-links", d]
        print("kernel:", " ".join(cmd + missing), flush=True)
        proc = subprocess.run(cmd + missing, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            # pip's reason is its last error line (stderr); its stdout only says where it looked
            lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no output"]
            raise SystemExit(f"kernel: pip could not install {' '.join(missing)} from the wheel folder "
                             f"{', '.join(wheel_dirs)} (exit {proc.returncode}: {errors[-1]})")
        importlib.invalidate_caches()
        for module in FROM_WHEELS:
            sys.modules.pop(module, None)
    for module in ("torch", "numpy", "pandas", "pyarrow", "cv2", *FROM_WHEELS):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise SystemExit(f"kernel: cannot import {module} ({err}); add its wheel to the package") from None


def main(argv=None):
    """Find the inputs, install the kit, predict, write submission.csv."""
    args = parse_args(argv)
    try:
        package_dir = find_package(args.input_root, args.slug)
        data_dir = find_competition(args.input_root, args.competition)
        manifest = json.loads((package_dir / MANIFEST).read_text(encoding="utf-8"))
        checkpoints = [locate(package_dir, c["file"]) for c in manifest["checkpoints"]]
    except InputSearchError as err:
        raise SystemExit(f"kernel: {err}") from None
    print(f"kernel: package {package_dir}, competition data {data_dir}", flush=True)
    ensure_installed(package_dir, manifest)

    import efficientnet_pytorch

    import bengali_kit
    from bengali_kit.device import resolve_device
    from bengali_kit.submission import predict_to_submission

    for mod in (bengali_kit, efficientnet_pytorch):
        print(f"{mod.__name__} {getattr(mod, '__version__', '?')} from {Path(mod.__file__).resolve().parent}",
              flush=True)
    device = resolve_device("auto")  # a GPU this torch cannot run on (P100) -> CPU, with one warning line
    print(f"kernel: device {device}", flush=True)
    out = Path(args.output_dir) / "submission.csv"
    result, sub = predict_to_submission(
        data_dir, checkpoints, out,
        batch_size=args.batch_size or int(manifest.get("batch_size", 256)),
        tta=bool(manifest.get("tta", False)) if args.tta is None else args.tta,
        device=str(device), overwrite=True,
        progress=os.environ.get("BENGALI_KIT_PROGRESS", "1") not in ("0", ""))
    print(result.summary(), flush=True)
    print(f"kernel: wrote {out} ({len(sub)} rows)", flush=True)
    print(sub.head(9).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
