"""Per-instance IQA scores for many images at once, in one of two modes.

``map`` (default): every full-reference metric with a map form (maps.py) computes its map once
per candidate against HR, all N candidates of an image in one batch (several images of one size
share a call up to ``chunk_pixels``), and pools it inside each instance mask (pooling.py).
Metrics without a map form are scored as in ``composite`` mode.

``composite``: each (candidate, instance) is a composite crop (candidate inside the mask, HR
outside) compared with the HR crop; the values of datasets built before map mode.

All crops of all candidates of all images handed in go through each metric in a few large
calls: crops are grouped by shape (crops.py makes the shapes few) and sent in chunks of about
``chunk_pixels`` pixels (at least one crop), which bounds memory whatever the crop size.
``chunk_pixels=1`` is the naive loop of one call per crop (the benchmark's baseline).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from schemas.scores import MAP, SCORE_MODES
from stages.scoring.crops import Window, fr_window, mask_bbox, nr_shape, resize, to_tensor
from stages.scoring.metrics import FR, Metric
from stages.scoring.pooling import MaskPooling


def check_mode(mode: str) -> str:
    if mode not in SCORE_MODES:
        raise ValueError(f"score.mode must be one of {list(SCORE_MODES)}, got '{mode}'")
    return mode


@dataclass
class ImageToScore:
    """One source image: its HR target, N candidates and M instance masks, all the same size."""

    image_id: str
    hr: np.ndarray  # (H, W, 3) uint8
    candidates: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (M, H, W) bool
    candidate_ids: list[str]

    def __post_init__(self) -> None:
        size = self.hr.shape[:2]
        if self.candidates.ndim != 4 or self.candidates.shape[1:3] != size or len(self.candidates) == 0:
            raise ValueError(
                f"image {self.image_id}: candidates have shape {self.candidates.shape}, expected "
                f"(N>0, {size[0]}, {size[1]}, 3) like the HR image"
            )
        if len(self.candidate_ids) != len(self.candidates):
            raise ValueError(
                f"image {self.image_id}: {len(self.candidate_ids)} candidate ids for {len(self.candidates)} images"
            )
        if self.masks.ndim != 3 or self.masks.shape[1:] != size:
            raise ValueError(
                f"image {self.image_id}: masks have shape {self.masks.shape}, expected (M, {size[0]}, {size[1]})"
            )


# (image index, instance index) -> metric name -> one value per candidate
Scores = dict[tuple[int, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class _Crop:
    image: int
    instance: int
    window: Window


class InstanceScorer:
    def __init__(
        self,
        metrics: Sequence[Metric],
        min_side: Mapping[str, int],
        padding: int,
        chunk_pixels: int,
        device: torch.device,
        mode: str = MAP,
    ) -> None:
        self.fr = [m for m in metrics if m.info.mode == FR]
        self.nr = [m for m in metrics if m.info.mode != FR]
        self.min_side = dict(min_side)
        self.padding = padding
        self.chunk_pixels = chunk_pixels
        self.device = device
        self.mode = check_mode(mode)

    def side_for(self, metric: Metric) -> int:
        return int(self.min_side.get(metric.info.name, self.min_side["default"]))

    def score(self, images: Sequence[ImageToScore], on_progress: Callable[[float], None] | None = None) -> Scores:
        """Every metric of every (candidate, instance). ``on_progress`` gets, after each metric
        call, the share of the whole work that call did (the shares add up to 1): a (candidate,
        metric) in map mode, a (candidate, instance, metric) crop otherwise."""
        scores: Scores = defaultdict(dict)
        mapped = [m for m in self.fr if self.mode == MAP and m.has_map]
        cropped = [m for m in self.fr if m not in mapped]
        candidates = sum(len(image.candidates) for image in images)
        crops = sum(len(image.candidates) * len(image.masks) for image in images)
        total = candidates * len(mapped) + crops * (len(cropped) + len(self.nr))

        def report(units: int) -> None:
            if on_progress is not None and total:
                on_progress(units / total)

        if mapped:
            self._score_maps(images, mapped, scores, report)
        if cropped:
            self._score_fr(images, cropped, scores, report)
        for metric in self.nr:
            self._score_nr(images, metric, scores, report)
        return dict(scores)

    def _check_sizes(self, images: Sequence[ImageToScore], metrics: Sequence[Metric]) -> int:
        """The largest minimum side of ``metrics``; an image smaller than it is an error."""
        min_side = max(self.side_for(m) for m in metrics)
        for image in images:
            height, width = image.hr.shape[:2]
            if min(height, width) < min_side:
                names = [m.info.name for m in metrics if self.side_for(m) > min(height, width)]
                raise ValueError(
                    f"image {image.image_id}: {height}x{width} is smaller than the {min_side} px "
                    f"that metric(s) {names} need (score.min_side)"
                )
        return min_side

    def _score_maps(
        self, images: Sequence[ImageToScore], metrics: Sequence[Metric], scores: Scores, report: Callable[[int], None]
    ) -> None:
        self._check_sizes(images, metrics)
        for image in images:
            empty = np.flatnonzero(~image.masks.reshape(len(image.masks), -1).any(axis=1))
            if empty.size:
                raise ValueError(f"image {image.image_id}: instance {empty[0]} has an empty mask")
        for group in self._same_size_groups(images):
            counts = [len(images[i].candidates) for i in group]
            dist = to_tensor(np.concatenate([images[i].candidates for i in group]), self.device)
            ref = to_tensor(np.stack([images[i].hr for i in group]), self.device)
            ref_index = torch.repeat_interleave(torch.arange(len(group)), torch.tensor(counts)).to(self.device)
            poolings = [MaskPooling(torch.from_numpy(images[i].masks).to(self.device)) for i in group]
            for metric in metrics:
                maps = metric.quality_maps(dist, ref, ref_index)
                start = 0
                for i, pooling, count in zip(group, poolings, counts):
                    values = pooling(maps.rows(start, start + count)).cpu().numpy()  # (M, N)
                    for m, per_candidate in enumerate(values):
                        scores[(i, m)][metric.info.name] = per_candidate
                    start += count
                report(sum(counts))

    def _same_size_groups(self, images: Sequence[ImageToScore]) -> list[list[int]]:
        """Indices of images of one size, in calls of at most ``chunk_pixels`` candidate pixels
        (at least one whole image: its N candidates always go together)."""
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            by_size[image.hr.shape[:2]].append(i)
        groups: list[list[int]] = []
        for size in sorted(by_size):
            group: list[int] = []
            pixels = 0
            for i in by_size[size]:
                image_pixels = len(images[i].candidates) * size[0] * size[1]
                if group and pixels + image_pixels > self.chunk_pixels:
                    groups.append(group)
                    group, pixels = [], 0
                group.append(i)
                pixels += image_pixels
            groups.append(group)
        return groups

    def _score_fr(
        self, images: Sequence[ImageToScore], metrics: Sequence[Metric], scores: Scores, report: Callable[[int], None]
    ) -> None:
        # One window per instance serves every FR metric, so it must suit the pickiest one.
        min_side = self._check_sizes(images, metrics)
        groups: dict[tuple[int, int], list[_Crop]] = defaultdict(list)
        for i, image in enumerate(images):
            height, width = image.hr.shape[:2]
            for m, mask in enumerate(image.masks):
                bbox = _bbox(image, m, mask)
                crop = _Crop(i, m, fr_window(bbox, self.padding, min_side, height, width))
                groups[crop.window.shape].append(crop)
        for shape in sorted(groups):
            crops = groups[shape]
            dist, ref, mask = _fr_arrays(images, crops)
            values = {m.info.name: self._run(m, shape, dist, ref, mask, report) for m in metrics}
            _scatter(values, crops, images, scores)

    def _score_nr(
        self, images: Sequence[ImageToScore], metric: Metric, scores: Scores, report: Callable[[int], None]
    ) -> None:
        groups: dict[tuple[int, int], list[tuple[_Crop, torch.Tensor]]] = defaultdict(list)
        for i, image in enumerate(images):
            for m, mask in enumerate(image.masks):
                bbox = _bbox(image, m, mask)
                rows, cols = bbox.slices()
                shape = nr_shape(bbox, self.side_for(metric))
                # The N candidates share the box, so they are resized together.
                crops = resize(to_tensor(image.candidates[:, rows, cols], self.device), shape)
                groups[shape].append((_Crop(i, m, bbox), crops))
        for shape in sorted(groups):
            members = groups[shape]
            dist = torch.cat([crops for _, crops in members])
            values = {metric.info.name: self._run(metric, shape, dist, None, None, report)}
            _scatter(values, [crop for crop, _ in members], images, scores)

    def _run(
        self,
        metric: Metric,
        shape: tuple[int, int],
        dist: np.ndarray | torch.Tensor,
        ref: np.ndarray | None,
        mask: np.ndarray | None,
        report: Callable[[int], None],
    ) -> np.ndarray:
        out = []
        step = max(1, self.chunk_pixels // (shape[0] * shape[1]))
        for start in range(0, len(dist), step):
            part = slice(start, start + step)
            out.append(
                metric(
                    _on(dist[part], self.device),
                    None if ref is None else _on(ref[part], self.device),
                    None if mask is None else torch.from_numpy(mask[part]).to(self.device),
                )
            )
            report(len(dist[part]))
        return torch.cat(out).numpy()


def _bbox(image: ImageToScore, index: int, mask: np.ndarray) -> Window:
    try:
        return mask_bbox(mask)
    except ValueError:
        raise ValueError(f"image {image.image_id}: instance {index} has an empty mask") from None


def _on(batch: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch if isinstance(batch, torch.Tensor) else to_tensor(batch, device)


def _fr_arrays(images: Sequence[ImageToScore], crops: Sequence[_Crop]) -> tuple[np.ndarray, ...]:
    """Composites (HR outside the mask, candidate inside), HR references and masks of the
    crops, candidate-major within each crop: rows crop0/cand0, crop0/cand1, ..."""
    dist, ref, mask = [], [], []
    for crop in crops:
        image = images[crop.image]
        rows, cols = crop.window.slices()
        hr = image.hr[rows, cols]
        inside = image.masks[crop.instance, rows, cols]
        count = len(image.candidates)
        dist.append(np.where(inside[None, :, :, None], image.candidates[:, rows, cols], hr[None]))
        ref.append(np.broadcast_to(hr, (count, *hr.shape)))
        mask.append(np.broadcast_to(inside[None, None], (count, 1, *inside.shape)))
    return np.concatenate(dist), np.concatenate(ref), np.concatenate(mask)


def _scatter(
    values: Mapping[str, np.ndarray], crops: Sequence[_Crop], images: Sequence[ImageToScore], scores: Scores
) -> None:
    """Split flat per-row values back to (image, instance) -> metric -> per-candidate arrays."""
    start = 0
    for crop in crops:
        count = len(images[crop.image].candidates)
        for name, flat in values.items():
            scores[(crop.image, crop.instance)][name] = flat[start : start + count]
        start += count
