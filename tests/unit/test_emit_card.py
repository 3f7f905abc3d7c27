"""The dataset card names the licence of every bundled demo image and loads as a HF card."""

from __future__ import annotations

from huggingface_hub import DatasetCard, DatasetCardData

from stages.emit.card import DEMO_PROVENANCE, MAX_SOURCES_LISTED, CardFacts, render_card
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
