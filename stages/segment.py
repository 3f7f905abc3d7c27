"""segment: one instance map per source image, shared by all its candidates.

DSPO compares candidates instance by instance, so "instance m" must be the same pixels in every
candidate: each image is segmented once, on its HR target resized to the SR size (or, when
there is no HR or ``segment.source=candidate``, on a reference candidate), and the partition
(``stages.segmenters.postprocess``) is stored once per image as COCO RLE.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image

from common.images import decode_stored, encode_png
from common.overlay import render_overlay
from schemas.table import STATUS_OK, dumps_params
from stages.base import Batch, ItemError, RunContext, Stage, ok_rows
from stages.segmenters import build_segmenter
from stages.segmenters.base import Segmenter
from stages.segmenters.postprocess import instance_columns, partition_masks

PREVIEW_DIR = "previews/segment"


class SegmentStage(Stage):
    name: ClassVar[str] = "segment"
    input_tables: ClassVar[tuple[str, ...]] = ("candidates", "lq")
    output_table: ClassVar[str] = "instances"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.segmenter: Segmenter | None = None

    def setup(self) -> None:
        self.segmenter = build_segmenter(self.settings)

    def process(self, batch: Batch) -> pa.Table:
        hr_images = _hr_by_image(batch.get("lq"))
        rows = [self.segment_row(row, hr_images.get(row["image_id"])) for row in batch["candidates"].to_pylist()]
        return self.output_spec.to_table(rows)

    def segment_row(self, candidates_row: Mapping[str, Any], hr: Mapping[str, Any] | None) -> dict[str, Any]:
        """The instances row of one image (``hr``: its HF image struct from the lq table, if any)."""
        if self.segmenter is None:
            raise RuntimeError("SegmentStage.setup() must run before process()")
        image, segmented_on = self.segmentation_image(candidates_row, hr)
        masks = self.segmenter.segment(image)
        partition = partition_masks(
            masks, image.shape[:2], int(self.settings.min_area), int(self.settings.max_instances)
        )
        params = {
            **self.segmenter.params(),
            "min_area": int(self.settings.min_area),
            "max_instances": int(self.settings.max_instances),
            # Per row: "hr" or "candidate:<candidate_id>" (the fallback when an image has no HR).
            "segmented_on": segmented_on,
        }
        return {
            "image_id": candidates_row["image_id"],
            "width": image.shape[1],
            "height": image.shape[0],
            **instance_columns(partition),
            "segmenter": self.segmenter.name,
            "segmenter_params": dumps_params(params),
            "status": STATUS_OK,
            "error": None,
        }

    def segmentation_image(
        self, candidates_row: Mapping[str, Any], hr: Mapping[str, Any] | None
    ) -> tuple[np.ndarray, str]:
        """The [H, W, 3] uint8 image to segment, at the SR size, and what it is ("hr" or
        "candidate:<candidate_id>")."""
        image_id = candidates_row["image_id"]
        size = (int(candidates_row["width"]), int(candidates_row["height"]))
        if self.settings.source == "hr" and hr is not None and hr.get("bytes"):
            image = _decode(hr["bytes"], f"image {image_id}: HR image (lq table, column 'hr')")
            if image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            return np.asarray(image), "hr"
        candidates = candidates_row["candidates"] or []
        index = int(self.settings.reference_candidate)
        if not -len(candidates) <= index < len(candidates):
            raise ItemError(
                f"image {image_id}: segment.reference_candidate={index} but the image has "
                f"{len(candidates)} candidate(s)"
            )
        reference = candidates[index]
        image = _decode((reference.get("image") or {}).get("bytes"), f"image {image_id}: candidate {index}")
        if image.size != size:
            raise ItemError(
                f"image {image_id}: candidate {index} is {image.size[0]}x{image.size[1]}, the candidates "
                f"table says {size[0]}x{size[1]}"
            )
        return np.asarray(image), f"candidate:{reference['candidate_id']}"

    def finalize(self, run: RunContext) -> dict[str, Any]:
        """With ``segment.previews=true``: one overlay PNG per image under previews/segment/."""
        if not self.settings.previews:
            return {}
        table = ok_rows(run.read_table(self.output_table))
        wanted = set(table.column("image_id").to_pylist())
        hr_images = _hr_by_image(run.read_table("lq"), wanted)
        candidates = {
            row["image_id"]: row
            for row in ok_rows(run.read_table("candidates")).to_pylist()
            if row["image_id"] in wanted
        }
        written = 0
        for row in table.to_pylist():
            image, _ = self.segmentation_image(candidates[row["image_id"]], hr_images.get(row["image_id"]))
            overlay = render_overlay(image, row["masks"])
            run.write_bytes(f"{PREVIEW_DIR}/{row['image_id']}.png", encode_png(overlay))
            written += 1
        return {"previews": written}


def _hr_by_image(lq: pa.Table | None, wanted: set[str] | None = None) -> dict[str, Mapping[str, Any]]:
    """image_id -> HR image struct, from the ok rows of an lq table that has one."""
    if lq is None or lq.num_rows == 0:
        return {}
    lq = ok_rows(lq).select(["image_id", "hr"])
    return {
        row["image_id"]: row["hr"]
        for row in lq.to_pylist()
        if row["hr"] is not None and (wanted is None or row["image_id"] in wanted)
    }


def _decode(data: bytes | None, what: str) -> Image.Image:
    return decode_stored(data, what)

