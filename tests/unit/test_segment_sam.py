import json

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from stages.segment import SegmentStage
from stages.segmenters import build_segmenter
from stages.segmenters.postprocess import partition_masks
from stages.segmenters.sam import MissingCheckpointError, SamOptions, SamSegmenter, load_sam
from tests.segment_fixtures import assert_partition, demo_crops, input_tables, tiny_sam


def options(**change):
    # Random weights predict meaningless IoU and stability scores: keep every mask.
    values = {**load_config().segment.sam, "checkpoint": None, "points_per_side": 2, "points_per_batch": 4,
              "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "device": "cpu"}
    return SamOptions(**{**values, **change})


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(demo_crops(size=256)[1][1][::2, ::2])  # 128x128 coffee


def check_sam_output(segmenter, image):
    masks = segmenter.segment(image)
    assert masks, "the automatic mask generator returned no masks"
    assert all(m.shape == image.shape[:2] and m.dtype == bool for m in masks)
    result = partition_masks(masks, image.shape[:2], min_area=16, max_instances=8)
    assert_partition(result.masks, image.shape[:2])
    return masks


def test_sam_path_on_a_tiny_random_model_gives_a_partition(image):
    segmenter = SamSegmenter(tiny_sam(), options())
    masks = check_sam_output(segmenter, image)
    again = segmenter.segment(image)
    np.testing.assert_array_equal(np.stack(masks), np.stack(again))  # deterministic


@pytest.mark.slow
def test_sam_path_on_a_random_vit_b_gives_a_partition(image):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    check_sam_output(SamSegmenter(sam_model_registry["vit_b"](checkpoint=None), options()), image[:64, :64])


def test_params_record_what_changes_the_masks_but_not_the_device():
    recorded = SamSegmenter(tiny_sam(), options(), weights_sha256="abc").params()
    assert recorded["weights_sha256"] == "abc" and recorded["points_per_side"] == 2
    assert "device" not in recorded and "points_per_batch" not in recorded


def test_missing_checkpoint_names_the_file_and_the_config_key(tmp_path):
    missing = tmp_path / "sam_vit_b.pth"
    cfg = load_config(["segment.segmenter=sam", f"segment.sam.checkpoint={missing}"])
    with pytest.raises(MissingCheckpointError) as caught:
        SegmentStage(cfg).setup()
    message = str(caught.value)
    assert str(missing) in message and "segment.sam.checkpoint" in message
    with pytest.raises(MissingCheckpointError, match="segment.sam.checkpoint"):
        load_sam("vit_b", None)


def test_default_checkpoint_path_is_named_when_absent():
    with pytest.raises(MissingCheckpointError, match=r"models/sam/sam_vit_b_01ec64.pth.*segment.sam.checkpoint"):
        build_segmenter(load_config(["segment.segmenter=sam"]).segment)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"cannot be loaded as segment.sam.model_type=vit_b"):
        load_sam("vit_b", str(path))


def test_checkpoint_is_loaded_and_hashed(tmp_path, image, monkeypatch):
    import segment_anything

    model = tiny_sam()
    path = tmp_path / "tiny.pth"
    # Build the tiny architecture where the registry would build vit_b, then load our file.
    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam())
    with torch.no_grad():  # differ from a fresh tiny_sam(), so loading is visible
        for p in model.parameters():
            p.add_(0.01)
    torch.save(model.state_dict(), path)
    loaded, digest = load_sam("vit_b", str(path))
    assert len(digest) == 16
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name

    cfg = load_config(["segment.segmenter=sam", f"segment.sam.checkpoint={path}", "segment.sam.points_per_side=2",
                       "segment.sam.pred_iou_thresh=0", "segment.sam.stability_score_thresh=0",
                       "segment.min_area=16", "segment.sam.device=cpu"])
    stage = SegmentStage(cfg)
    stage.setup()
    lq, candidates = input_tables({"0" * 16: image}, n_candidates=2, sr_size=128)
    row = stage.process({"candidates": candidates, "lq": lq}).to_pylist()[0]
    assert row["segmenter"] == "sam"
    assert json.loads(row["segmenter_params"])["weights_sha256"] == digest


@pytest.mark.parametrize(
    "change, message",
    [({"model_type": "vit_x"}, "segment.sam.model_type='vit_x'"), ({"points_per_side": 0}, "segment.sam.points_per_side")],
)
def test_bad_options_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        options(**change)

