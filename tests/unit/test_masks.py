import numpy as np
import pytest

from common.masks import (
    MaskError,
    decode_mask,
    decode_masks,
    encode_mask,
    encode_masks,
    mask_areas,
    mask_bboxes,
)

SHAPES = [(1, 1), (1, 7), (5, 1), (3, 5), (17, 31), (64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_rle_round_trip_is_exact(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    mask = rng.random(shape) < density
    rle = encode_mask(mask)
    assert rle["size"] == list(shape)
    assert isinstance(rle["counts"], str)
    decoded = decode_mask(rle)
    assert decoded.dtype == bool
    np.testing.assert_array_equal(decoded, mask)


def test_encode_accepts_zero_one_arrays_and_stacks():
    stack = np.random.default_rng(0).integers(0, 2, size=(3, 9, 11)).astype(np.uint8)
    rles = encode_masks(stack)
    np.testing.assert_array_equal(decode_masks(rles), stack.astype(bool))
    assert rles == encode_masks(list(stack.astype(bool)))


def test_areas_and_boxes_match_numpy():
    rng = np.random.default_rng(1)
    masks = []
    for _ in range(5):
        mask = np.zeros((40, 30), dtype=bool)
        y, x = rng.integers(0, 30), rng.integers(0, 20)
        mask[y : y + rng.integers(1, 10), x : x + rng.integers(1, 10)] = True
        masks.append(mask)
    masks.append(np.zeros((40, 30), dtype=bool))
    rles = encode_masks(masks)
    assert mask_areas(rles) == [int(m.sum()) for m in masks]
    expected = []
    for m in masks:
        ys, xs = np.nonzero(m)
        expected.append(
            [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1] if len(xs) else [0, 0, 0, 0]
        )
    assert mask_bboxes(rles) == expected
    assert mask_areas([]) == [] and mask_bboxes([]) == []


def test_decode_masks_checks_sizes_and_handles_no_masks():
    a, b = encode_mask(np.ones((4, 5), bool)), encode_mask(np.ones((5, 4), bool))
    with pytest.raises(MaskError, match="mask 1 is 5x4, expected 4x5"):
        decode_masks([a, b])
    with pytest.raises(MaskError, match="mask 0 is 4x5, expected 8x8"):
        decode_masks([a], size=(8, 8))
    assert decode_masks([], size=(6, 7)).shape == (0, 6, 7)
    assert decode_masks([]).shape == (0, 0, 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"counts": "0"}, "mapping with 'size' and 'counts'"),
        ({"size": [3], "counts": "0"}, "size must be"),
        ({"size": [3, -1], "counts": "0"}, "size must be"),
        ({"size": [3, 5], "counts": 7}, "counts must be a compressed string"),
        ({"size": [3, 5], "counts": "0"}, "do not describe a 3x5 mask"),
        ({"size": [3, 5], "counts": "zzzz"}, "cannot be decoded|do not describe"),
        ("not a mapping", "mapping with 'size' and 'counts'"),
    ],
)
def test_malformed_rle_is_a_clear_error(bad, message):
    with pytest.raises(MaskError, match=message):
        decode_mask(bad)


def test_bytes_counts_are_accepted():
    mask = np.eye(6, dtype=bool)
    rle = encode_mask(mask)
    np.testing.assert_array_equal(decode_mask({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


def test_non_2d_mask_is_rejected():
    with pytest.raises(MaskError, match="2-D"):
        encode_mask(np.zeros((2, 2, 2), bool))
