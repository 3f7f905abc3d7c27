"""The photo manifest: pinned files, one split per photo, held-out images never trained on."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from stages.backbones.photos import PhotoError, fetch, load_manifest, photo_array, sha256_of, split_photos


def test_manifest_pins_every_photo_with_a_licence_and_one_split():
    photos = load_manifest()
    assert len({p.id for p in photos}) == len(photos)
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) for p in photos)
    assert all(p.license and p.split in ("train", "validation", "test") for p in photos)
    assert all(p.version for p in photos if p.source == "debian")
    # Splits big enough for the closed loop (issue 26) and the v1 held-out images still held out.
    counts = {s: len(split_photos(s)) for s in ("train", "validation", "test")}
    assert counts["train"] >= 32 and counts["test"] >= 24 and counts["validation"] >= 4
    test_ids = {p.id for p in split_photos("test")}
    assert {"scikit-image-chelsea", "scikit-learn-flower"} <= test_ids
    # No photograph appears twice under two ids (same bytes in two splits would leak).
    assert len({p.sha256 for p in photos}) == len(photos)


def test_fetch_checks_sha256_and_refuses_other_bytes(tmp_path):
    bundled = [p for p in load_manifest() if p.source == "python" and p.package == "scikit-learn"]
    folder = fetch(bundled, tmp_path)
    for photo in bundled:
        assert sha256_of(folder / photo.file_name) == photo.sha256
        image = photo_array(photo, folder, long_side=200)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and max(image.shape[:2]) == 200
    wrong = dataclasses.replace(bundled[0], id="tampered", sha256="0" * 64)
    with pytest.raises(PhotoError, match="tampered.*refusing"):
        fetch([wrong], tmp_path)
    assert not (tmp_path / wrong.file_name).exists()


def test_a_photo_not_fetched_says_how_to_fetch_it(tmp_path):
    with pytest.raises(PhotoError, match="photos fetch"):
        photo_array(load_manifest()[0], tmp_path)


def test_gray_photos_become_three_equal_channels(tmp_path):
    photo = dataclasses.replace(load_manifest()[0], id="gray", member="x.png")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "gray.png")
    image = photo_array(photo, tmp_path)
    assert image.shape == (8, 8, 3) and (image[..., 0] == image[..., 2]).all()
