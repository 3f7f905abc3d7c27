"""One source for every default: each settings field has a value and a comment in
pipeline/defaults/*.yaml, each YAML key is a settings field, and the CLI's help is made from them."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.keys import documented_keys, format_key, settings_keys, yaml_docs
from pipeline.registry import ORDER


def _dict_valued(cfg) -> set[str]:
    """Settings leaves whose value is a mapping (their YAML children are values, not keys)."""
    return {key for key in settings_keys() if OmegaConf.is_dict(OmegaConf.select(cfg, key))}


def test_every_settings_field_has_a_documented_yaml_value():
    cfg = load_config()
    docs = yaml_docs()
    undocumented = [key for key in settings_keys() if not docs.get(key)]
    assert undocumented == []
    assert all(not OmegaConf.is_missing(cfg, key) for key in settings_keys() if "." not in key)


def test_every_yaml_key_is_a_settings_field():
    cfg = load_config()
    leaves = set(settings_keys())
    sections = {key.rsplit(".", 1)[0] for key in leaves if "." in key}
    sections |= {s.rsplit(".", 1)[0] for s in sections if "." in s}
    under_a_mapping_value = tuple(f"{key}." for key in _dict_valued(cfg))
    unknown = [k for k in yaml_docs() if k not in leaves | sections and not k.startswith(under_a_mapping_value)]
    assert unknown == []


def test_keys_carry_the_shipped_defaults_and_their_comments():
    by_key = {item.key: item for item in documented_keys()}
    assert by_key["emit.splits.test"].default == 0.0
    assert by_key["score.min_side"].default == {"default": 32, "vif": 48, "cw_ssim": 64, "ms_ssim": 176}
    # Entries of a one-line mapping share its comment; a key right under a sibling shares the sibling's.
    assert by_key["emit.splits.validation"].doc.startswith("Share of source images per split")
    assert by_key["host"].doc == by_key["port"].doc == "The annotation UI (`pipeline annotate`)."
    assert format_key(by_key["sample.steps"]).startswith("  sample.steps=[20]\n      Sampler settings, one list each")


def test_stage_key_names_every_stage():
    doc = {item.key: item.doc for item in documented_keys()}["stage"]
    assert all(name in doc for name in ORDER)


def test_keys_command_prints_every_key_with_its_yaml_doc(capsys):
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert "  segment.sam.on_missing_gpu=fallback\n      When device asks for a CUDA device" in out
    entries = re.findall(r"^  (\S+)=", out, flags=re.MULTILINE)
    assert entries == settings_keys()  # one entry per key, the top-level keys first
    assert entries[:3] == ["seed", "run_dir", "stage"]


def test_keys_prefix_filters_to_a_section_or_a_subtree(capsys):
    assert main(["keys", "sample.backbone"]) == 0
    entries = re.findall(r"^  (\S+)=", capsys.readouterr().out, flags=re.MULTILINE)
    assert entries == [k for k in settings_keys() if k.startswith("sample.backbone.")]
    assert main(["keys", "seed", "pair"]) == 0  # a whole key, and a section; in settings order
    entries = re.findall(r"^  (\S+)=", capsys.readouterr().out, flags=re.MULTILINE)
    assert entries == [k for k in settings_keys() if k == "seed" or k.startswith("pair.")]
    assert "sample.backbone.name" not in entries and len(entries) > 3


def test_keys_prefix_that_names_no_key_is_an_error(capsys):
    # "samp" is the start of a section name, not a section: no silent empty list
    for prefix in ("sampel", "samp"):
        assert main(["keys", prefix]) == 2
        err = capsys.readouterr().err
        assert f"no config key is named or starts with '{prefix}'" in err and "sections: degrade, emit" in err
