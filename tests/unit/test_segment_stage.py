import io
import json

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from common.masks import decode_masks
from pipeline.config import load_config
from schemas import instances
from stages.segment import SegmentStage
from stages.segmenters import build_segmenter
from stages.segmenters.postprocess import partition_masks
from tests.segment_fixtures import assert_partition, demo_crops, input_tables


@pytest.fixture(scope="module")
def hr_images():
    return {f"{k:016x}": image for k, (_, image) in enumerate(demo_crops()[:2])}


def make_stage(*overrides):
    stage = SegmentStage(load_config(list(overrides)))
    stage.setup()
    return stage


def expected_masks(image, settings):
    masks = build_segmenter(settings).segment(image)
    return np.stack(partition_masks(masks, image.shape[:2], settings.min_area, settings.max_instances).masks)


def run(stage, lq, candidates):
    out = stage.process({"candidates": candidates, "lq": lq})
    instances.SPEC.validate(out)
    return {row["image_id"]: row for row in out.to_pylist()}


def test_one_mask_set_per_image_shared_by_any_number_of_candidates(hr_images):
    stage = make_stage()
    results = {}
    for n in (1, 2, 4):
        lq, candidates = input_tables(hr_images, n_candidates=n, sr_size=256)
        rows = run(stage, lq, candidates)
        assert sorted(rows) == sorted(hr_images)  # one row per image, whatever N
        results[n] = rows
    for image_id, hr in hr_images.items():
        reference = expected_masks(hr, stage.settings)
        for n, rows in results.items():
            masks = decode_masks(rows[image_id]["masks"])
            np.testing.assert_array_equal(masks, reference, err_msg=f"N={n}")


def test_row_columns_describe_the_partition(hr_images):
    stage = make_stage()
    lq, candidates = input_tables(hr_images, n_candidates=2, sr_size=256)
    for row in run(stage, lq, candidates).values():
        masks = decode_masks(row["masks"])
        assert_partition(masks, (256, 256))
        assert (row["width"], row["height"]) == (256, 256)
        assert row["areas"] == masks.sum(axis=(1, 2)).tolist()
        assert sum(row["areas"]) == 256 * 256
        assert len(row["bboxes"]) == len(row["labels"]) == len(row["masks"])
        assert row["segmenter"] == "classical" and row["status"] == "ok"
        params = json.loads(row["segmenter_params"])
        assert params == {**dict(stage.settings.classical), "min_area": 64, "max_instances": 32,
                          "segmented_on": "hr"}
        assert row["segmenter_params"] == json.dumps(params, sort_keys=True)


def test_hr_is_resized_to_the_sr_size(hr_images):
    small = {k: np.asarray(Image.fromarray(v).resize((128, 128), Image.Resampling.BOX)) for k, v in hr_images.items()}
    stage = make_stage()
    lq, candidates = input_tables(small, n_candidates=2, sr_size=256)
    for image_id, row in run(stage, lq, candidates).items():
        resized = np.asarray(Image.fromarray(small[image_id]).resize((256, 256), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal(decode_masks(row["masks"]), expected_masks(resized, stage.settings))


def candidate_image(candidates: pa.Table, row: int, index: int) -> np.ndarray:
    data = candidates.column("candidates")[row].as_py()[index]["image"]["bytes"]
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize(
    "overrides, with_hr, index",
    [([], False, 0), (["segment.reference_candidate=2"], False, 2), (["segment.source=candidate"], True, 0)],
)
def test_reference_candidate_when_there_is_no_hr_or_when_asked(hr_images, overrides, with_hr, index):
    stage = make_stage(*overrides)
    lq, candidates = input_tables(hr_images, n_candidates=3, sr_size=256, with_hr=with_hr)
    rows = run(stage, lq, candidates)
    for position, image_id in enumerate(candidates.column("image_id").to_pylist()):
        params = json.loads(rows[image_id]["segmenter_params"])
        assert params["segmented_on"] == f"candidate:{image_id}-c{index}"
        reference = expected_masks(candidate_image(candidates, position, index), stage.settings)
        np.testing.assert_array_equal(decode_masks(rows[image_id]["masks"]), reference)


def test_missing_reference_candidate_is_a_clear_error(hr_images):
    stage = make_stage("segment.reference_candidate=4")
    lq, candidates = input_tables(hr_images, n_candidates=2, sr_size=256, with_hr=False)
    with pytest.raises(ValueError, match=r"segment.reference_candidate=4 but the image has 2 candidate"):
        stage.process({"candidates": candidates, "lq": lq})


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="segment.source=lq: expected one of hr, candidate"):
        load_config(["segment.source=lq"])


class MemoryRun:
    """The RunContext a stage's finalize sees, over in-memory tables and files."""

    def __init__(self, tables):
        self.tables, self.files = tables, {}

    def read_table(self, name):
        return self.tables[name]

    def write_bytes(self, relpath, data):
        self.files[relpath] = data
        return relpath

    def local_path(self, relpath):
        raise AssertionError("not used")


def test_previews_are_one_overlay_png_per_image(hr_images):
    stage = make_stage("segment.previews=true")
    lq, candidates = input_tables(hr_images, n_candidates=2, sr_size=256)
    out = stage.process({"candidates": candidates, "lq": lq})
    run_context = MemoryRun({"lq": lq, "candidates": candidates, "instances": out})
    assert stage.finalize(run_context) == {"previews": 2}
    assert sorted(run_context.files) == sorted(f"previews/segment/{i}.png" for i in hr_images)
    for image_id, hr in hr_images.items():
        preview = np.asarray(Image.open(io.BytesIO(run_context.files[f"previews/segment/{image_id}.png"])))
        assert preview.shape == (256, 256, 3)
        assert not np.array_equal(preview, hr)

    quiet = make_stage()
    assert quiet.finalize(MemoryRun({})) == {}
