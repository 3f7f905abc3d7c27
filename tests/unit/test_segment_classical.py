import numpy as np
import pytest

from pipeline.config import load_config
from stages.segmenters import build_segmenter
from stages.segmenters.classical import ClassicalSegmenter
from stages.segmenters.postprocess import partition_masks
from tests.segment_fixtures import assert_partition, demo_crops


@pytest.fixture(scope="module")
def settings():
    return load_config().segment


@pytest.fixture(scope="module")
def crops():
    return demo_crops()


def test_default_count_is_within_the_configured_bounds_on_every_demo_image(settings, crops):
    segmenter = build_segmenter(settings)
    low, high = settings.classical.min_segments, settings.classical.max_segments
    for name, image in crops:
        masks = segmenter.segment(image)
        assert low <= len(masks) <= high, f"{name}: {len(masks)} segments"
        assert_partition(masks, image.shape[:2])  # the merge itself already partitions
        result = partition_masks(masks, image.shape[:2], settings.min_area, settings.max_instances)
        assert_partition(result.masks, image.shape[:2])
        assert len(result.masks) <= settings.max_instances


@pytest.mark.parametrize("low, high", [(2, 4), (12, 12)])
def test_other_bounds_are_respected(settings, crops, low, high):
    options = {**settings.classical, "min_segments": low, "max_segments": high}
    segmenter = ClassicalSegmenter(**options)
    for name, image in crops[:3]:
        assert low <= len(segmenter.segment(image)) <= high, name


def test_segments_are_contiguous_and_follow_colour(settings):
    # Two flat colours split down the middle: two segments, exactly the two halves.
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    image[:, 32:] = (30, 30, 200)
    options = {**settings.classical, "min_segments": 1}
    masks = ClassicalSegmenter(**options).segment(image)
    assert len(masks) == 2
    halves = sorted(m[:, :32].all() for m in masks)
    assert halves == [False, True]
    assert all(m[:, :32].all() != m[:, 32:].any() for m in masks)


def test_flat_image_is_one_segment(settings):
    masks = ClassicalSegmenter(**settings.classical).segment(np.full((32, 32, 3), 90, np.uint8))
    assert len(masks) == 1 and masks[0].all()


def test_same_image_same_masks(settings, crops):
    segmenter = build_segmenter(settings)
    first, second = segmenter.segment(crops[0][1]), segmenter.segment(crops[0][1].copy())
    np.testing.assert_array_equal(np.stack(first), np.stack(second))


def test_params_are_the_settings(settings):
    assert build_segmenter(settings).params() == dict(settings.classical)


@pytest.mark.parametrize(
    "change, message",
    [({"min_segments": 0}, "segment.classical.min_segments"), ({"max_segments": 3}, "segment.classical.max_segments")],
)
def test_bad_bounds_are_named(settings, change, message):
    with pytest.raises(ValueError, match=message):
        ClassicalSegmenter(**{**settings.classical, **change})


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8), np.uint8), r"\[H, W, 3\] RGB"),
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((1, 8, 3), np.uint8), "too small"),
    ],
)
def test_bad_images_are_rejected_clearly(settings, image, message):
    with pytest.raises(ValueError, match=message):
        build_segmenter(settings).segment(image)


def test_unknown_segmenter_is_named():
    with pytest.raises(ValueError, match="segment.segmenter=watershed: expected one of classical, sam"):
        load_config(["segment.segmenter=watershed"])  # refused with the config, before any stage runs
