"""benchmarks/bench_model.py --quick: every lever runs, gives a finite rate and agrees with float32 eager."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_model.py"

#: Every variant the quick run must time (kind, name); threads/inter-op rows depend on the core count.
INFER = ("default", "batch x2", "batch x4", "bn-fold", "pad-fold", "bn-fold + pad-fold",
         "bn-fold + pad-fold + batch x4",
         "bf16", "bf16 + bn-fold", "compile", "compile + bn-fold", "compile + bn-fold + batch x4",
         "compile + bn-fold + pad-fold + batch x4", "compile + bn-fold + bf16")
TRAIN = ("default", "batch x2", "pad-fold", "pad-fold + batch x2", "bf16 (fp32 master)", "compile", "compile + bf16",
         "compile + batch x2", "loader workers 0", "loader workers 1")
EXPECTED = {("infer", n) for n in INFER} | {("train", n) for n in TRAIN}
EXPECTED |= {("data", "data path, workers 0"), ("data", "data path, workers 1")}


@pytest.mark.slow
def test_quick_levers_run_and_agree_with_float32(tmp_path):
    out = tmp_path / "levers.json"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)], capture_output=True,
                         text=True, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert EXPECTED <= {(r["kind"], r["name"]) for r in rows}
    for r in rows:
        assert math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0, r
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
    for kind in ("infer", "train"):
        assert any(r["kind"] == kind and r["name"].startswith("inter-op") for r in rows)
    checks = report["checks"]
    assert checks["bn-fold"]["max_prob_diff"] <= 1e-4
    assert checks["pad-fold"]["max_prob_diff"] <= 1e-4
    assert checks["bf16"]["label_agreement"] >= 0.95 and checks["bf16"]["max_prob_diff"] <= 0.05
    assert checks["compile"]["max_prob_diff"] <= 1e-4
    assert checks["batch x4"]["max_prob_diff"] <= 1e-4
    assert checks["compile train"]["loss_diff"] <= 1e-4
    assert all(c["ok"] for c in checks.values())
    assert "| infer | default |" in run.stdout  # the table is printed
