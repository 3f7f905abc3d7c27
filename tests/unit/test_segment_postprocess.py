import numpy as np
import pytest

from common.masks import decode_masks, mask_areas
from stages.segmenters.postprocess import REST_LABEL, SEGMENT_LABEL, instance_columns, partition_masks
from tests.segment_fixtures import assert_partition

SHAPE = (40, 50)


def box(top, left, bottom, right, shape=SHAPE):
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.mark.parametrize("seed", range(5))
def test_random_overlapping_masks_become_a_partition(seed):
    rng = np.random.default_rng(seed)
    masks = [rng.random(SHAPE) < rng.uniform(0.05, 0.6) for _ in range(rng.integers(0, 12))]
    masks += [box(*sorted(rng.integers(0, 40, 2)), *sorted(rng.integers(0, 50, 2))) for _ in range(5)]
    result = partition_masks(masks, SHAPE, min_area=10, max_instances=8)
    assert_partition(result.masks, SHAPE)
    assert 1 <= len(result.masks) <= 8
    assert len(result.labels) == len(result.masks)


def test_smaller_mask_wins_the_overlap_and_larger_keeps_the_rest():
    person = box(0, 0, 40, 30)
    face = box(5, 5, 15, 15)
    result = partition_masks([person, face], SHAPE, min_area=1, max_instances=10)
    # Largest first, then the face, then the uncovered columns 30..49 as the rest.
    np.testing.assert_array_equal(result.masks[0], person & ~face)
    np.testing.assert_array_equal(result.masks[1], face)
    np.testing.assert_array_equal(result.masks[2], ~person)
    assert result.labels == [SEGMENT_LABEL, SEGMENT_LABEL, REST_LABEL]


def test_masks_below_min_area_join_the_rest():
    big = box(0, 0, 40, 25)
    speck = box(0, 30, 2, 32)  # 4 pixels
    result = partition_masks([big, speck], SHAPE, min_area=5, max_instances=10)
    assert len(result.masks) == 2
    np.testing.assert_array_equal(result.masks[1], ~big)
    assert result.labels[1] == REST_LABEL


def test_pieces_left_below_min_area_after_overlap_are_dropped():
    small = box(0, 0, 10, 10)
    # 100 pixels, 96 of them taken by the smaller mask: the 4 left are below min_area.
    almost_covered = box(0, 0, 10, 10) | box(10, 0, 11, 4)
    almost_covered[0, 0] = True
    outer = box(0, 0, 40, 50)
    result = partition_masks([outer, almost_covered, small], SHAPE, min_area=5, max_instances=10)
    # The 4 pixels the middle mask would have kept go to the next mask covering them.
    assert len(result.masks) == 2 and result.labels == [SEGMENT_LABEL, SEGMENT_LABEL]
    np.testing.assert_array_equal(result.masks[1], small)
    np.testing.assert_array_equal(result.masks[0], ~small)


def test_few_stray_pixels_go_to_the_nearest_instance_not_a_rest():
    # Columns 24 and 25 of the top row are uncovered: (0, 24) borders only the left instance,
    # (0, 25) only the right one.
    left = box(0, 0, 40, 24) | box(1, 24, 40, 25)
    right = box(0, 26, 40, 50) | box(1, 25, 40, 26)
    result = partition_masks([left, right], SHAPE, min_area=5, max_instances=10)
    assert result.labels == [SEGMENT_LABEL, SEGMENT_LABEL]
    assert_partition(result.masks, SHAPE)
    assert result.masks[0][0, 24] and result.masks[1][0, 25]


def test_cap_keeps_the_largest_and_reserves_a_slot_for_the_rest():
    stripes = [box(0, 10 * k, 40, 10 * k + 10 - (k % 3)) for k in range(5)]  # areas differ, gaps between
    result = partition_masks(stripes, SHAPE, min_area=1, max_instances=3)
    assert len(result.masks) == 3 and result.labels[-1] == REST_LABEL
    kept_areas = [int(m.sum()) for m in result.masks[:2]]
    assert kept_areas == [400, 400]
    assert_partition(result.masks, SHAPE)


def test_cap_without_leftover_keeps_all_slots_for_instances():
    halves = [box(0, 0, 40, 25), box(0, 25, 40, 50)]
    result = partition_masks(halves, SHAPE, min_area=1, max_instances=2)
    assert result.labels == [SEGMENT_LABEL, SEGMENT_LABEL]


def test_no_masks_or_cap_of_one_gives_the_whole_image():
    for masks, cap in (([], 5), ([box(0, 0, 10, 10)], 1)):
        result = partition_masks(masks, SHAPE, min_area=5, max_instances=cap)
        assert result.labels == [REST_LABEL]
        assert result.masks[0].all()


def test_instance_columns_round_trip_and_match_the_masks():
    result = partition_masks([box(2, 3, 12, 20), box(20, 0, 40, 50)], SHAPE, min_area=1, max_instances=10)
    columns = instance_columns(result)
    np.testing.assert_array_equal(decode_masks(columns["masks"]), np.stack(result.masks))
    assert columns["areas"] == [int(m.sum()) for m in result.masks] == mask_areas(columns["masks"])
    assert columns["bboxes"][1] == [3, 2, 17, 10]
    assert sum(columns["areas"]) == SHAPE[0] * SHAPE[1]
    assert all(isinstance(r["counts"], str) for r in columns["masks"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_area": -1, "max_instances": 3}, "segment.min_area"),
        ({"min_area": 1, "max_instances": 0}, "segment.max_instances"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        partition_masks([], SHAPE, **kwargs)


def test_mask_of_the_wrong_size_is_named():
    with pytest.raises(ValueError, match=r"mask 1 has shape \(4, 4\)"):
        partition_masks([box(0, 0, 3, 3), np.ones((4, 4), bool)], SHAPE, min_area=1, max_instances=3)
