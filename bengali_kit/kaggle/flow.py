"""The commands that take a package folder to a scored submission (printed by ``package``, never run here).

``bengaliai-cv19`` is a code competition: pushing the kernel runs it on the public test images only; the
submission is a separate step that names the kernel and its version, and Kaggle then reruns that version
on the hidden test set. The syntax is the kaggle CLI's (docs/datasets.md, docs/kernels.md and
docs/competitions.md of Kaggle/kaggle-cli).
"""
from __future__ import annotations

import shlex
from pathlib import Path

from .search import COMPETITION

RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"


def submission_steps(package_dir: str | Path, dataset_id: str, kernel_id: str) -> list[tuple[str, list[str]]]:
    """The whole flow as (what, commands) steps, in order."""
    pkg = shlex.quote(str(package_dir))
    kdir = shlex.quote(str(Path(package_dir) / "kernel"))
    return [
        ("accept the competition's rules once (the API refuses a submission otherwise)", [RULES_URL]),
        ("upload the package as a private dataset (needs ~/.kaggle/kaggle.json)",
         [f"kaggle datasets create -p {pkg} -r zip"]),
        ("wait until the dataset is ready: a kernel pushed earlier runs without it",
         [f"kaggle datasets status {dataset_id}"]),
        ("push the kernel; it runs on the public test images (note the version number it prints)",
         [f"kaggle kernels push -p {kdir}", f"kaggle kernels status {kernel_id}"]),
        ("when the status is complete, submit that version (Kaggle reruns it on the hidden test set)",
         [f"kaggle competitions submit {COMPETITION} -k {kernel_id} -f submission.csv -v VERSION -m \"MESSAGE\""]),
        (("new weights later: rebuild with --overwrite, upload a new version, wait, push the kernel again "
          "(a kernel keeps the dataset version it ran with until it is pushed again), submit its new version"),
         [f"kaggle datasets version -p {pkg} -r zip -m \"new weights\"", f"kaggle datasets status {dataset_id}",
          f"kaggle kernels push -p {kdir}"]),
    ]


def submission_text(package_dir: str | Path, dataset_id: str, kernel_id: str) -> str:
    """The flow as the numbered text ``package`` prints."""
    lines = ["submit (not run here):"]
    for i, (what, commands) in enumerate(submission_steps(package_dir, dataset_id, kernel_id), 1):
        lines.append(f"  {i}. {what}")
        lines += [f"       {c}" for c in commands]
    return "\n".join(lines)
