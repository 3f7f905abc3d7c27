"""lq: one row per source image: the degraded LQ image, its HR target and how it was degraded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Value

from schemas.table import IMAGE, STATUSES, TableSpec, status_features

SCHEMA_VERSION = 2  # 2: degradation.pad and degradation.small_image

# One degradation round as drawn (Real-ESRGAN): blur kernel, resize, noise, JPEG.
# Unused parts are null (e.g. no sinc parameters for a Gaussian kernel; kernel_type null when
# the round does not blur). Sigmas in pixels, rotation and omega_c in radians, noise_level is
# the Gaussian sigma in 8-bit levels or the Poisson scale (stages/degradations/ has the meaning).
ROUND = {
    "applied": Value("bool"),
    "kernel_type": Value("string"),
    "kernel_size": Value("int32"),
    "sigma_x": Value("float32"),
    "sigma_y": Value("float32"),
    "rotation": Value("float32"),
    "beta": Value("float32"),
    "omega_c": Value("float32"),
    "resize_mode": Value("string"),
    "resize_scale": Value("float32"),
    "noise_kind": Value("string"),
    "noise_level": Value("float32"),
    "noise_gray": Value("bool"),
    # Seeds the noise field, so re-applying the record reproduces the LQ byte for byte.
    "noise_seed": Value("int64"),
    "jpeg_quality": Value("int32"),
}

DEGRADATION = {
    "preset": Value("string"),
    "scale": Value("int32"),
    # Top-left corner and side of the HR crop that was degraded (in the padded image); null when
    # the whole image was.
    "crop": {"x": Value("int32"), "y": Value("int32"), "size": Value("int32")},
    # Pixels of reflect padding (OpenCV BORDER_REFLECT_101) added at the right and bottom of the
    # HR before cropping; null when none was.
    "pad": {"right": Value("int32"), "bottom": Value("int32")},
    # degrade.small_images as applied to an image smaller than crop_size ("pad" or "whole");
    # null when the image was large enough (or nothing was cropped).
    "small_image": Value("string"),
    "round1": ROUND,
    "round2": ROUND,
    "final_sinc": Value("bool"),
    "final_omega_c": Value("float32"),
    "final_kernel_size": Value("int32"),
    "final_resize_mode": Value("string"),
    "final_jpeg_quality": Value("int32"),
    "jpeg_before_sinc": Value("bool"),
}


@dataclass
class LqRow:
    image_id: str
    lq: dict[str, Any] | None  # HF Image struct (PNG)
    hr: dict[str, Any] | None  # the HR target this LQ was made from (the crop when cropping)
    scale: int | None
    width: int | None  # LQ size
    height: int | None
    degradation: dict[str, Any] | None
    degradation_text: str | None
    status: str
    error: str | None = None


FEATURES = status_features(
    image_id=Value("string"),
    lq=IMAGE,
    hr=IMAGE,
    scale=Value("int32"),
    width=Value("int32"),
    height=Value("int32"),
    degradation=DEGRADATION,
    degradation_text=Value("string"),
)

SPEC = TableSpec(
    name="lq",
    version=SCHEMA_VERSION,
    features=FEATURES,
    row_type=LqRow,
    required=("image_id", "lq", "hr", "scale", "width", "height", "degradation", "degradation_text"),
    choices={"status": STATUSES},
)
