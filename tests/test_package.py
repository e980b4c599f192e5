"""The Kaggle package: slim checkpoints, wheels, metadata, junk refusal, the swap-in build, and the offline
kernel run."""
from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from bengali_kit import __version__
from bengali_kit.cli import main
from bengali_kit.errors import DataError
from bengali_kit.kaggle import MANIFEST, build_package, find_junk, kernel_source, verify_package
from bengali_kit.kaggle.names import validate_slug, validate_user
from bengali_kit.model import ModelConfig, build_model, load_model, save_checkpoint

KIT_WHEEL = f"bengali_kit-{__version__}-py3-none-any.whl"
EFFNET_WHEEL = "efficientnet_pytorch-0.7.1-py3-none-any.whl"


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
def built(tiny_checkpoint, tmp_path_factory):
    """A package of the conftest's image-dependent checkpoint, saved with training state as last.pt has."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt.update(optimizer={"state": {"exp_avg": torch.ones(50_000)}}, step=7, history=[{"epoch": 1}])
    src = tmp_path_factory.mktemp("src") / "best.pt"
    torch.save(ckpt, src)
    out = tmp_path_factory.mktemp("pkg") / "bengali-tiny"
    return build_package([src], out, user="someone", slug="bengali-tiny-model")


@pytest.mark.parametrize("slug", ["abc", "Bengali-model", "-bengali-model", "bengali-model-", "bengali--model",
                                  "bengali_model", "bengali model", "x" * 41])
def test_bad_slugs_are_refused(slug):
    with pytest.raises(ValueError):
        validate_slug(slug)


@pytest.mark.parametrize("user", ["", "Some User", "someone/else", "-someone", "a" * 51])
def test_bad_users_are_refused(user):
    with pytest.raises(ValueError):
        validate_user(user)


def test_good_names_pass():
    assert validate_slug("bengali-effnet-b0") == "bengali-effnet-b0"
    assert validate_user("some-one_2") == "some-one_2"


def test_package_layout_and_metadata(built):
    out = built.out_dir
    names = {p for p, _ in built.files}
    assert {"dataset-metadata.json", MANIFEST, "checkpoints/best.pt", "kernel/kernel.py",
            "kernel/kernel-metadata.json"} <= names
    assert sorted(n for n in names if n.startswith("wheels/")) == [f"wheels/{KIT_WHEEL}", f"wheels/{EFFNET_WHEEL}"]
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta["id"] == "someone/bengali-tiny-model"
    assert meta["licenses"] == [{"name": "CC-BY-NC-SA-4.0"}]  # the competition data's licence, not CC0
    assert 6 <= len(meta["title"]) <= 50
    kmeta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert kmeta["id"] == "someone/bengali-tiny-model-inference"
    assert kmeta["code_file"] == "kernel.py" and (out / "kernel" / kmeta["code_file"]).is_file()
    assert kmeta["language"] == "python" and kmeta["kernel_type"] == "script"
    assert kmeta["enable_internet"] is False and kmeta["enable_gpu"] is True
    assert kmeta["machine_shape"] == "NvidiaTeslaT4"  # the default: T4, not the P100 Kaggle's torch can't use
    assert kmeta["competition_sources"] == ["bengaliai-cv19"]
    assert kmeta["dataset_sources"] == ["someone/bengali-tiny-model"]
    # Kaggle derives the kernel slug from its title: they must agree.
    assert kmeta["title"].replace(" ", "-") == kmeta["id"].split("/")[1]
    assert 'DATASET_SLUG = "bengali-tiny-model"' in (out / "kernel" / "kernel.py").read_text()
    assert built.total_bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    listing = built.listing()
    assert "checkpoints/best.pt" in listing and "total (" in listing


def test_manifest_lists_every_file(built):
    manifest = json.loads((built.out_dir / MANIFEST).read_text())
    on_disk = sorted(p.relative_to(built.out_dir).as_posix() for p in built.out_dir.rglob("*") if p.is_file())
    assert sorted([*manifest["files"], MANIFEST]) == on_disk
    assert manifest["kit_version"] == __version__ and manifest["accelerator"] == "t4"
    assert [c["file"] for c in manifest["checkpoints"]] == ["checkpoints/best.pt"]
    assert manifest["checkpoints"][0]["model"] == "efficientnet-b0" and manifest["checkpoints"][0]["image_size"] == 32
    assert "init_checkpoint" not in manifest
    assert not list(built.out_dir.parent.glob(".*.tmp")), "the temporary build folder was left behind"


def test_submission_flow_is_complete_and_in_order(built):
    text = built.submission_text()
    out = str(built.out_dir)
    expected = ["https://www.kaggle.com/competitions/bengaliai-cv19/rules",
                f"kaggle datasets create -p {out} -r zip",
                "kaggle datasets status someone/bengali-tiny-model",
                f"kaggle kernels push -p {out}/kernel",
                "kaggle kernels status someone/bengali-tiny-model-inference",
                ("kaggle competitions submit bengaliai-cv19 -k someone/bengali-tiny-model-inference "
                 "-f submission.csv -v VERSION -m"),
                f"kaggle datasets version -p {out} -r zip -m"]
    positions = [text.find(e) for e in expected]
    assert -1 not in positions, text
    assert positions == sorted(positions)
    # after a new dataset version the kernel is pushed again
    assert text.rfind(f"kaggle kernels push -p {out}/kernel") > positions[-1]


def test_packaged_checkpoint_is_state_dict_only(tiny_ckpt, built, tmp_path):
    info = build_package([tiny_ckpt], tmp_path / "p", user="someone", slug="bengali-tiny-model",
                         wheel_dir=built.out_dir / "wheels")
    slim = torch.load(info.out_dir / "checkpoints" / "best.pt", weights_only=True)
    assert set(slim) == {"model", "model_config", "image_size", "preprocess", "metric"}
    full = torch.load(tiny_ckpt, weights_only=True)
    assert all(torch.equal(slim["model"][k], full["model"][k]) for k in full["model"])
    assert (info.out_dir / "checkpoints" / "best.pt").stat().st_size < tiny_ckpt.stat().st_size - 150_000


def _half(src: Path, dst: Path) -> Path:
    """``src`` as the shipped weights are: a float16 state dict, no training state."""
    ckpt = torch.load(src, weights_only=True)
    half = {"model": {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
            "model_config": ckpt["model_config"], "image_size": ckpt["image_size"],
            "preprocess": ckpt.get("preprocess", {}), "metric": 0.25}
    torch.save(half, dst)
    return dst


def test_float16_checkpoints_and_include_init(tiny_ckpt, built, tmp_path):
    half = _half(tiny_ckpt, tmp_path / "synth-b0-32.pt")
    info = build_package([half], tmp_path / "pk", user="someone", slug="bengali-tiny-model",
                         wheel_dir=built.out_dir / "wheels", include_init=half)
    manifest = json.loads((info.out_dir / MANIFEST).read_text())
    assert manifest["init_checkpoint"]["file"] == "init/synth-b0-32.pt"
    assert manifest["init_checkpoint"]["dtype"] == "float16" and manifest["checkpoints"][0]["dtype"] == "float16"
    assert "init/synth-b0-32.pt" in manifest["files"]
    assert [c["file"] for c in manifest["checkpoints"]] == ["checkpoints/synth-b0-32.pt"]
    for rel in ("init/synth-b0-32.pt", "checkpoints/synth-b0-32.pt"):
        stored = torch.load(info.out_dir / rel, weights_only=True)
        assert stored["model"]["heads.0.weight"].dtype == torch.float16  # stays small in the package
        model, _ = load_model(info.out_dir / rel)
        assert next(model.parameters()).dtype == torch.float32  # loading casts back
    reference, _ = load_model(tiny_ckpt)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), reference(x), strict=True):
            assert torch.allclose(a, b, atol=0.05, rtol=0.05)


def test_wheels_hold_the_code(built):
    with zipfile.ZipFile(built.out_dir / "wheels" / KIT_WHEEL) as zf:
        names = zf.namelist()
    assert "bengali_kit/prediction.py" in names and "bengali_kit/resources/class_map.csv" in names
    assert {"bengali_kit/kaggle/kernel_template.py", "bengali_kit/kaggle/search.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    with zipfile.ZipFile(built.out_dir / "wheels" / EFFNET_WHEEL) as zf:
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
    junk = find_junk(tmp_path)
    for rel in ["kaggle.json", ".env.local", ".git", "a/__pycache__", "b/c.pyc", ".ipynb_checkpoints",
                "ok/w-1-py3-none-any.whl!pkg/.env"]:
        assert rel in junk
    assert not [j for j in junk if j.startswith("ok/model.pt") or j.endswith("mod.py")]


def test_refuses_to_package_credentials_or_replace_a_non_package(tiny_ckpt, tmp_path):
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model")
    with pytest.raises(DataError, match="not a package folder"):
        build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model", overwrite=True)
    (out / "kaggle.json").write_text('{"username": "x", "key": "y"}')
    with pytest.raises(DataError, match="kaggle.json"):
        build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["kaggle.json", "notes.txt"]  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary folder left


def test_overwrite_leaves_only_what_the_new_manifest_lists(tiny_ckpt, built, tmp_path):
    """--overwrite replaces the files the old manifest listed; a file it never listed is a user's: refused,
    and the package stays as it was."""
    out = tmp_path / "pkg"
    shutil.copytree(built.out_dir, out)
    info = build_package([tiny_ckpt, tiny_ckpt], out, user="someone", slug="bengali-tiny-model",
                         wheel_dir=built.out_dir / "wheels", overwrite=True)
    manifest = json.loads((out / MANIFEST).read_text())
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted([*manifest["files"], MANIFEST])
    assert [c["file"] for c in manifest["checkpoints"]] == ["checkpoints/0_best.pt", "checkpoints/1_best.pt"]
    assert len([n for n, _ in info.files if n.startswith("wheels/")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # neither the new build nor the old one left
    (out / "notes.txt").write_text("a user's notes")
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match="notes.txt"):
        build_package([tiny_ckpt], out, user="someone", slug="bengali-tiny-model",
                      wheel_dir=built.out_dir / "wheels", overwrite=True)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_bad_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        build_package([bad], tmp_path / "out", user="someone", slug="bengali-tiny-model")
    no_size = tmp_path / "nosize.pt"
    save_checkpoint(no_size, build_model(ModelConfig(neck_dim=8)))
    with pytest.raises(DataError, match="image_size"):
        build_package([no_size], tmp_path / "out2", user="someone", slug="bengali-tiny-model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "nosize.pt"]


def test_cli_package_prints_listing_estimate_and_flow(tiny_ckpt, built, tmp_path, capsys):
    out = tmp_path / "cli-pkg"
    code = main(["package", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--user", "someone",
                 "--slug", "bengali-tiny-model", "--wheel-dir", str(built.out_dir / "wheels"),
                 "--accelerator", "p100"])
    text = capsys.readouterr().out
    assert code == 0
    assert "checkpoints/best.pt" in text and "total (7 files)" in text
    assert "kaggle datasets create" in text and "kaggle kernels push" in text
    assert "kaggle competitions submit bengaliai-cv19" in text
    assert "200,840 hidden test images with --accelerator p100" in text and "CPU" in text
    assert json.loads((out / "kernel" / "kernel-metadata.json").read_text())["machine_shape"] == "NvidiaTeslaP100"
    code = main(["package", "--checkpoint", str(tiny_ckpt), "--out", str(out), "--user", "someone",
                 "--slug", "Bad Slug"])
    assert code == 2


@pytest.mark.slow
def test_offline_kernel_run_in_fresh_venv(built, tmp_path):
    """The whole path Kaggle takes, offline: wheels-only install in a fresh venv, kernel, submission."""
    report = verify_package(built.out_dir, work_dir=tmp_path / "verify", timeout=900)
    assert report.ok, report.summary() + "\n" + report.kernel_log[-3000:]
    assert report.rows == 24 * 3
    venv = (tmp_path / "verify" / "venv").resolve()
    assert Path(report.kit_location).resolve().is_relative_to(venv)
    assert report.matches_library is True
    assert set(report.answer_key_accuracy) == {"consonant_diacritic", "grapheme_root", "vowel_diacritic"}
    log = report.kernel_log
    assert "pip install --no-index --no-deps" in log and "bengali_kit efficientnet_pytorch" in log
    assert "efficientnet_pytorch 0.7.1 from " + str(venv) in log
    # the fake input uses Kaggle's newer layout: competitions/<competition>, datasets/<owner>/<slug>
    assert "datasets/someone/bengali-tiny-model, competition data" in log and "competitions/bengaliai-cv19" in log
    assert "kernel: device cpu" in log


def load_kernel(tmp_path: Path, slug: str = "my-slug"):
    """The kernel script rendered for ``slug`` into ``tmp_path``, imported as a module."""
    path = tmp_path / "kernel.py"
    path.write_text(kernel_source(slug), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("bk_kernel_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rendered_kernel_is_self_contained_and_takes_overrides(tmp_path, monkeypatch):
    text = kernel_source("my-slug")
    assert "from bengali_kit.kaggle.search import" not in text  # the search is inlined, not imported
    assert "def find_input(" in text and 'DATASET_SLUG = "my-slug"' in text
    kernel = load_kernel(tmp_path)
    monkeypatch.setenv("BENGALI_KIT_INPUT_ROOT", str(tmp_path / "input"))
    monkeypatch.setenv("BENGALI_KIT_TTA", "1")
    args = kernel.parse_args(["--output-dir", str(tmp_path / "out"), "-f", "ignored.json"])
    assert args.input_root == str(tmp_path / "input") and args.output_dir == str(tmp_path / "out")
    assert args.tta is True and args.slug == "my-slug" and args.competition == "bengaliai-cv19"
    monkeypatch.delenv("BENGALI_KIT_INPUT_ROOT")
    monkeypatch.delenv("BENGALI_KIT_TTA")
    args = kernel.parse_args([])
    assert (args.input_root, args.output_dir, args.tta) == ("/kaggle/input", "/kaggle/working", None)


def test_kernel_names_the_wheel_folder_when_pip_fails(tmp_path, monkeypatch):
    kernel = load_kernel(tmp_path)
    pkg = tmp_path / "pkg"
    (pkg / "wheels").mkdir(parents=True)
    (pkg / "wheels" / KIT_WHEEL).write_bytes(b"not a wheel")
    # A stand-in for ``python -m pip`` that fails as pip does offline: the test never installs anything.
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho 'Looking in links: x'\n"
                           "echo 'ERROR: No matching distribution found for bengali_kit' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(kernel.sys, "executable", str(fake_python))
    manifest = {"kit_version": "0.0.0-not-installed", "wheels": [f"wheels/{KIT_WHEEL}"]}
    with pytest.raises(SystemExit) as exc:
        kernel.ensure_installed(pkg, manifest)
    message = str(exc.value.code)
    assert message.startswith("kernel: pip could not install bengali_kit from the wheel folder ")
    assert str(pkg / "wheels") in message and "No matching distribution" in message and "\n" not in message
