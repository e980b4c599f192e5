"""The Kaggle package: slim checkpoints, wheels, metadata, junk refusal, and the offline kernel run."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from bengali_kit import package
from bengali_kit.cli import main
from bengali_kit.errors import DataError
from bengali_kit.model import ModelConfig, build_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A b0 checkpoint at 32 px as training writes it, optimizer state included."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(neck_dim=32))
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, model, image_size=32, preprocess={}, metric=0.5, epoch=3,
                    train_config={"seed": 0, "val_fraction": 0.2}, scores={"weighted": 0.5},
                    optimizer={"state": {"exp_avg": torch.ones(50_000)}}, rng={"torch": torch.zeros(8)})
    return path


@pytest.fixture(scope="module")
def built(tiny_checkpoint, tmp_path_factory) -> package.PackageInfo:
    """A package of the conftest's image-dependent checkpoint, saved with training state as last.pt has."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt.update(optimizer={"state": {"exp_avg": torch.ones(50_000)}}, step=7, history=[{"epoch": 1}])
    src = tmp_path_factory.mktemp("src") / "best.pt"
    torch.save(ckpt, src)
    out = tmp_path_factory.mktemp("pkg") / "bengali-tiny"
    return package.build_package([src], out, user="someone", slug="bengali-tiny-model")


@pytest.mark.parametrize("slug", ["abc", "Bengali-model", "-bengali-model", "bengali-model-", "bengali--model",
                                  "bengali_model", "bengali model", "x" * 41])
def test_bad_slugs_are_refused(slug):
    with pytest.raises(ValueError):
        package.validate_slug(slug)


@pytest.mark.parametrize("user", ["", "Some User", "someone/else", "-someone", "a" * 51])
def test_bad_users_are_refused(user):
    with pytest.raises(ValueError):
        package.validate_user(user)


def test_good_names_pass():
    assert package.validate_slug("bengali-effnet-b0") == "bengali-effnet-b0"
    assert package.validate_user("some-one_2") == "some-one_2"


def test_package_layout_and_metadata(built, tiny_ckpt):
    out = built.out_dir
    names = {p for p, _ in built.files}
    assert {"dataset-metadata.json", package.MANIFEST_NAME, "checkpoints/best.pt", "kernel/kernel.py",
            "kernel/kernel-metadata.json"} <= names
    assert sorted(n for n in names if n.startswith("wheels/")) == [
        "wheels/bengali_kit-0.1.0-py3-none-any.whl", "wheels/efficientnet_pytorch-0.7.1-py3-none-any.whl"]
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta["id"] == "someone/bengali-tiny-model"
    assert meta["licenses"] == [{"name": "CC0-1.0"}]
    assert 6 <= len(meta["title"]) <= 50
    kmeta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kmeta["id"] == "someone/bengali-tiny-model-inference"
    assert kmeta["code_file"] == "kernel.py" and (out / "kernel" / kmeta["code_file"]).is_file()
    assert kmeta["language"] == "python" and kmeta["kernel_type"] == "script"
    assert kmeta["enable_internet"] is False and kmeta["enable_gpu"] is True
    assert kmeta["competition_sources"] == ["bengaliai-cv19"]
    assert kmeta["dataset_sources"] == ["someone/bengali-tiny-model"]
    # Kaggle derives the kernel slug from its title: they must agree.
    assert kmeta["title"].replace(" ", "-") == kmeta["id"].split("/")[1]
    assert 'DATASET_SLUG = "bengali-tiny-model"' in (out / "kernel" / "kernel.py").read_text()
    assert built.total_bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    listing = built.listing()
    assert "checkpoints/best.pt" in listing and "total (" in listing
    cmds = "\n".join(built.upload_commands())
    assert f"kaggle datasets create -p {out} -r zip" in cmds and f"kaggle kernels push -p {out}/kernel" in cmds


def test_packaged_checkpoint_is_state_dict_only(tiny_ckpt, tmp_path):
    info = package.build_package([tiny_ckpt], tmp_path / "p", user="someone", slug="bengali-tiny-model",
                                 deps="installed")
    slim = torch.load(info.out_dir / "checkpoints" / "best.pt", weights_only=True)
    assert set(slim) == {"model", "model_config", "image_size", "preprocess", "metric"}
    full = torch.load(tiny_ckpt, weights_only=True)
    assert all(torch.equal(slim["model"][k], full["model"][k]) for k in full["model"])
    assert (info.out_dir / "checkpoints" / "best.pt").stat().st_size < tiny_ckpt.stat().st_size - 150_000


def test_wheels_hold_the_code(built):
    with zipfile.ZipFile(built.out_dir / "wheels" / "bengali_kit-0.1.0-py3-none-any.whl") as zf:
        names = zf.namelist()
    assert "bengali_kit/infer.py" in names and "bengali_kit/resources/class_map.csv" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    with zipfile.ZipFile(built.out_dir / "wheels" / "efficientnet_pytorch-0.7.1-py3-none-any.whl") as zf:
        names = zf.namelist()
        record = zf.read("efficientnet_pytorch-0.7.1.dist-info/RECORD").decode()
    assert "efficientnet_pytorch/model.py" in names and "efficientnet_pytorch/model.py,sha256=" in record


def test_junk_is_found(tmp_path):
    for rel in ["kaggle.json", ".env.local", ".git/config", "a/__pycache__/x.cpython-311.pyc", "b/c.pyc",
                ".ipynb_checkpoints/n.ipynb", "ok/model.pt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    with zipfile.ZipFile(tmp_path / "ok" / "w-1-py3-none-any.whl", "w") as zf:
        zf.writestr("pkg/.env", "SECRET=1")
        zf.writestr("pkg/mod.py", "")
    junk = package.find_junk(tmp_path)
    for rel in ["kaggle.json", ".env.local", ".git", "a/__pycache__", "b/c.pyc", ".ipynb_checkpoints",
                "ok/w-1-py3-none-any.whl!pkg/.env"]:
        assert rel in junk
    assert not [j for j in junk if j.startswith("ok/model.pt") or j.endswith("mod.py")]


def test_refuses_to_package_credentials(tiny_ckpt, tmp_path):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        package.build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model")
    (out / "kaggle.json").write_text('{"username": "x", "key": "y"}')
    with pytest.raises(DataError, match="kaggle.json"):
        package.build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["kaggle.json", "notes.txt"]  # nothing written


def test_rebuild_with_overwrite_drops_stale_checkpoints(tiny_ckpt, built, tmp_path):
    import shutil

    out = tmp_path / "pkg"
    shutil.copytree(built.out_dir, out)
    (out / "checkpoints" / "old_model.pt").write_bytes(b"stale")
    wheels = out / "wheels"
    info = package.build_package([tiny_ckpt, tiny_ckpt], out, user="someone", slug="bengali-tiny-model",
                                 wheel_dir=built.out_dir / "wheels", overwrite=True)
    names = {p for p, _ in info.files}
    assert "checkpoints/old_model.pt" not in names
    assert {"checkpoints/0_best.pt", "checkpoints/1_best.pt"} <= names
    assert len([n for n in names if n.startswith("wheels/")]) == 2 and wheels.is_dir()
    manifest = json.loads((out / package.MANIFEST_NAME).read_text())
    assert [c["file"] for c in manifest["checkpoints"]] == ["checkpoints/0_best.pt", "checkpoints/1_best.pt"]


def test_bad_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        package.build_package([bad], tmp_path / "out", user="someone", slug="bengali-tiny-model")
    no_size = tmp_path / "nosize.pt"
    save_checkpoint(no_size, build_model(ModelConfig(neck_dim=8)))
    with pytest.raises(DataError, match="image_size"):
        package.build_package([no_size], tmp_path / "out2", user="someone", slug="bengali-tiny-model")


def test_cli_package_prints_listing_and_commands(tiny_ckpt, built, tmp_path, capsys):
    out = tmp_path / "cli-pkg"
    code = main(["package", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--user", "someone",
                 "--slug", "bengali-tiny-model", "--wheel-dir", str(built.out_dir / "wheels")])
    text = capsys.readouterr().out
    assert code == 0
    assert "checkpoints/best.pt" in text and "total (7 files)" in text
    assert "kaggle datasets create" in text and "kaggle kernels push" in text
    code = main(["package", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--user", "someone",
                 "--slug", "Bad Slug"])
    assert code == 2


@pytest.mark.slow
def test_offline_kernel_run_in_fresh_venv(built, tmp_path):
    """The whole path Kaggle takes, offline: wheels-only install in a fresh venv, kernel, submission."""
    report = package.verify_package(built.out_dir, work_dir=tmp_path / "verify", timeout=240)
    assert report.ok, report.summary() + "\n" + report.kernel_log[-3000:]
    assert report.rows == 24 * 3
    assert Path(report.kit_location).resolve().is_relative_to((tmp_path / "verify" / "venv").resolve())
    assert report.matches_library is True
    assert set(report.answer_key_accuracy) == {"consonant_diacritic", "grapheme_root", "vowel_diacritic"}
    log = report.kernel_log
    assert "pip install --no-index --no-deps" in log and "bengali_kit efficientnet_pytorch" in log
    assert "efficientnet_pytorch 0.7.1 from " + str((tmp_path / "verify" / "venv").resolve()) in log
    assert report.seconds < 90


def _kernel_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "kaggle_dataset" / "kernel.py"
    spec = importlib.util.spec_from_file_location("bk_kernel_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kernel_finds_nested_folders_and_takes_overrides(tmp_path, monkeypatch):
    kernel = _kernel_module()
    root = tmp_path / "input"
    # Kaggle has mounted datasets one or two levels deeper over the years, and may nest unzipped folders.
    pkg = root / "datasets" / "someone" / "my-slug"
    (pkg / "wheels" / "wheels").mkdir(parents=True)
    (pkg / package.MANIFEST_NAME).write_text("{}")
    (pkg / "wheels" / "wheels" / "bengali_kit-0.1.0-py3-none-any.whl").write_text("")
    (root / "bengaliai-cv19").mkdir()
    (root / "bengaliai-cv19" / "test.csv").write_text("row_id,image_id,component\n")
    assert kernel.find_folder(root, "my-slug", package.MANIFEST_NAME) == pkg
    assert kernel.find_folder(root, "bengaliai-cv19", "test.csv") == root / "bengaliai-cv19"
    assert kernel.locate(pkg, "wheels/bengali_kit-0.1.0-py3-none-any.whl").parent == pkg / "wheels" / "wheels"
    with pytest.raises(SystemExit, match="no folder"):
        kernel.find_folder(tmp_path / "empty", "x", package.MANIFEST_NAME)

    monkeypatch.setenv("BENGALI_KIT_INPUT_ROOT", str(root))
    monkeypatch.setenv("BENGALI_KIT_TTA", "1")
    args = kernel.parse_args(["--output-dir", str(tmp_path / "out"), "-f", "ignored.json"])
    assert args.input_root == str(root) and args.output_dir == str(tmp_path / "out") and args.tta is True
    assert args.slug == kernel.DATASET_SLUG and args.competition == "bengaliai-cv19"
    monkeypatch.delenv("BENGALI_KIT_INPUT_ROOT")
    monkeypatch.delenv("BENGALI_KIT_TTA")
    args = kernel.parse_args([])
    assert (args.input_root, args.output_dir, args.tta) == ("/kaggle/input", "/kaggle/working", None)
