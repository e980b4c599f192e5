"""Bengali.AI offline inference kernel (internet OFF): install the kit from the attached dataset's wheels,
predict the competition's test images, write submission.csv.

Glue only: the logic lives in ``bengali_kit.infer``. The paths default to Kaggle's and can be overridden
so the same file runs anywhere::

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

DATASET_SLUG = "bengali-kit-model"  # filled in by bengali_kit.package when the package is built
COMPETITION = "bengaliai-cv19"
MANIFEST = "bengali_kit_package.json"


def parse_args(argv=None):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-root", default=env("BENGALI_KIT_INPUT_ROOT", "/kaggle/input"))
    p.add_argument("--output-dir", default=env("BENGALI_KIT_OUTPUT_DIR", "/kaggle/working"))
    p.add_argument("--slug", default=env("BENGALI_KIT_SLUG", DATASET_SLUG), help="the package dataset's folder")
    p.add_argument("--competition", default=env("BENGALI_KIT_COMPETITION", COMPETITION))
    p.add_argument("--batch-size", type=int, default=int(env("BENGALI_KIT_BATCH_SIZE", "0")) or None)
    p.add_argument("--tta", dest="tta", action="store_true", default=None)
    p.add_argument("--no-tta", dest="tta", action="store_false")
    # Kaggle's notebook runner may pass extra arguments (e.g. -f for Jupyter): ignore them.
    args, _ = p.parse_known_args(argv)
    if args.tta is None and env("BENGALI_KIT_TTA") is not None:
        args.tta = env("BENGALI_KIT_TTA") not in ("", "0", "false", "False")
    return args


def find_folder(root, name, marker):
    """``root/name`` if it holds ``marker``, else the first folder under ``root`` (3 levels) that does.

    Kaggle has mounted datasets at different depths over the years; searching keeps the kernel working.
    """
    direct = root / name
    if (direct / marker).exists():
        return direct
    for depth in ("*", "*/*", "*/*/*"):
        for hit in sorted(root.glob(f"{depth}/{marker}")):
            return hit.parent
    raise SystemExit(f"kernel: no folder with {marker} under {root} (is the dataset '{name}' attached?)")


def locate(package_dir, rel):
    """``package_dir/rel``, or the file of that name anywhere below (Kaggle may nest unzipped folders)."""
    path = package_dir / rel
    if path.exists():
        return path
    for hit in sorted(package_dir.rglob(Path(rel).name)):
        return hit
    raise SystemExit(f"kernel: {rel} not found in {package_dir}")


def ensure_installed(package_dir, manifest):
    """pip install the kit and efficientnet-pytorch from the package's wheels, offline, when not importable."""
    wheel_dirs = sorted({str(locate(package_dir, w).parent) for w in manifest.get("wheels", [])}) or \
        [str(package_dir / "wheels")]
    wanted = {"bengali_kit": "bengali_kit", "efficientnet_pytorch": "efficientnet_pytorch"}
    missing = []
    for module, dist in wanted.items():
        try:
            mod = importlib.import_module(module)
            if module == "bengali_kit" and getattr(mod, "__version__", None) != manifest.get("kit_version"):
                missing.append(dist)  # another version than the weights were made with
        except ImportError:
            missing.append(dist)
    if missing:
        # --no-deps: torch, numpy, pandas, pyarrow, cv2 come with Kaggle's image; pip must not try to
        # resolve (and fail offline on) the exact distribution names the kit declares.
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed",
               "--disable-pip-version-check", "-q"]
        for d in wheel_dirs:
            cmd += ["--find-links", d]
        print("kernel:", " ".join(cmd + missing), flush=True)
        subprocess.run(cmd + missing, check=True)
        importlib.invalidate_caches()
        for module in wanted:
            sys.modules.pop(module, None)
    for module in ("torch", "numpy", "pandas", "pyarrow", "cv2", "efficientnet_pytorch"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise SystemExit(f"kernel: cannot import {module} ({err}); add its wheel to the package") from err


def main(argv=None):
    args = parse_args(argv)
    input_root = Path(args.input_root)
    package_dir = find_folder(input_root, args.slug, MANIFEST)
    data_dir = find_folder(input_root, args.competition, "test.csv")
    manifest = json.loads((package_dir / MANIFEST).read_text(encoding="utf-8"))
    ensure_installed(package_dir, manifest)

    import bengali_kit
    import efficientnet_pytorch
    from bengali_kit import infer

    for mod in (bengali_kit, efficientnet_pytorch):
        print(f"{mod.__name__} {getattr(mod, '__version__', '?')} from {Path(mod.__file__).resolve().parent}",
              flush=True)
    checkpoints = [locate(package_dir, c["file"]) for c in manifest["checkpoints"]]
    out = Path(args.output_dir) / "submission.csv"
    result, sub = infer.predict_to_submission(
        data_dir, checkpoints, out,
        batch_size=args.batch_size or int(manifest.get("batch_size", 256)),
        tta=bool(manifest.get("tta", False)) if args.tta is None else args.tta,
        device="auto", overwrite=True,
        progress=os.environ.get("BENGALI_KIT_PROGRESS", "1") not in ("0", ""))
    print(result.summary(), flush=True)
    print(f"kernel: wrote {out} ({len(sub)} rows)", flush=True)
    print(sub.head(9).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
