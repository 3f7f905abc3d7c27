"""dspo-train, dspo-eval and dspo-infer on broken files and bad numbers: exit 2 with one line
that names the file or option, never a traceback; dspo-infer's partial outputs are cleaned and
never read as input; an animated image is reported, not taken for its first frame."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from common.images import BadImageError, decode_rgb
from tests.dspo_fixtures import write_dspo_dataset
from tests.tiny_models import save_tiny_sr
from trainer.evaluate import main as evaluate_main
from trainer.infer import main as infer_main
from trainer.train import main as train_main

TRAIN_FILE = Path("data/dspo/train-00000.parquet")
VALIDATION_FILE = Path("data/dspo/validation-00000.parquet")


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("good")
    return {"dataset": write_dspo_dataset(root / "ds"), "model": save_tiny_sr(root / "model")}


def _exit_code(run: Callable[[], int]) -> int | str | None:
    """A tool's exit code, whether its main returns it or argparse exits."""
    try:
        return run()
    except SystemExit as exited:
        return exited.code


def _refused(run: Callable[[], int], capsys, *expected: str) -> None:
    """``run`` exits 2 with one error line (after argparse's usage) holding ``expected``."""
    code = _exit_code(run)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [text for text in err.splitlines() if "error:" in text]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], err


def _broken_dataset(good: dict[str, Path], tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(good["dataset"], copy)
    damage(copy)
    return copy


def _train(dataset: Path, model: Path, out: Path, *extra: str) -> Callable[[], int]:
    return lambda: train_main(["--dataset", str(dataset), "--backbone", str(model), "--output_dir", str(out),
                               "--max_train_steps", "1", "--report_to", "none", *extra])


def _empty_copy(path: Path) -> None:
    pq.write_table(pq.read_table(path).slice(0, 0), path)


@pytest.mark.parametrize(("damage", "file", "problem"), [
    (lambda d: (d / TRAIN_FILE).write_bytes(b""), TRAIN_FILE, "Parquet file size is 0 bytes"),
    (lambda d: (d / TRAIN_FILE).write_bytes(b"not parquet at all"), TRAIN_FILE, "not a readable Parquet file"),
    (lambda d: (d / TRAIN_FILE).write_bytes((d / TRAIN_FILE).read_bytes()[:3000]), TRAIN_FILE,
     "not a readable Parquet file"),
    (lambda d: _empty_copy(d / TRAIN_FILE), TRAIN_FILE, "holds no rows"),
    (lambda d: _empty_copy(d / VALIDATION_FILE), VALIDATION_FILE, "holds no rows"),
], ids=["zero-bytes", "garbage", "truncated", "zero-rows", "empty-validation"])
def test_a_broken_dataset_file_is_named(good, tmp_path, capsys, damage, file, problem):
    dataset = _broken_dataset(good, tmp_path, damage)
    _refused(_train(dataset, good["model"], tmp_path / "out", "--validation_steps", "1"), capsys,
             str(dataset / file), problem)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--beta", "nan", "--beta=nan: give a finite number"),
    ("--learning_rate", "inf", "--learning_rate=inf: give a finite number"),
    ("--learning_rate", "-1", "--learning_rate, --lora_alpha and --max_grad_norm must be positive"),
    ("--guidance", "nan", "--guidance=nan: give a finite number"),
])
def test_a_bad_training_number_is_refused(good, tmp_path, capsys, option, value, expected):
    _refused(_train(good["dataset"], good["model"], tmp_path / "out", option, value), capsys, expected)


def test_an_output_dir_that_is_a_file_is_refused(good, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _refused(_train(good["dataset"], good["model"], tmp_path / "file"), capsys, "is a file, not a folder")


def _truncate_weights(model: Path) -> None:
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


@pytest.mark.parametrize(("damage", "named"), [
    (_truncate_weights, "unet/diffusion_pytorch_model.safetensors"),
    (lambda m: (m / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage"),
     "unet/diffusion_pytorch_model.safetensors"),
    (lambda m: (m / "unet" / "config.json").write_text("{broken"), "unet/config.json"),
    (lambda m: (m / "model_index.json").write_text("[1, 2"), "model_index.json"),
], ids=["truncated-weights", "garbage-weights", "broken-config", "broken-index"])
@pytest.mark.parametrize("tool", ["train", "eval", "infer"])
def test_a_broken_model_folder_is_named_by_every_tool(good, tmp_path, capsys, damage, named, tool):
    model = tmp_path / "model"
    shutil.copytree(good["model"], model)
    damage(model)
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16), (10, 90, 200)).save(tmp_path / "in" / "a.png")
    runs = {
        "train": _train(good["dataset"], model, tmp_path / "out", "--validation_steps", "0"),
        "eval": lambda: evaluate_main(["--dataset", str(good["dataset"]), "--checkpoint", str(model),
                                       "--split", "validation", "--device", "cpu"]),
        "infer": lambda: infer_main(["--input_path", str(tmp_path / "in"), "--output_path", str(tmp_path / "sr"),
                                     "--checkpoint", str(model), "--steps", "1", "--device", "cpu"]),
    }
    _refused(runs[tool], capsys, str(model / named))


def test_infer_refuses_nan_guidance_and_an_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "in.png").write_bytes(b"")
    (tmp_path / "file").write_text("x")
    _refused(lambda: infer_main(["--input_path", str(tmp_path / "in.png"), "--output_path", str(tmp_path / "o"),
                                 "--guidance", "nan"]), capsys, "--guidance=nan: give a finite number")
    _refused(lambda: infer_main(["--input_path", str(tmp_path / "in.png"), "--output_path", str(tmp_path / "file"),
                                 "--device", "cpu"]), capsys, f"--output_path '{tmp_path / 'file'}' is a file")


def test_infer_removes_partial_outputs_never_reads_them_and_names_files_it_skips(good, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (16, 12), (200, 30, 60)).save(folder / "a.png")
    (folder / ".partial-a.png").write_bytes(b"")  # a run killed while writing into its input folder
    (folder / "notes.txt").write_text("not an image")
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "b.gif", save_all=True, append_images=frames[1:])
    code = infer_main(["--input_path", str(folder), "--output_path", str(folder), "--suffix", "_sr",
                       "--checkpoint", str(good["model"]), "--steps", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1, err  # the animation failed, named
    assert f"removed {folder / '.partial-a.png'}" in err
    assert f"not an input {folder / 'notes.txt'}" in err
    assert f"failed {folder / 'b.gif'}: animated GIF (2 frames): only still images are read" in err
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_sr.png", "b.gif", "notes.txt"]


def test_an_animated_image_is_a_failed_item_for_ingest_too(tmp_path):
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])  # APNG
    with pytest.raises(BadImageError, match=r"animated PNG \(2 frames\)"):
        decode_rgb((tmp_path / "a.png").read_bytes(), 10**6)
    frames[0].save(tmp_path / "still.gif")
    assert decode_rgb((tmp_path / "still.gif").read_bytes(), 10**6).size == (8, 8)
