"""The dataset card names the licence of every bundled demo image, loads as a HF card, and its Hub
metadata passes the checks the Hub makes (offline)."""

from __future__ import annotations

import re

import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from stages.emit.card import (
    DEMO_PROVENANCE,
    LICENSE_FILE,
    MAX_SOURCES_LISTED,
    CardFacts,
    CardMetadataError,
    hub_metadata,
    license_text,
    render_card,
    size_category,
    validate_card,
)
from stages.ingest import DEMO_IMAGES


def facts(sources):
    return CardFacts(
        name="test", split_rows={"dspo": {"train": 1}}, instances={"iqa": 2}, pairs_labels={},
        judgements={}, judgement_rule="majority", degradations=["bicubic x4"], backbones=["tiny"], segmenters=["slic"],
        metrics=["psnr"], score_modes=["map"], candidates_per_image=[4], failed={"lq": 0}, sources=sources,
        dropped_images=0, config_yaml="seed: 0\n",
    )


def test_every_demo_image_has_a_documented_licence():
    uris = [f"demo:{package}/{name}" for package, name in DEMO_IMAGES]
    assert set(uris) == set(DEMO_PROVENANCE)
    text = render_card(DatasetCardData(license="other"), facts({f"{i:016x}": u for i, u in enumerate(uris)}))
    for uri in uris:
        assert f"| {uri} | {DEMO_PROVENANCE[uri]} |" in text
    assert "CC BY 2.0" in text and "CC0" in text and "public domain" in text
    card = DatasetCard(text)
    assert card.data.license == "other"


def test_long_source_lists_are_cut():
    sources = {f"{i:016x}": f"/data/{i}.png" for i in range(MAX_SOURCES_LISTED + 5)}
    text = render_card(DatasetCardData(), facts(sources))
    assert "... and 5 more source images" in text
    assert "licence not recorded" in text
    assert "Degradation (HR -> LQ): bicubic x4" in text
    assert "How full-reference metrics saw an instance (score.mode): map (map: each metric's" in text


def test_hub_metadata_lists_each_sources_licence_and_validates_offline():
    uris = [f"demo:{package}/{name}" for package, name in DEMO_IMAGES]
    sources = {f"{i:016x}": u for i, u in enumerate(uris)}
    fields = hub_metadata(sources, examples=8, human_labels=False, configured_license="other")
    assert fields["license"] == ["bsd-3-clause", "cc-by-2.0", "cc0-1.0", "other", "unknown"]
    assert fields["license_name"] and fields["license_link"] == LICENSE_FILE
    assert fields["annotations_creators"] == ["machine-generated"]
    assert fields["size_categories"] == ["n<1K"] and fields["task_categories"] == ["image-to-image"]
    text = render_card(DatasetCardData(**fields), facts(sources))
    assert validate_card(text).data.license_link == LICENSE_FILE
    licences = license_text(sources)
    assert all(f"| {uri} | {DEMO_PROVENANCE[uri]} |" in licences for uri in uris)
    # People's labels add expert-generated; one licence for every source is stated as it is.
    cc0 = {"a": "demo:skimage/coffee.png", "b": "demo:skimage/camera.png"}
    labelled = hub_metadata(cc0, examples=5000, human_labels=True, configured_license="other")
    assert labelled["license"] == "cc0-1.0" and "license_link" not in labelled
    assert labelled["annotations_creators"] == ["machine-generated", "expert-generated"]
    assert labelled["size_categories"] == ["1K<n<10K"]
    # A licence set in the config wins.
    assert hub_metadata(cc0, 1, False, configured_license="mit")["license"] == "mit"


@pytest.mark.parametrize("examples, category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (123_456, "100K<n<1M")])
def test_size_category_boundaries(examples, category):
    assert size_category(examples) == category


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"license": "other"}, "license 'other' needs license_name and license_link"),
        ({"license": "mit", "size_categories": ["tiny"]}, "size_categories: 'tiny' is not one of"),
        ({"license": "mit", "annotations_creators": ["robots"]}, "annotations_creators: 'robots' is not one of"),
        ({"license": "mit", "task_categories": ["super-resolution"]}, "task_categories: 'super-resolution'"),
        ({"license": "mit", "tags": []}, "no tags"),
    ],
)
def test_card_metadata_problems_are_named(fields, problem):
    good = hub_metadata({"a": "demo:skimage/coffee.png"}, 1, False, "other")
    text = render_card(DatasetCardData(**{**good, **fields}), facts({}))
    with pytest.raises(CardMetadataError, match=re.escape(problem)):
        validate_card(text)
