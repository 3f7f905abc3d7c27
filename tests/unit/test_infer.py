"""``dspo-infer`` as a batch tool on a folder of ordinary (and broken) files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.infer import main


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def photo_folder(folder):
    """The issue's folder: 179x179 JPEG, gray PNG, RGBA PNG, 16-bit PNG, a truncated file, a photo."""
    folder.mkdir()
    Image.fromarray(gradient(179, 179)).save(folder / "a_odd.jpg", quality=90)
    Image.fromarray(gradient(20, 12)[..., 0]).save(folder / "b_gray.png")
    rgba = np.dstack([gradient(16, 10), np.linspace(0, 255, 160).reshape(10, 16).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "c_alpha.png")
    Image.fromarray((np.arange(14 * 9).reshape(9, 14) * 500).astype(np.uint16)).save(folder / "d_16bit.png")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # does not compress
    Image.fromarray(noise).save(buffer, format="PNG")
    (folder / "e_truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.fromarray(gradient(24, 18)).save(folder / "f_photo.jpg", quality=90)
    return folder


def infer(*args: str) -> int:
    return main(["--steps", "1", "--device", "cpu", *args])


def test_folder_of_mixed_files(tmp_path, tiny_sr_folder, capsys):
    photos, out = photo_folder(tmp_path / "photos"), tmp_path / "sr"
    code = infer("--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder))
    captured = capsys.readouterr()
    assert code == 1
    expected = {
        "a_odd.png": ((716, 716), "RGB"),
        "b_gray.png": ((80, 48), "L"),
        "c_alpha.png": ((64, 40), "RGBA"),
        "d_16bit.png": ((56, 36), "L"),
        "f_photo.png": ((96, 72), "RGB"),
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (size, mode) in expected.items():
        with Image.open(out / name) as image:
            assert (image.size, image.mode) == (size, mode), name
    errors = [line for line in captured.err.splitlines() if line.startswith("dspo-infer: failed")]
    assert len(errors) == 1 and "e_truncated.png" in errors[0] and "truncated" in errors[0]
    assert "1 failed" in captured.err and "5 written" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_alpha_is_upscaled_bicubically_and_16_bit_is_scaled(tmp_path, tiny_sr_folder):
    photos, out = photo_folder(tmp_path / "photos"), tmp_path / "sr"
    infer("--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder))
    with Image.open(photos / "c_alpha.png") as source, Image.open(out / "c_alpha.png") as result:
        expected_alpha = source.getchannel("A").resize(result.size, Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(expected_alpha))
    with Image.open(out / "d_16bit.png") as gray:
        values = np.asarray(gray, dtype=np.float64)
    # The 16-bit ramp (0..62500) maps to 8-bit 0..243, not clipped to white.
    source = np.arange(14 * 9).reshape(9, 14) * 500 / 65535 * 255
    assert abs(values.mean() - source.mean()) < 8 and values.max() < 255


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, tiny_sr_folder, capsys):
    photos, out = tmp_path / "photos", tmp_path / "sr"
    photos.mkdir()
    Image.fromarray(gradient(12, 8)).save(photos / "one.png")
    args = ["--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder)]
    assert infer(*args) == 0
    (out / "one.png").write_bytes(b"placeholder")
    capsys.readouterr()
    assert infer(*args) == 0
    assert (out / "one.png").read_bytes() == b"placeholder"
    assert "1 skipped" in capsys.readouterr().err
    assert infer(*args, "--overwrite") == 0
    with Image.open(out / "one.png") as image:
        assert image.size == (48, 32)


def test_suffix_ext_same_and_exif_rotation(tmp_path, tiny_sr_folder):
    photos, out = tmp_path / "photos", tmp_path / "sr"
    photos.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(gradient(16, 8)).save(photos / "turned.jpg", exif=exif, quality=95)
    code = infer("--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder),
                 "--suffix", "_x4", "--ext", "same")
    assert code == 0
    with Image.open(out / "turned_x4.jpg") as image:
        assert image.format == "JPEG" and image.size == (32, 64)  # 8x16 upright, times 4


def test_batching_small_images_gives_the_same_outputs(tmp_path, tiny_sr_folder):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.fromarray(np.roll(gradient(14, 10), 3 * i, axis=1)).save(photos / f"img{i}.png")
    outputs = {}
    for batch in ("1", "3"):
        out = tmp_path / f"sr{batch}"
        assert infer("--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder),
                     "--batch_size", batch) == 0
        outputs[batch] = {p.name: np.asarray(Image.open(p)) for p in sorted(out.iterdir())}
    assert outputs["1"].keys() == outputs["3"].keys() and len(outputs["1"]) == 5
    for name, image in outputs["1"].items():
        assert np.abs(image.astype(int) - outputs["3"][name].astype(int)).max() <= 1, name


def test_large_image_in_tiles_and_too_small_image(tmp_path, tiny_sr_folder, capsys):
    photos, out = tmp_path / "photos", tmp_path / "sr"
    photos.mkdir()
    Image.fromarray(gradient(70, 45)).save(photos / "big.png")
    Image.fromarray(gradient(1, 1)).save(photos / "dot.png")
    code = infer("--input_path", str(photos), "--output_path", str(out), "--checkpoint", str(tiny_sr_folder),
                 "--tile", "16", "--tile_pad", "4")
    assert code == 1
    with Image.open(out / "big.png") as image:
        assert image.size == (280, 180)
    err = capsys.readouterr().err
    assert "failed" in err and "dot.png" in err and "1x1 is too small" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_gpu_follows_the_stages_policy(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(gradient(8, 8)).save(photos / "x.png")
    code = main(["--input_path", str(photos), "--output_path", str(tmp_path / "sr"), "--device", "cuda",
                 "--on_missing_gpu", "error"])
    assert code == 2 and "no such CUDA device" in capsys.readouterr().err


def test_setup_errors_exit_2_without_traceback(tmp_path, capsys):
    assert infer("--input_path", str(tmp_path / "missing"), "--output_path", str(tmp_path / "sr")) == 2
    assert "does not exist" in capsys.readouterr().err
