"""The offline default segmenter: Felzenszwalb-Huttenlocher over-segmentation (scikit-image),
then adjacent regions merged by mean colour (scikit-learn agglomerative clustering restricted to
the region adjacency graph), giving tens of object-like segments rather than hundreds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import sparse
from skimage.color import rgb2lab
from skimage.segmentation import felzenszwalb
from sklearn.cluster import AgglomerativeClustering

from stages.segmenters.base import Segmenter, check_image


@dataclass(frozen=True)
class ClassicalSegmenter(Segmenter):
    """Settings are those of the ``segment.classical`` config section (see its YAML)."""

    name: ClassVar[str] = "classical"

    scale: float  # Felzenszwalb: larger -> larger regions
    sigma: float  # Felzenszwalb: Gaussian pre-smoothing
    min_size: int  # Felzenszwalb: smallest region, in pixels
    merge_threshold: float  # merge adjacent groups whose mean CIELAB colours differ by less
    min_segments: int  # the merge is clamped to this many segments...
    max_segments: int  # ...and at most this many

    def __post_init__(self) -> None:
        if self.min_segments < 1:
            raise ValueError(f"segment.classical.min_segments must be >= 1, got {self.min_segments}")
        if self.max_segments < self.min_segments:
            raise ValueError(
                f"segment.classical.max_segments ({self.max_segments}) is below "
                f"segment.classical.min_segments ({self.min_segments})"
            )

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def segment(self, image: np.ndarray) -> list[np.ndarray]:
        image = check_image(image)
        labels = self.label_image(image)
        return [labels == k for k in range(int(labels.max()) + 1)]

    def label_image(self, image: np.ndarray) -> np.ndarray:
        """[H, W] int array of segment indices 0..K-1, min_segments <= K <= max_segments
        (fewer only when the over-segmentation itself has fewer regions)."""
        regions = felzenszwalb(image, scale=self.scale, sigma=self.sigma, min_size=self.min_size)
        count = int(regions.max()) + 1
        if count == 1:
            return regions
        colours = _mean_per_region(rgb2lab(image).reshape(-1, 3), regions.ravel(), count)
        adjacency = _region_adjacency(regions, count)

        def merge(**how: Any) -> AgglomerativeClustering:
            # Average linkage on mean colours; the connectivity keeps every segment contiguous.
            model = AgglomerativeClustering(connectivity=adjacency, linkage="average", compute_full_tree=True, **how)
            return model.fit(colours)

        model = merge(n_clusters=None, distance_threshold=self.merge_threshold)
        if not self.min_segments <= model.n_clusters_ <= self.max_segments:
            target = int(np.clip(model.n_clusters_, self.min_segments, self.max_segments))
            model = merge(n_clusters=min(target, count))
        return model.labels_[regions]


def _mean_per_region(values: np.ndarray, regions: np.ndarray, count: int) -> np.ndarray:
    sizes = np.bincount(regions, minlength=count)
    sums = np.stack([np.bincount(regions, values[:, c], minlength=count) for c in range(values.shape[1])], 1)
    return sums / sizes[:, None]


def _region_adjacency(regions: np.ndarray, count: int) -> sparse.csr_matrix:
    """Symmetric region adjacency (4-neighbourhood) as a sparse 0/1 matrix."""
    pairs = [
        (regions[:, :-1].ravel(), regions[:, 1:].ravel()),
        (regions[:-1, :].ravel(), regions[1:, :].ravel()),
    ]
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    differ = a != b
    edges = sparse.coo_matrix((np.ones(int(differ.sum())), (a[differ], b[differ])), shape=(count, count))
    return ((edges + edges.T) > 0).astype(np.float64).tocsr()
