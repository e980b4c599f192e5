"""``bengali-kit export``: the validated weights of a run, float16, loadable everywhere a checkpoint is."""
import torch

from bengali_kit.cli import main
from bengali_kit.model import load_checkpoint, load_model, save_checkpoint


def test_export_keeps_the_ema_weights_as_float16_and_loads_back(tiny_checkpoint, tmp_path, capsys):
    model, ck = load_model(tiny_checkpoint)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    last = tmp_path / "last.pt"
    save_checkpoint(last, model, image_size=ck["image_size"], preprocess=ck["preprocess"], metric=0.5,
                    optimizer={"state": {}}, ema={"decay": 0.99, "updates": 3, "model": ema}, seconds=12.5)
    out = tmp_path / "w.pt"
    assert main(["export", str(last), str(out)]) == 0
    assert "sha256" in capsys.readouterr().out
    exported = load_checkpoint(out)
    assert "optimizer" not in exported and "ema" not in exported and exported["seconds"] == 12.5
    assert exported["exported_from"] == {"file": "last.pt", "weights": "ema"}
    key = "heads.0.weight"
    assert exported["model"][key].dtype == torch.float16
    assert torch.allclose(exported["model"][key].float(), ema[key], atol=1e-2)
    back, _ = load_model(out)  # float16 on disk, float32 in memory
    assert back.state_dict()[key].dtype == torch.float32
    assert out.stat().st_size < 0.6 * last.stat().st_size
    # never overwrites without being asked
    assert main(["export", str(last), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tiny_checkpoint), str(out), "--overwrite", "--float32"]) == 0
    assert load_checkpoint(out)["exported_from"]["weights"] == "raw"
