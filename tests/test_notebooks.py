"""The notebooks: each jupytext pair is in sync, committed .ipynb files carry no outputs, and all three
execute headless (``jupyter nbconvert --execute``) on a synthetic folder with their tiny defaults.

The executed copies are written to ``artifacts/notebooks/`` (git-ignored; CI keeps it as an artifact) so
their plots can be looked at.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts" / "notebooks"
NOTEBOOKS = ("01_eda", "02_train", "03_inference")
# Plots each executed notebook must show at least (image outputs): a missing figure is a failure. 03: the test
# predictions, the held-out slice, its mistakes and the rendered graphemes (the fonts are installed here).
MIN_IMAGES = {"01_eda": 8, "02_train": 5, "03_inference": 4}
# Per-cell limit: the defaults take under two minutes each on 2 shared cores (03 the longest: it scores all
# 1,292 crops of the held-out slice with the shipped 96-px model); this only catches a notebook whose defaults
# stopped being small.
TIMEOUT_S = 300
# A measured figure (a recall such as 0.877, a percentage) in prose goes stale when a model changes: the
# notebooks print what they measure instead.
MEASURED = re.compile(r"\b[01]\.\d{2,}\b|\d\s?%")


def _cells(nb) -> list[tuple[str, str, tuple]]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_jupytext_config_pairs_ipynb_with_percent_scripts():
    text = (ROOT / "jupytext.toml").read_text(encoding="utf-8")
    assert 'formats = "ipynb,py:percent"' in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_pair_in_sync(name):
    """The .py (what is edited and reviewed) converts to exactly the committed .ipynb's cells."""
    import jupytext

    py, ipynb = NB_DIR / f"{name}.py", NB_DIR / f"{name}.ipynb"
    assert py.is_file() and ipynb.is_file(), f"{name}: both {py.name} and {ipynb.name} must exist"
    from_py = jupytext.read(py)
    committed = nbformat.read(ipynb, as_version=4)
    assert _cells(from_py) == _cells(committed), (
        f"{ipynb.name} is out of sync with {py.name}: run `jupytext --sync notebooks/{name}.py`")
    first_code = next(c for c in committed.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), f"{name}: first code cell must be tagged parameters"
    assert "DATA_DIR" in first_code.source and "WORK_DIR" in first_code.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}.ipynb has outputs in cells {dirty}: strip them (jupytext --sync from the .py)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_markdown_cells_state_no_measured_figure(name):
    import jupytext

    prose = "\n".join(c.source for c in jupytext.read(NB_DIR / f"{name}.py").cells if c.cell_type == "markdown")
    found = MEASURED.findall(prose)
    assert not found, f"{name}: markdown states {found}: print the measured figure from a code cell instead"
    assert MEASURED.search("the recipe scores 0.877") and MEASURED.search("up 5 %")  # the pattern catches them


def test_bengali_labels_are_shaped_not_drawn_glyph_by_glyph():
    """The notebooks' Bengali labels go through Pillow's raqm: a conjunct is one glyph, narrower than its
    letters side by side (matplotlib's unshaped text would draw ক, the virama and ষ one after another)."""
    from PIL import features

    from bengali_kit.plots import bengali_font, text_image

    if bengali_font() is None or not features.check("raqm"):
        pytest.fail("no Bengali font or no raqm in Pillow: labels would be unshaped (scripts/setup.sh installs fonts)")
    assert text_image("") is None
    ka, ssa, kssa = (text_image(t, height=48) for t in ("ক", "ষ", "ক্ষ"))
    assert ka.dtype == np.uint8 and ka.max() == 255 and ka.shape[0] == kssa.shape[0]
    assert kssa.shape[1] < 0.8 * (ka.shape[1] + ssa.shape[1])
    mixed = text_image("ক → খ")  # Bengali and an arrow (DejaVu) on one line
    assert mixed.shape[1] > ka.shape[1] * 2


# ---------------------------------------------------------------- execution
def _kernel_env(work: Path) -> dict:
    env = dict(os.environ)
    # MPLBACKEND=Agg (set by scripts/test.sh) would stop the kernel from showing figures inline.
    env.pop("MPLBACKEND", None)
    # One thread per library: on 2 shared cores, torch's thread pool with contention is ~10x slower.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", BENGALI_KIT_NB_WORK=str(work),
               PYTHONUNBUFFERED="1", TQDM_MININTERVAL="5")
    env.pop("BENGALI_KIT_NB_DATA", None)
    env.pop("BENGALI_KIT_NB_CHECKPOINT", None)
    return env


def _check_kernelspec(env: dict) -> None:
    out = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    specs = json.loads(out)["kernelspecs"]
    if "python3" not in specs:
        pytest.fail(f"no python3 Jupyter kernel (have {sorted(specs)}): `python -m ipykernel install --user`")


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict:
    """Run the three notebooks in order with one shared work folder (03 uses 02's checkpoint)."""
    work = tmp_path_factory.mktemp("nb_work")
    env = _kernel_env(work)
    _check_kernelspec(env)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in NOTEBOOKS:
        out = ARTIFACTS / f"{name}.ipynb"
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             "--ExecutePreprocessor.kernel_name=python3", f"--ExecutePreprocessor.timeout={TIMEOUT_S}",
             "--output-dir", str(ARTIFACTS), str(NB_DIR / f"{name}.ipynb")],
            cwd=NB_DIR, env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 60)
        results[name] = {"rc": proc.returncode, "log": (proc.stdout + proc.stderr)[-4000:], "out": out,
                         "seconds": time.perf_counter() - t0}
    results["work"] = work
    (ARTIFACTS / "timings.json").write_text(json.dumps(
        {n: round(results[n]["seconds"], 1) for n in NOTEBOOKS}, indent=1) + "\n", encoding="utf-8")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_and_shows_plots(executed, name):
    res = executed[name]
    assert res["rc"] == 0, f"{name} failed to execute ({res['seconds']:.0f} s):\n{res['log']}"
    nb = nbformat.read(res["out"], as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{name}: not every cell ran"
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images >= MIN_IMAGES[name], f"{name}: {images} plots shown, expected at least {MIN_IMAGES[name]}"
    if name == "03_inference":  # the shipped model scored on the whole held-out slice, on a fresh clone too
        text = "".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
        assert "scored 1292 labelled images" in text, f"{name}: the held-out slice was not scored whole"


@pytest.mark.slow
def test_notebooks_leave_a_run_and_a_valid_submission(executed):
    """02 trains into WORK_DIR/run; 03 writes WORK_DIR/submission.csv in sample_submission's row order."""
    work = executed["work"]
    run = work / "run"
    for f in ("best.pt", "history.csv", "val_per_class.csv"):
        assert (run / f).is_file(), f"02_train did not write {f}"
    # its curves rise: the cpu-real preset fine-tuning from the synthetic start learns the real crops
    recall = pd.read_csv(run / "history.csv")["val_weighted"].dropna().tolist()
    assert len(recall) >= 2 and recall[-1] > recall[0] + 0.02, f"02_train's validation recall did not rise: {recall}"
    assert not (work / "run_03").exists(), "03_inference trained its own model instead of using 02's"
    data = next(work.glob("synth_*_s0"))
    sub = pd.read_csv(work / "submission.csv")
    sample = pd.read_csv(data / "sample_submission.csv")
    assert list(sub.columns) == ["row_id", "target"]
    assert sub["row_id"].tolist() == sample["row_id"].tolist()
    comp = sub["row_id"].str.rsplit("_", n=2).str[-2:].str.join("_")
    limits = {"grapheme_root": 168, "vowel_diacritic": 11, "consonant_diacritic": 7}
    assert all(0 <= t < limits[c] for c, t in zip(comp, sub["target"]))
