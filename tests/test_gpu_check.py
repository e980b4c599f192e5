"""benchmarks/gpu_check.py: its dry run covers every step, so the script cannot rot before a GPU comes."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load():
    """The script as a module (it imports only the standard library at the top: quick)."""
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


def _numbers(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.mark.slow
def test_dry_run_records_every_step_with_numbers(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(work)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    steps = results["steps"]
    gc = _load()
    assert list(steps) == ["imports", *gc.STEPS]
    for name, rec in steps.items():
        assert rec["status"] == "ok", (name, rec.get("reason"))
        assert rec["seconds"] >= 0 and rec["budget_s"] > 0, name
    assert results["meta"]["dry_run"] is True and results["meta"]["total_s"] > 0
    assert steps["device"]["resolved"] == "cpu"
    for name in ("train_b0", "train_b3"):
        assert steps[name]["img_s"] > 0 and steps[name]["channels_last"] is True
    predict = steps["predict"]
    for key in ("b0", "b0_tta", "b3", "b3_tta"):
        assert predict[f"{key}_img_s"] > 0 and predict[f"{key}_network_img_s"] > 0, key
    kernel = steps["kernel"]
    assert kernel["rows"] == gc.DRY_SIZES.kernel_rows and kernel["kernel_s"] > 0 and kernel["predict_img_s"] > 0
    assert len(kernel["estimate_t4_s"]) == 2 and all(r > 0 for r in kernel["measured_over_estimate"])
    resume = steps["ema_resume"]
    assert resume["resume_bit_exact"] is True  # promised on the CPU
    assert resume["best_is_ema"] is True and resume["ema_updates"] == resume["steps"] == 2
    finetune = steps["finetune"]
    assert finetune["init"] == "synth-b0-96.pt" and finetune["steps"] > 0
    assert 0 <= finetune["val_weighted"] <= 1
    assert all(_numbers(rec) for rec in steps.values())
    log = (out / "gpu_check.log").read_text()
    assert "[finetune] ok" in log and "budget" in log
    assert (work / "kaggle" / "site" / "bengali_kit").is_dir()  # the kernel installed the kit from the wheels


def test_a_failing_or_overlong_step_is_recorded_in_one_line_and_the_check_goes_on(tmp_path, monkeypatch):
    gc = _load()
    monkeypatch.setattr(gc, "BUDGETS", {"device": 0.2, "train_b0": 10.0})
    results = {"meta": {"budget_s": 60.0}, "steps": {}}
    ctx = {"dry_run": False}
    deadline = time.monotonic() + 60

    def broken() -> dict:
        raise ValueError("first line\nsecond line")

    gc.run_step(results, "device", lambda: time.sleep(5) or {}, deadline, tmp_path, ctx)
    gc.run_step(results, "train_b0", broken, deadline, tmp_path, ctx)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert saved["device"]["status"] == "failed" and "ran past its 0.4-s limit" in saved["device"]["reason"]
    assert saved["device"]["seconds"] < 3
    assert saved["train_b0"] == {"status": "failed", "budget_s": 10.0, "seconds": saved["train_b0"]["seconds"],
                                 "reason": "ValueError: first line"}
    gc.run_step(results, "train_b0", lambda: {"img_s": 1.5}, time.monotonic() + 1, tmp_path, ctx)
    assert results["steps"]["train_b0"]["status"] == "skipped"  # under 5 s of the total left


def test_missing_modules_are_named_in_one_line(tmp_path, monkeypatch):
    gc = _load()
    monkeypatch.setattr(gc, "NEEDED", (("json", None), ("no_such_module_bk", None),
                                       ("no_such_wheel_bk", "no-such-wheel-bk")))
    with pytest.raises(RuntimeError) as err:
        gc.check_imports(None, tmp_path / "site")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("missing module(s): no_such_module_bk, no_such_wheel_bk (--prepare DIR here")
    assert msg.endswith("brings no_such_wheel_bk)")
    with pytest.raises(RuntimeError, match="no such folder"):
        gc.check_imports(tmp_path / "absent", tmp_path / "site")
