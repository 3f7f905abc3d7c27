import io
import os
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline.config import load_config
from stages.ingest import IngestStage, InputError, image_id_of


def png_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height pixels."""
    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def ingest(folder, *overrides):
    cfg = load_config([f"input={folder}", "ingest.min_side=8", "ingest.multiple_of=8", *overrides])
    stage = IngestStage(cfg)
    listing = stage.list_sources()
    out = stage.process({"sources": pa.concat_tables(listing.shards)}).to_pylist()
    return {row["source_uri"].rsplit("/", 1)[-1]: row for row in out}, listing


def decoded(row) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))


def test_good_image_is_ok_with_content_id(tmp_path, rgb):
    data = png_bytes(rgb)
    (tmp_path / "a.png").write_bytes(data)
    rows, _ = ingest(tmp_path)
    row = rows["a.png"]
    assert row["status"] == "ok" and row["error"] is None
    assert row["image_id"] == image_id_of(data)
    assert (row["width"], row["height"]) == (64, 48)
    np.testing.assert_array_equal(decoded(row), np.asarray(rgb))


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("empty.png", b"", "empty file (0 bytes)"),
        ("notes.png", b"these are not pixels", "not an image"),
        ("bomb.png", bomb_png(100_000, 100_000), "decompression bomb"),
    ],
)
def test_bad_files_become_failed_rows(tmp_path, rgb, name, payload, message):
    (tmp_path / "good.png").write_bytes(png_bytes(rgb))
    (tmp_path / name).write_bytes(payload)
    rows, _ = ingest(tmp_path)
    assert rows["good.png"]["status"] == "ok"
    assert rows[name]["status"] == "failed"
    assert message in rows[name]["error"] and name in rows[name]["error"]
    assert rows[name]["image"] is None


def test_truncated_file_fails_clearly(tmp_path, rgb):
    data = png_bytes(rgb)
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    rows, _ = ingest(tmp_path)
    assert rows["cut.png"]["status"] == "failed"
    assert "truncated or corrupt" in rows["cut.png"]["error"]


def test_pixel_limit_is_configurable(tmp_path, rgb):
    (tmp_path / "a.png").write_bytes(png_bytes(rgb))
    rows, _ = ingest(tmp_path, "ingest.max_pixels=1000")
    assert "64x48 = 3072 pixels exceeds ingest.max_pixels=1000" in rows["a.png"]["error"]


def test_too_small_image_fails(tmp_path):
    (tmp_path / "tiny.png").write_bytes(png_bytes(Image.new("RGB", (20, 20))))
    rows, _ = ingest(tmp_path, "ingest.min_side=32")
    assert "too small: 16x16" in rows["tiny.png"]["error"]


def test_grayscale_becomes_equal_channels(tmp_path):
    gray = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251
    (tmp_path / "g.png").write_bytes(png_bytes(Image.fromarray(gray.astype(np.uint8), "L")))
    out = decoded(ingest(tmp_path)[0]["g.png"])
    assert out.shape == (64, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_rgba_is_composited_on_the_background(tmp_path):
    pixels = np.zeros((16, 16, 4), dtype=np.uint8)
    pixels[:8] = (200, 10, 10, 255)  # opaque red top half
    pixels[8:] = (0, 255, 0, 0)  # fully transparent bottom half
    (tmp_path / "a.png").write_bytes(png_bytes(Image.fromarray(pixels, "RGBA")))
    out = decoded(ingest(tmp_path, "ingest.background=[10,20,30]")[0]["a.png"])
    assert tuple(out[0, 0]) == (200, 10, 10)
    assert tuple(out[15, 15]) == (10, 20, 30)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 0, 16, 8))
    (tmp_path / "p.png").write_bytes(png_bytes(image, transparency=0))
    out = decoded(ingest(tmp_path)[0]["p.png"])
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[15, 0]) == (255, 255, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.full((16, 16), 32896, dtype=np.uint16)  # 32896 / 257 = 128
    values[0, 0] = 65535
    (tmp_path / "deep.png").write_bytes(png_bytes(Image.fromarray(values)))
    out = decoded(ingest(tmp_path)[0]["deep.png"])
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[5, 5]) == (128, 128, 128)


def test_cmyk_is_converted(tmp_path):
    image = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    (tmp_path / "c.jpg").write_bytes(buffer.getvalue())
    out = decoded(ingest(tmp_path)[0]["c.jpg"])
    assert out.shape == (16, 16, 3)
    assert out.min() > 240  # no ink is white


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (32, 16), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 16, 16))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=100)
    (tmp_path / "o.jpg").write_bytes(buffer.getvalue())
    row = ingest(tmp_path)[0]["o.jpg"]
    out = decoded(row)
    assert (row["width"], row["height"]) == (16, 32)
    assert out[4, 8, 2] > 200 and out[28, 8, 0] > 200  # blue now on top, red below


def test_duplicates_are_reported_once(tmp_path, rgb):
    data = png_bytes(rgb)
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(data)
    rows, listing = ingest(tmp_path)
    assert list(rows) == ["a.png"]
    assert [(d.rsplit("/", 1)[-1], f.rsplit("/", 1)[-1]) for d, f in listing.duplicates] == [("b.png", "a.png")]
    assert listing.count == 1


def test_a_file_name_that_is_not_utf8_fails_alone_shown_with_escapes(tmp_path, rgb):
    (tmp_path / "good.png").write_bytes(png_bytes(rgb))
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.png"), "wb") as handle:
        handle.write(png_bytes(rgb.rotate(90)))
    rows, _ = ingest(tmp_path)
    assert rows["good.png"]["status"] == "ok"
    bad = rows["caf\\xe9.png"]
    assert bad["status"] == "failed" and bad["image"] is None
    assert bad["error"] == f"{tmp_path}/caf\\xe9.png: file name is not valid UTF-8; rename the file"
    # The same name in a .txt list fails alone as well.
    (tmp_path / "list.txt").write_bytes(b"good.png\ncaf\xe9.png\n")
    rows, _ = ingest(tmp_path / "list.txt")
    assert [r["status"] for r in rows.values()] == ["ok", "failed"]


def test_empty_files_are_separate_failed_rows_with_ids_from_their_paths(tmp_path, rgb):
    (tmp_path / "good.png").write_bytes(png_bytes(rgb))
    (tmp_path / "e1.png").write_bytes(b"")
    (tmp_path / "e2.png").write_bytes(b"")
    rows, stage = ingest(tmp_path)
    assert [rows[n]["status"] for n in ("e1.png", "e2.png", "good.png")] == ["failed", "failed", "ok"]
    assert rows["e1.png"]["image_id"] == image_id_of(os.fsencode(tmp_path / "e1.png"))
    assert rows["e2.png"]["image_id"] == image_id_of(os.fsencode(tmp_path / "e2.png"))
    assert stage.duplicates == []


def test_glob_and_text_list_inputs(tmp_path, rgb):
    (tmp_path / "a.png").write_bytes(png_bytes(rgb))
    (tmp_path / "b.jpg").write_bytes(png_bytes(rgb.rotate(90)))
    rows, _ = ingest(str(tmp_path / "*.png"))
    assert list(rows) == ["a.png"]
    (tmp_path / "list.txt").write_text("# images\nb.jpg\n\n")
    rows, _ = ingest(tmp_path / "list.txt")
    assert list(rows) == ["b.jpg"]


def test_hf_dataset_input(tmp_path, rgb):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"picture": [{"bytes": png_bytes(rgb), "path": None}]},
        features=datasets.Features({"picture": datasets.Image()}),
    )
    ds.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    rows, _ = ingest(f"hf:{tmp_path / 'data'}", "ingest.image_column=picture")
    (row,) = rows.values()
    assert row["status"] == "ok"
    np.testing.assert_array_equal(decoded(row), np.asarray(rgb))
    with pytest.raises(InputError, match="no column 'image'"):
        ingest(f"hf:{tmp_path / 'data'}")


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="is not a folder, a glob"):
        ingest(tmp_path / "nowhere")


def test_demo_images_are_bundled_and_decode():
    cfg = load_config()
    stage = IngestStage(cfg)
    listing = stage.list_sources()
    assert [shard.num_rows for shard in listing.shards] == [cfg.ingest.shard_size]  # 8 images, shards of 8
    rows = stage.process({"sources": listing.shards[0]}).to_pylist()
    assert len(rows) == cfg.ingest.demo_count
    assert all(r["status"] == "ok" and r["width"] % 32 == 0 and r["height"] >= 256 for r in rows)


@pytest.mark.parametrize("as_image_feature", [False, True], ids=["string-column", "image-feature-path"])
def test_hf_rows_that_are_local_paths_fail_unless_allowed(tmp_path, rgb, as_image_feature):
    import datasets

    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(rgb))  # stands for /etc/passwd: a file of this machine
    value = {"bytes": None, "path": str(secret)} if as_image_feature else str(secret)
    features = datasets.Features({"image": datasets.Image() if as_image_feature else datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [value]}, features=features)
    ds.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    rows, listing = ingest(f"hf:{tmp_path / 'data'}")
    (row,) = rows.values()
    assert row["status"] == "failed" and row["image"] is None
    assert f"only the path '{secret}'; set ingest.allow_local_paths=true" in row["error"]
    assert pa.concat_tables(listing.shards).column("data").to_pylist() == [None]  # nothing was read
    rows, _ = ingest(f"hf:{tmp_path / 'data'}", "ingest.allow_local_paths=true")
    (row,) = rows.values()
    assert row["status"] == "ok"
    np.testing.assert_array_equal(decoded(row), np.asarray(rgb))
