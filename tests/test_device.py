"""Device resolution: "auto" takes a GPU only when this torch build can run on it (mocked GPUs), bad names refused."""
from __future__ import annotations

import pytest
import torch

from bengali_kit import device
from bengali_kit.device import arch_supported, resolve_device

#: Kaggle's torch build: kernels from Volta on, none for the P100's sm_60.
KAGGLE_ARCHS = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "compute_90"]


@pytest.fixture
def fake_gpu(monkeypatch):
    """A visible GPU of a chosen capability; records set_device calls and whether a kernel was launched."""
    state = {"capability": (7, 5), "archs": KAGGLE_ARCHS, "name": "Tesla T4", "set": [], "smoke": [],
             "smoke_error": None, "count": 2}

    def smoke(index):
        state["smoke"].append(index)
        if state["smoke_error"]:
            raise RuntimeError(state["smoke_error"])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["count"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: state["capability"])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(state["archs"]))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: state["name"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: state["set"].append(str(dev)))
    monkeypatch.setattr(device, "_smoke_test", smoke)
    return state


@pytest.mark.parametrize("capability, archs, ok", [
    ((7, 5), KAGGLE_ARCHS, True),  # T4
    ((6, 0), KAGGLE_ARCHS, False),  # P100 on Kaggle's current build
    ((6, 0), ["sm_60", "sm_70"], True),
    ((8, 9), ["sm_80", "sm_86"], True),  # sm_86 cubins run on an sm_89 card (same major, higher minor)
    ((8, 6), ["sm_89"], False),  # ... but not the reverse
    ((10, 0), ["sm_80", "sm_90"], False),  # a newer major needs PTX
    ((10, 0), ["sm_80", "compute_90"], True),  # PTX is compiled on the fly for newer GPUs
    ((7, 0), ["compute_75"], False),  # PTX does not run on older GPUs
])
def test_arch_supported(capability, archs, ok):
    assert arch_supported(capability, archs) is ok


def test_auto_on_a_gpu_without_kernels_falls_back_to_the_cpu_with_one_warning(fake_gpu, capsys):
    fake_gpu.update(capability=(6, 0), name="Tesla P100-PCIE-16GB")
    assert resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning:")
    assert "Tesla P100-PCIE-16GB (sm_60" in err and "sm_70" in err and "running on the CPU" in err
    assert fake_gpu["smoke"] == [] and fake_gpu["set"] == []  # no CUDA work on a GPU the build cannot run


def test_auto_on_a_supported_gpu_uses_it(fake_gpu, capsys):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device(None) == torch.device("cuda", 0)
    assert fake_gpu["smoke"] == [0, 0] and fake_gpu["set"] == ["cuda:0", "cuda:0"]
    assert capsys.readouterr().err == ""


def test_auto_falls_back_when_the_test_kernel_fails(fake_gpu, capsys):
    """The arch list can claim support and the first kernel still fail (a broken driver, say)."""
    fake_gpu["smoke_error"] = ("CUDA error: no kernel image is available for execution on the device\n"
                               "CUDA kernel errors might be asynchronously reported at some other API call")
    assert resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no kernel image is available" in err and "asynchronously" not in err


def test_explicit_cuda_is_checked_not_swapped_for_the_cpu(fake_gpu):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)  # DDP: the process's GPU
    assert fake_gpu["set"] == ["cuda:1", "cuda:1"]
    with pytest.raises(ValueError, match=r"--device 'cuda:2': there is no GPU cuda:2 \(2 GPU\(s\) visible\)"):
        resolve_device("cuda:2")
    fake_gpu["capability"] = (6, 0)
    with pytest.raises(ValueError, match=r"--device 'cuda'.*no kernels for the Tesla T4 \(sm_60.*--device cpu"):
        resolve_device("cuda")


def test_no_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert capsys.readouterr().err == ""  # no GPU at all is not worth a warning
    with pytest.raises(ValueError, match="--device 'cuda': CUDA is not available here"):
        resolve_device("cuda")


@pytest.mark.parametrize("name, problem", [
    ("tpu", "not a device torch knows"),
    ("CUDA", "not a device torch knows"),
    ("cuda:x", "not a device torch knows"),
    ("", "not a device torch knows"),
    ("meta", "not on 'meta' devices"),
    ("xla", "not on 'xla' devices"),
])
def test_unknown_devices_are_refused_naming_the_option(name, problem):
    with pytest.raises(ValueError) as info:
        resolve_device(name, option="--eval-device")
    msg = str(info.value)
    assert msg.startswith(f"--eval-device {name!r}: ") and problem in msg and "\n" not in msg
