"""Optional extras: a missing one fails with the pip command that installs it."""

import pytest
from omegaconf import OmegaConf

from common.extras import EXTRAS, MissingExtraError, has_extra, missing_modules, require_extra
from pipeline import annotation
from stages.segmenters.sam import load_sam


@pytest.fixture
def without_extra(monkeypatch):
    def remove(extra: str) -> None:
        _, needed_by = EXTRAS[extra]
        monkeypatch.setitem(EXTRAS, extra, (("srprefs_no_such_module",), needed_by))

    return remove


def test_installed_extras_are_complete():
    # The test environment installs every extra (make test: .[dev] pulls in ui, sam, report).
    for extra in EXTRAS:
        assert has_extra(extra), missing_modules(extra)
        require_extra(extra)


def test_missing_extra_names_the_module_and_the_install(without_extra):
    without_extra("sam")
    assert missing_modules("sam") == ["srprefs_no_such_module"]
    with pytest.raises(MissingExtraError, match=r"srprefs_no_such_module: pip install 'srprefs\[sam\]'"):
        load_sam("vit_b", "/nonexistent.pth")


def test_annotation_without_the_ui_extra(without_extra, tmp_path):
    without_extra("ui")
    cfg = OmegaConf.create({"run_dir": str(tmp_path), "store": {"url": None, "db_schema": None, "lease_ttl_s": 60}})
    with pytest.raises(MissingExtraError, match=r"annotation UI .*srprefs\[ui\]"):
        annotation.open_store(cfg)
