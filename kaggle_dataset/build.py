"""Build the Kaggle dataset folder: ``python kaggle_dataset/build.py --checkpoint CKPT --out DIR --user USER
--slug SLUG [--verify]``. A thin wrapper of ``bengali-kit package`` (bengali_kit.package.build_package);
the options are the same.
"""
import sys
from pathlib import Path

# Run from a checkout without installing: the kit's source is the folder above this one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bengali_kit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["package", *sys.argv[1:]]))
