"""The dataset card (README.md): how the dataset was made, how to load it, where images came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

# Licences of the bundled demo photographs, as their packages document them (the docstrings of
# skimage.data.<name> and sklearn/datasets/images/README.txt). Keys are ingest's source_uri.
DEMO_PROVENANCE = {
    "demo:skimage/astronaut.png": "Eileen Collins, NASA Great Images database; public domain (NASA)",
    "demo:skimage/coffee.png": "Rachel Michetti; CC0",
    "demo:skimage/chelsea.png": "Stefan van der Walt; CC0",
    "demo:skimage/rocket.jpg": "SpaceX Photos on Flickr; released into the public domain by SpaceX",
    "demo:skimage/motorcycle_left.png": (
        "Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014), downsampled by scikit-image; "
        "no licence stated, cite the paper"
    ),
    "demo:sklearn/china.jpg": "danielbuechele on Flickr; CC BY 2.0 (attribution required)",
    "demo:sklearn/flower.jpg": "vultilion on Flickr; CC BY 2.0 (attribution required)",
    "demo:skimage/ihc.png": "Center for Microscopy And Molecular Imaging (CMMI); no known copyright restrictions",
    "demo:skimage/camera.png": "Lav Varshney; CC0",
    "demo:skimage/logo.png": "the scikit-image logo; scikit-image project (BSD-3-Clause)",
}
UNKNOWN_PROVENANCE = "supplied by whoever ran the pipeline; licence not recorded"
MAX_SOURCES_LISTED = 200  # a card stays readable; the run's hr table has them all


@dataclass
class CardFacts:
    """What the card reports; gathered by the emit stage."""

    name: str
    split_rows: Mapping[str, Mapping[str, int]]  # config -> split -> rows
    instances: Mapping[str, int]  # dspo instances by label source
    pairs_labels: Mapping[str, int]  # pairs rows by label (winner first / loser first / tie)
    judgements: Mapping[str, int]  # merge outcome counts
    judgement_rule: str
    degradations: Sequence[str]  # "preset xscale" of the LQ images
    backbones: Sequence[str]
    segmenters: Sequence[str]
    metrics: Sequence[str]
    score_modes: Sequence[str]  # score.mode of the scores rows: map and/or composite
    candidates_per_image: Sequence[int]
    failed: Mapping[str, int]  # table -> rows with status failed
    sources: Mapping[str, str]  # image_id -> source_uri
    dropped_images: int  # images whose every instance was dropped by people (both_bad / tie)
    config_yaml: str
    notes: Sequence[str] = field(default_factory=list)
    preferences: Mapping[str, str] = field(default_factory=dict)  # stages.pair.preference_facts
    warning: str | None = None  # the pair stage's warning, e.g. candidates that barely differ


def render_card(header: DatasetCardData, facts: CardFacts) -> str:
    """README.md text: YAML header (configs, features) and the markdown body."""
    return DatasetCard(f"---\n{header.to_yaml()}\n---\n\n{_body(facts)}").content


def _body(f: CardFacts) -> str:
    sections = [
        f"# {f.name}\n\nInstance-level preference pairs for diffusion super-resolution, built by the "
        "srprefs pipeline for DSPO (Direct Semantic Preference Optimization, arXiv 2504.15176): for each "
        "low-quality (LQ) image, N super-resolved candidates, instance masks shared by all candidates, "
        "and per instance which candidate is best and which is worst (by IQA metrics or by people).",
        "## Contents\n\n" + _table(
            ["config", "split", "rows"],
            [[c, s, n] for c, splits in f.split_rows.items() for s, n in splits.items()],
        ),
        "## How it was made\n\n" + _how_made(f),
        "## How strong the preferences are\n\n" + _strength(f),
        "## How to load\n\n" + _how_to_load(),
        "## Columns\n\n" + _columns(),
        "## Source images: provenance and licence\n\n" + _provenance(f.sources),
        "## Full pipeline config\n\n<details><summary>config.yaml</summary>\n\n```yaml\n"
        + f.config_yaml.strip()
        + "\n```\n\n</details>",
    ]
    return "\n\n".join(sections) + "\n"


def _how_made(f: CardFacts) -> str:
    per_image = sorted(set(f.candidates_per_image))
    lines = [
        f"* Degradation (HR -> LQ): {', '.join(f.degradations) or 'none recorded'}; each row's "
        "`degradation_text` describes its own draw",
        f"* Diffusion SR backbone(s): {', '.join(f.backbones) or 'none recorded'}",
        f"* Candidates per image: {', '.join(map(str, per_image)) or '-'}",
        f"* Segmenter(s): {', '.join(f.segmenters) or 'none recorded'}",
        f"* IQA metrics combined into the reward: {', '.join(f.metrics) or 'none recorded'}",
        f"* How full-reference metrics saw an instance (score.mode): {', '.join(f.score_modes) or 'not recorded'} "
        "(map: each metric's quality map of the whole candidate against HR, pooled inside the mask; "
        "composite: the candidate inside the mask and HR outside, cropped around the instance)",
        "* Instance weight: area of the instance / total area of the instances kept for the image.",
        "* Label sources (dspo instances): " + _counts(f.instances),
        "* pairs rows: " + _counts(f.pairs_labels),
        f"* Human judgements (rule: {f.judgement_rule}): " + _counts(f.judgements),
        f"* Images left without instances after people's decisions: {f.dropped_images}",
        "* Items that failed in the pipeline (rows with status `failed`): " + _counts(f.failed),
        "* Splits are assigned by a hash of `image_id`, so a source image is in exactly one split.",
    ]
    lines += [f"* {note}" for note in f.notes]
    return "\n".join(lines)


def _strength(f: CardFacts) -> str:
    if not f.preferences:
        return "The pair stage left no statistics (stats/pair.json) for this run."
    lines = [f"* {label}: {text}" for label, text in f.preferences.items()]
    if f.warning:
        lines.insert(0, f"**Warning: {f.warning}.**\n")
    return "\n".join(lines)


def _how_to_load() -> str:
    return """```python
import io
import numpy as np
from datasets import load_dataset
from PIL import Image
from pycocotools import mask as mask_utils

dspo = load_dataset("path/to/dataset")            # default config: one row per LQ image
pairs = load_dataset("path/to/dataset", "pairs")  # Pick-a-Pic layout: one row per preference

row = dspo["train"][0]
row["lq"], row["candidates"]                     # PIL images
m = row["masks"][0]                              # COCO RLE of instance 0
mask = mask_utils.decode({"size": m["size"], "counts": m["counts"].encode()}).astype(bool)
best = row["candidates"][row["win_index"][0]]    # preferred candidate for that instance

p = pairs["train"][0]
jpg_0 = Image.open(io.BytesIO(p["jpg_0"]))      # raw PNG bytes, as Diffusion-DPO trainers expect
```

`streaming=True` works too (Parquet row groups of about 100 rows)."""


def _columns() -> str:
    dspo = [
        ("image_id", "source image id (sha256 of its bytes, 16 hex)"),
        ("lq", "LQ input image"),
        ("hr", "HR target (absent when emitted with include_hr=false)"),
        ("scale", "SR factor"),
        ("candidates", "list of N super-resolved candidate images"),
        ("candidate_params", "how each candidate was sampled (seed, steps, guidance, strength, backbone, ...)"),
        ("masks", "per instance: COCO RLE mask at candidate size"),
        ("instance_index", "per instance: index in the pipeline's instance list"),
        ("pair_id", "per instance: id of the preference pair"),
        ("win_index / lose_index", "per instance: index into candidates of the preferred / rejected one"),
        ("area / weight", "per instance: area in pixels / area share (sums to 1 per row)"),
        ("margin", "per instance: calibrated IQA margin, the reward-weighted mean over metrics of "
                   "(win - lose) / visibility scale (1 = just visible, 0 = identical); negative when people "
                   "overturned the IQA"),
        ("deltas", "per instance: {name, value} lists, win - lose per metric in its own units "
                   "(dB for psnr), positive = the winner is better"),
        ("agreement", "per instance: weighted share of the metrics preferring the winner (ties count half)"),
        ("strengths", "per instance: Bradley-Terry strength of every candidate (log scale, mean 0)"),
        ("confident", "per instance: the IQA margin and agreement passed the pair stage's thresholds "
                      "(false only for pairs people decided)"),
        ("label_source", "per instance: iqa or human"),
        ("description", "per instance: what annotators wrote ('' when nothing)"),
        ("prompt / degradation_text", "text prompt used for sampling / description of the degradation"),
    ]
    pairs = [
        ("jpg_0 / jpg_1", "the two candidates as raw PNG bytes (order randomised per pair)"),
        ("label_0 / label_1", "1.0 / 0.0 when jpg_0 is preferred, 0.0 / 1.0 when jpg_1 is, 0.5 for a tie"),
        ("caption", "the annotators' description, else the prompt"),
        ("lq", "LQ input as raw PNG bytes"),
        ("mask", "COCO RLE of the instance the preference is about"),
        ("weight, margin, deltas, agreement, label_source, image_id, instance_id, pair_id", "as in dspo"),
    ]
    return (
        "`dspo` (default):\n\n"
        + _table(["column", "meaning"], dspo)
        + "\n\n`pairs`:\n\n"
        + _table(["column", "meaning"], pairs)
    )


def _provenance(sources: Mapping[str, str]) -> str:
    if not sources:
        return "No source images recorded."
    listed = sorted(sources.items())[:MAX_SOURCES_LISTED]
    rows = [[image_id, uri, DEMO_PROVENANCE.get(uri, UNKNOWN_PROVENANCE)] for image_id, uri in listed]
    text = _table(["image_id", "source", "provenance / licence"], rows)
    if len(sources) > len(listed):
        text += f"\n\n... and {len(sources) - len(listed)} more source images (see the run's `hr` table)."
    if any(uri in DEMO_PROVENANCE for uri in sources.values()):
        text += (
            "\n\nDemo images are bundled with scikit-image (`skimage.data`) and scikit-learn "
            "(`sklearn.datasets.load_sample_images`); each keeps the licence of its photograph above. "
            "CC BY images require attribution when redistributed."
        )
    return text


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])
