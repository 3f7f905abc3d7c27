"""degrade: HR images -> LQ inputs by the Real-ESRGAN second-order degradation model.

Each image's parameters are drawn from ``rng_for(seed, "degrade", image_id)`` and recorded in
full (``degradation``), so the LQ is reproducible from its row alone; images of the same size
are degraded together (stages/degradations/apply.py). The row keeps the HR target (the crop
when cropping) beside the LQ, so later stages need not read the hr table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from common.images import decode_stored_array, encode_png
from common.seeds import rng_for
from schemas import lq as lq_schema
from schemas.table import STATUS_OK, image_struct
from stages.base import Batch, ItemError, Stage
from stages.degradations import apply_degradation, check_settings, describe, draw_params, hr_target, to_uint8


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)


def _to_png(image: torch.Tensor) -> bytes:
    return encode_png(Image.fromarray(to_uint8(image).permute(1, 2, 0).numpy()))


class DegradeStage(Stage):
    name = "degrade"
    input_tables = ("hr",)
    output_table = "lq"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        check_settings(self.settings)  # bad settings fail the run at once, not every image

    def _prepare(self, image_id: str, png: bytes) -> tuple[dict[str, Any], np.ndarray]:
        """Draw the parameters and cut the HR target [H, W, 3] of one image."""
        try:
            image = decode_stored_array(png, "hr image")
            height, width = image.shape[:2]
            params = draw_params(self.settings, rng_for(self.seed, self.name, image_id), (width, height))
        except (ValueError, OSError) as err:
            raise ItemError(f"image {image_id}: {err}") from None
        return params, hr_target(image, params)

    def process(self, batch: Batch) -> pa.Table:
        hr = batch["hr"]
        image_ids = hr.column("image_id").to_pylist()
        prepared = [self._prepare(i, s["bytes"]) for i, s in zip(image_ids, hr.column("image").to_pylist())]
        # One apply_degradation call per HR target size (all of them when cropping).
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, (_, target) in enumerate(prepared):
            groups[target.shape[:2]].append(index)
        lq: dict[int, torch.Tensor] = {}
        for members in groups.values():
            targets = torch.stack([_to_tensor(prepared[i][1]) for i in members])
            degraded = apply_degradation(targets, [prepared[i][0] for i in members])
            lq.update(zip(members, degraded))
        rows = []
        for index, (image_id, (params, target)) in enumerate(zip(image_ids, prepared)):
            rows.append(
                lq_schema.LqRow(
                    image_id=image_id,
                    lq=image_struct(_to_png(lq[index])),
                    hr=image_struct(encode_png(Image.fromarray(target))),
                    scale=params["scale"],
                    width=lq[index].shape[2],
                    height=lq[index].shape[1],
                    degradation=params,
                    degradation_text=describe(params),
                    status=STATUS_OK,
                )
            )
        return lq_schema.SPEC.to_table(rows)
