import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import TABLES, SchemaError, candidates, hr, instances, judgements, lq, pairs, scores, sources
from schemas.table import META_VERSION

PNG = {"bytes": b"\x89PNG fake", "path": None}
RLE = {"size": [4, 4], "counts": "04"}
ROUND = dict.fromkeys(lq.ROUND) | {"applied": True, "kernel_type": "iso", "kernel_size": 7, "sigma_x": 1.5}

SAMPLE_ROWS = {
    "sources": sources.SourcesRow("a" * 16, "/x.png", None),
    "hr": hr.HrRow("a" * 16, PNG, 64, 48, "/x.png", "ok"),
    "lq": lq.LqRow(
        "a" * 16, PNG, PNG, 4, 16, 12,
        {"preset": "bicubic", "scale": 4, "crop": {"x": 0, "y": 0, "size": 64},
         "pad": {"right": 8, "bottom": 0}, "small_image": "pad", "round1": ROUND,
         "round2": ROUND, "final_sinc": False, "final_omega_c": None, "final_kernel_size": None,
         "final_resize_mode": "bicubic", "final_jpeg_quality": 90, "jpeg_before_sinc": True},
        "mild blur", "ok",
    ),
    "candidates": candidates.CandidatesRow(
        "a" * 16,
        [{"candidate_id": "c1", "image": PNG, "seed": 1, "steps": 4, "guidance": 1.0, "strength": 1.0,
          "scheduler": "ddim", "backbone": "tiny", "backbone_revision": "abc", "seconds": 0.5}],
        "a photo", "", 64, 48, "ok",
    ),
    "instances": instances.InstancesRow("a" * 16, 4, 4, [RLE], [16], [[0, 0, 4, 4]], ["rest"], "classical", "{}", "ok"),
    "scores": scores.ScoresRow("a" * 16, "c1", 0, "a:0", 0, scores.metrics_struct({"psnr": 30.0, "ssim": 0.9}), 0.5,
                               "map"),
    "pairs": pairs.PairsRow("p1", "a" * 16, "a:0", 0, "c1", "c2", 0, 1, 0.4,
                            scores.metrics_struct({"psnr": 0.2}), 1.0, [0.3, -0.3], True, 16, 1.0, False, "iqa"),
    "judgements": judgements.JudgementsRow("p1", "ann", "left", "c1", "sharper", 1200, "2026-01-01T00:00:00Z"),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_ROWS))
def test_row_round_trip_through_parquet(name):
    spec = TABLES[name]
    row = SAMPLE_ROWS[name]
    table = spec.to_table([row])
    spec.validate(table)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    back = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert back.schema.metadata[META_VERSION] == str(spec.version).encode()
    assert back.schema.metadata[b"srprefs.table"] == name.encode()
    assert spec.to_rows(back) == [row]


@pytest.mark.parametrize("name", sorted(SAMPLE_ROWS))
def test_dataclass_fields_match_schema(name):
    spec = TABLES[name]
    assert list(spec.row_type.__dataclass_fields__) == spec.columns


def test_validate_names_missing_column():
    table = hr.SPEC.to_table([SAMPLE_ROWS["hr"]]).drop_columns(["width"])
    with pytest.raises(SchemaError, match="table 'hr': missing column 'width'"):
        hr.SPEC.validate(table)


def test_validate_names_unexpected_column():
    table = hr.SPEC.to_table([SAMPLE_ROWS["hr"]]).append_column("extra", pa.array([1]))
    with pytest.raises(SchemaError, match=r"unexpected column\(s\) \['extra'\]"):
        hr.SPEC.validate(table)


def test_validate_names_wrong_type():
    table = hr.SPEC.to_table([SAMPLE_ROWS["hr"]])
    table = table.set_column(table.schema.get_field_index("width"), "width", pa.array(["wide"]))
    with pytest.raises(SchemaError, match="column 'width' has type string"):
        hr.SPEC.validate(table)


def test_validate_names_null_required_value_and_row():
    good = SAMPLE_ROWS["hr"]
    bad = hr.HrRow("b" * 16, None, 64, 48, "/y.png", "ok")
    with pytest.raises(SchemaError, match="column 'image' is null in row 1"):
        hr.SPEC.validate(hr.SPEC.to_table([good, bad]))


def test_failed_rows_may_be_null():
    failed = hr.HrRow("b" * 16, None, None, None, "/y.png", "failed", "not an image")
    hr.SPEC.validate(hr.SPEC.to_table([failed]))


def test_validate_names_bad_choice():
    row = judgements.JudgementsRow("p1", "ann", "up", "c1", "", 1, "2026-01-01T00:00:00Z")
    with pytest.raises(SchemaError, match="column 'choice' row 0 has 'up'"):
        judgements.SPEC.validate(judgements.SPEC.to_table([row]))


def test_validate_rejects_other_schema_version():
    table = pairs.SPEC.to_table([SAMPLE_ROWS["pairs"]])
    table = table.replace_schema_metadata({**table.schema.metadata, META_VERSION: b"99"})
    with pytest.raises(SchemaError, match="schema version 99"):
        pairs.SPEC.validate(table)


def test_instances_validate_checks_list_lengths():
    row = instances.InstancesRow("a" * 16, 4, 4, [RLE, RLE], [16], [[0, 0, 4, 4]], ["a"], "classical", "{}", "ok")
    with pytest.raises(SchemaError, match="column 'areas' row 0 has 1 items, 'masks' has 2"):
        instances.SPEC.validate(instances.SPEC.to_table([row]))


def test_scores_metrics_helpers_round_trip():
    values = {"ssim": 0.5, "psnr": 20.0}
    assert scores.metrics_dict(scores.metrics_struct(values)) == values
