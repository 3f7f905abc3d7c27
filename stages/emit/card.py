"""The dataset card (README.md): how the dataset was made, how to load it, where images came from,
and the Hub metadata (licences per source, task, tags, size, annotators, paper), checked offline
against the values the Hub accepts; plus LICENSE.md, the licence of every source image."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from schemas.dataset import CONFIG_DSPO, CONFIG_PAIRS, CONFIG_PAIRS_INSTANCES

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
# The same photographs' licences as Hub licence ids ("other": public domain or no known
# restrictions, which the Hub has no id for; "unknown": none stated).
DEMO_LICENSES = {
    "demo:skimage/astronaut.png": "other",
    "demo:skimage/coffee.png": "cc0-1.0",
    "demo:skimage/chelsea.png": "cc0-1.0",
    "demo:skimage/rocket.jpg": "other",
    "demo:skimage/motorcycle_left.png": "unknown",
    "demo:sklearn/china.jpg": "cc-by-2.0",
    "demo:sklearn/flower.jpg": "cc-by-2.0",
    "demo:skimage/ihc.png": "other",
    "demo:skimage/camera.png": "cc0-1.0",
    "demo:skimage/logo.png": "bsd-3-clause",
}
UNKNOWN_PROVENANCE = "supplied by whoever ran the pipeline; licence not recorded"
LICENSE_FILE = "LICENSE.md"
ARXIV = "https://arxiv.org/abs/2504.15176"
CITATION = """@article{cai2025dspo,
  title   = {DSPO: Direct Semantic Preference Optimization for Real-World Image Super-Resolution},
  author  = {Cai, Miaomiao and Li, Simiao and Li, Wei and Huang, Xudong and Chen, Hanting and Hu, Jie and Wang, Yunhe},
  journal = {arXiv preprint arXiv:2504.15176},
  year    = {2025}
}"""
TASK_CATEGORIES = ["image-to-image"]
TAGS = ["super-resolution", "preference", "dpo", "dspo", "diffusion", "image-quality-assessment", "srprefs"]
# Hub task categories this card may declare (a subset of the Hub's list; super-resolution is
# image-to-image there).
KNOWN_TASK_CATEGORIES = {"image-to-image", "text-to-image", "image-classification", "image-segmentation"}
MAX_SOURCES_LISTED = 200  # a card stays readable; the run's hr table has them all


@dataclass
class CardFacts:
    """What the card reports; gathered by the emit stage."""

    name: str
    split_rows: Mapping[str, Mapping[str, int]]  # config -> split -> rows
    instances: Mapping[str, int]  # dspo instances by label source
    pairs_labels: Mapping[str, int]  # pairs_instances rows by label (winner first / loser first / tie)
    judgements: Mapping[str, int]  # merge outcome counts
    judgement_rule: str
    degradations: Sequence[str]  # "preset xscale" of the LQ images
    backbones: Sequence[str]
    segmenters: Sequence[str]
    metrics: Sequence[str]
    score_modes: Sequence[str]  # score.mode of the scores rows: map and/or composite
    candidates_per_image: Sequence[int]
    failed: Mapping[str, int]  # table -> items that failed first in its stage
    sources: Mapping[str, str]  # image_id -> source_uri
    dropped_images: int  # images whose every instance was dropped by people (both_bad / tie)
    config_yaml: str
    notes: Sequence[str] = field(default_factory=list)
    preferences: Mapping[str, str] = field(default_factory=dict)  # stages.pair.preference_facts
    warning: str | None = None  # the pair stage's warning, e.g. candidates that barely differ
    no_whole_image_preference: int = 0  # published images whose candidates' whole-image scores all tie
    crop_conflicts: int = 0  # pairs_instances image pairs (same crop, same candidates) labelled both ways
    warnings: Sequence[str] = field(default_factory=list)  # what a reader must know first (empty splits...)


class CardMetadataError(ValueError):
    """The card's YAML header would not pass the Hub's checks; the message names the field."""


def render_card(header: DatasetCardData, facts: CardFacts) -> str:
    """README.md text: YAML header (configs, features, Hub metadata) and the markdown body."""
    return DatasetCard(f"---\n{header.to_yaml()}\n---\n\n{_body(facts)}").content


def hub_metadata(
    sources: Mapping[str, str], examples: int, human_labels: bool, configured_license: str
) -> dict[str, Any]:
    """The card's Hub fields. The licence is the configured one, unless it is ``other`` (the
    default): then each source's licence, with ``LICENSE.md`` listing which image has which."""
    licenses = sorted({DEMO_LICENSES.get(uri, "unknown") for uri in sources.values()}) or ["unknown"]
    fields: dict[str, Any] = {"license": configured_license}
    if configured_license == "other":
        if len(licenses) == 1 and licenses[0] != "other":
            fields["license"] = licenses[0]  # one known licence, or "unknown" for all
        else:
            fields["license"] = sorted(set(licenses) | {"other"}) if len(licenses) > 1 else "other"
            fields["license_name"] = "per-source-licences"
            fields["license_link"] = LICENSE_FILE
    return {
        **fields,
        "task_categories": TASK_CATEGORIES,
        "tags": TAGS,
        "size_categories": [size_category(examples)],
        "annotations_creators": ["machine-generated", *(["expert-generated"] if human_labels else [])],
        "language": ["en"],  # the prompts and people's descriptions
        "source_datasets": ["original"],
    }


def size_category(examples: int) -> str:
    """The Hub's size bucket for ``examples`` rows of the default config."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if examples < limit:
            return name
    return "1B<n<10B"


def _allowed(name: str) -> dict[str, list[str]] | list[str]:
    """A list of accepted metadata values that ``datasets`` ships (the Hub's own lists)."""
    return json.loads(resources.files("datasets.utils.resources").joinpath(name).read_text(encoding="utf-8"))


def validate_card(text: str) -> DatasetCard:
    """Parse README.md as the Hub does and check its metadata offline: configs and dataset_info
    parse, licence ``other`` comes with ``license_name`` and ``license_link``, task categories, size
    categories and annotation creators are values the Hub knows. Raises CardMetadataError."""
    try:
        card = DatasetCard(text, ignore_metadata_errors=False)
        data = card.data.to_dict()
        MetadataConfigs.from_dataset_card_data(data)
        DatasetInfosDict.from_dataset_card_data(data)
    except (ValueError, TypeError, KeyError) as err:
        raise CardMetadataError(f"dataset card: {err}") from None
    problems = []
    licenses = data.get("license")
    licenses = [licenses] if isinstance(licenses, str) else licenses or []
    if not licenses:
        problems.append("no license")
    if "other" in licenses and not (data.get("license_name") and data.get("license_link")):
        problems.append("license 'other' needs license_name and license_link")
    for key, allowed in (
        ("task_categories", KNOWN_TASK_CATEGORIES),
        ("size_categories", _allowed("size_categories.json")),
        ("annotations_creators", _allowed("creators.json")["annotations"]),
    ):
        values = data.get(key) or []
        if not values:
            problems.append(f"no {key}")
        problems += [f"{key}: {value!r} is not one of {sorted(allowed)}" for value in values if value not in allowed]
    if not data.get("tags"):
        problems.append("no tags")
    if problems:
        raise CardMetadataError("dataset card metadata: " + "; ".join(problems))
    return card


def license_text(sources: Mapping[str, str]) -> str:
    """LICENSE.md: the dataset mixes source images under different licences; each keeps its own."""
    return (
        "# Licences\n\nThis dataset is derived from source images under different licences; every image "
        "derived from a source (its LQ, HR and candidates, and their crops) keeps that source's licence. "
        "The candidates and labels were machine-generated by the srprefs pipeline.\n\n" + _provenance(sources) + "\n"
    )


def _body(f: CardFacts) -> str:
    warnings = "".join(f"> **Warning:** {w}\n>\n" for w in f.warnings)
    sections = [
        f"# {f.name}\n\n{warnings}Instance-level preference pairs for diffusion super-resolution, built by the "
        f"srprefs pipeline for DSPO (Direct Semantic Preference Optimization, [arXiv 2504.15176]({ARXIV})): for each "
        "low-quality (LQ) image, N super-resolved candidates, instance masks shared by all candidates, "
        "and per instance which candidate is best and which is worst (by IQA metrics or by people).",
        "## Contents\n\n" + _table(
            ["config", "split", "rows"],
            [[c, s, n] for c, splits in f.split_rows.items() for s, n in splits.items()],
        ) + "\n\n" + _configs_text(),
        "## How it was made\n\n" + _how_made(f),
        "## How strong the preferences are\n\n" + _strength(f),
        "## How to load\n\n" + _how_to_load(),
        "## Columns\n\n" + _columns(),
        "## Source images: provenance and licence\n\n" + _provenance(f.sources),
        "## Citation\n\nThe method this dataset is made for:\n\n```bibtex\n" + CITATION + "\n```",
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
        "* Instance weights: `weight` = area of the instance / total area of the instances kept for the "
        "image (the DSPO weight w_m, sums to 1 per image); `area_share` = area of the instance / pixels of the "
        "whole image, so a consumer can tell a row whose instances cover 5% of the image from one whose "
        "instances cover all of it.",
        "* Label sources (dspo instances): " + _counts(f.instances),
        f"* pairs: images left out because their candidates' whole-image scores tie: {f.no_whole_image_preference}",
        "* pairs_instances rows: " + _counts(f.pairs_labels)
        + f"; crop pairs labelled both ways (instances sharing a crop box, told apart only by `mask`): "
        f"{f.crop_conflicts}",
        f"* Human judgements (rule: {f.judgement_rule}): " + _counts(f.judgements),
        f"* Images left without instances after people's decisions: {f.dropped_images}",
        "* Items that failed in the pipeline, by the table of the stage where they failed first: " + _counts(f.failed),
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
pairs = load_dataset("path/to/dataset", "pairs")  # Pick-a-Pic layout: one row per image
crops = load_dataset("path/to/dataset", "pairs_instances")  # one row per instance preference

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
        ("area / weight", "per instance: area in pixels / area over the kept instances' area (sums to 1 per row)"),
        ("area_share", "per instance: area over the whole image's pixels"),
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
        ("jpg_0 / jpg_1", "the whole-image winner and loser as raw PNG bytes (order drawn per row)"),
        ("label_0 / label_1", "1.0 / 0.0 when jpg_0 is preferred, 0.0 / 1.0 when jpg_1 is"),
        ("caption", "the annotators' descriptions, else the prompt (the trainer's text condition)"),
        ("lq", "LQ input as raw PNG bytes"),
        ("score_0 / score_1", "area-weighted net instance wins of each image, in [-1, 1]"),
        ("instances", "the instance preferences the whole-image rule weighed"),
        ("label_source", "iqa, human, or mixed (of those instances)"),
        ("candidate_id_0 / candidate_id_1, image_id, pair_id", "which candidates and image; pair id"),
    ]
    crops = [
        ("jpg_0 / jpg_1", "the two candidates cut to the instance's box, raw PNG bytes (order drawn per row)"),
        ("label_0 / label_1", "1.0 / 0.0 when jpg_0 is preferred, 0.0 / 1.0 when jpg_1 is, 0.5 for a tie"),
        ("caption", "the annotators' description of this instance, else the prompt"),
        ("lq", "the LQ input cut to the same box (box / scale), raw PNG bytes"),
        ("mask", "COCO RLE of the instance inside the box"),
        ("box", "[x, y, w, h] of the box in candidate pixels"),
        ("weight, area_share, margin, deltas, agreement, label_source, image_id, instance_id, pair_id",
         "as in dspo"),
    ]
    return (
        f"`{CONFIG_DSPO}` (default):\n\n"
        + _table(["column", "meaning"], dspo)
        + f"\n\n`{CONFIG_PAIRS}`:\n\n"
        + _table(["column", "meaning"], pairs)
        + f"\n\n`{CONFIG_PAIRS_INSTANCES}`:\n\n"
        + _table(["column", "meaning"], crops)
    )


def _configs_text() -> str:
    return f"""* `{CONFIG_DSPO}` (default): one row per LQ image with all N candidates, the instance masks and per
  instance the winner, loser, weights and labels. For DSPO (`dspo-train`).
* `{CONFIG_PAIRS}`: one row per image in the Pick-a-Pic layout of Diffusion-DPO trainers (`jpg_0`, `jpg_1`,
  `label_0`, `caption`), the image's whole-image winner against its whole-image loser: the candidates'
  area-weighted net instance wins decide, the rule of `dspo-train --level image`. Safe for a trainer that
  ignores masks: the same two images never appear twice, so never with opposite labels. Images whose
  candidates tie are left out.
* `{CONFIG_PAIRS_INSTANCES}`: one row per instance preference in the same layout, the images cut to the
  instance's box (on a grid of 8 LQ pixels), with the instance's mask inside the box. Ties (people's) are
  labelled 0.5, as in Pick-a-Pic. Train on it with the mask: two small instances can share a crop box,
  and then only the mask tells their rows apart (the card counts such rows below).

The `jpg_*` columns hold **PNG** bytes despite their Pick-a-Pic names (`Image.open` reads either): the
preferences are often fractions of a dB, below the loss JPEG itself would add."""


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
