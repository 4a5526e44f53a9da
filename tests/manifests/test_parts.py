"""Schema version 2: manifests as folders of parts, read by every reader, validated part by part."""

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from manifests import io as mio
from manifests import uri as fs
from manifests.parts import (
    ROW_GROUP_ROWS,
    harmonise_parts,
    list_parts,
    manifest_section,
    part_of,
    part_path,
    release_digest,
    write_part,
)
from manifests.release import open_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, ID_COLUMNS, MANIFEST_NAMES, REJECTS, UTTERANCES
from manifests.validate import validate_release
from tests.manifests.release_factory import (
    add_utterance,
    make_tables,
    reweight,
    write_release,
    write_release_v2,
)


def _sorted(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df.sort_values(list(ID_COLUMNS[name]), kind="mergesort").reset_index(drop=True)


def _bigger_tables() -> dict[str, pd.DataFrame]:
    """The factory's release plus utterances of a second source, so every part holds rows."""
    tables = make_tables()
    for i in range(9):
        add_utterance(tables, f"other/x{i}", ["train", "dev", "test"][i // 3], ["negative", "neutral", "positive"][i % 3],
                      source="other", speaker=f"o{i}")
    reweight(tables)
    return tables


def test_v2_release_reads_like_its_v1_twin_and_validates(tmp_path):
    tables = _bigger_tables()
    v1 = write_release(str(tmp_path / "v1"), tables=tables)
    v2 = write_release_v2(str(tmp_path / "v2"), tables=tables, n_parts=3)
    assert v1.layout() == "1" and v2.layout() == "2"
    assert len(list_parts(v2.manifest_dir(UTTERANCES))) == 3
    one, two = mio.read_release(str(tmp_path / "v1")), mio.read_release(str(tmp_path / "v2"))
    for name in MANIFEST_NAMES:
        pd.testing.assert_frame_equal(_sorted(one[name], name), _sorted(two[name], name), check_dtype=False)
        # the v1 file name of a v2 release reads the folder beside it
        assert len(mio.read_manifest(v2.manifest(name))) == len(one[name])
    report = validate_release(str(tmp_path / "v2"))
    assert report.ok, report.problems
    assert "content_sha256 matches the manifests" in report.checks
    assert mio.release_identity(v2) == json.loads(Path(v2.card_json).read_text())["content_sha256"]


def test_open_release_streams_v2_parts(tmp_path):
    tables = _bigger_tables()
    write_release_v2(str(tmp_path), tables=tables, n_parts=3)
    release = open_release(str(tmp_path), audio_roots={})
    parts = list(open_release(str(tmp_path), audio_roots={}).iter_arrow("classifier"))
    assert len(parts) == 3 and sum(p.num_rows for p in parts) == len(tables[CLASSIFIER_STAGE])
    assert sorted(release.asr["row_id"]) == sorted(tables[ASR_STAGE]["row_id"])
    assert release.card["schema_version"] == "2"


def test_rows_in_a_part_are_sorted_and_carry_version_2(tmp_path):
    tables = _bigger_tables()
    shuffled = tables[ASR_STAGE].sample(frac=1.0, random_state=3)
    record = write_part(shuffled, ASR_STAGE, str(tmp_path), 4)
    assert record["path"] == part_path(ASR_STAGE, 4) == "manifests/asr_stage/part-00004.parquet"
    table = pq.read_table(tmp_path / record["path"])
    assert table.schema.metadata[b"voicetone.schema_version"] == b"2"
    assert table.column("row_id").to_pylist() == sorted(shuffled["row_id"])
    assert pq.ParquetFile(tmp_path / record["path"]).metadata.row_group(0).num_rows <= ROW_GROUP_ROWS
    # the part digest is the row content: the order rows arrive in does not matter
    again = write_part(tables[ASR_STAGE], ASR_STAGE, str(tmp_path / "b"), 4)
    assert again["content_sha256"] == record["content_sha256"] and again["sha256"] == record["sha256"]


def test_release_digest_follows_part_order_not_record_order():
    digests = {name: [f"{name}-a", f"{name}-b"] for name in MANIFEST_NAMES}
    swapped = {name: [f"{name}-b", f"{name}-a"] for name in MANIFEST_NAMES}
    assert release_digest(digests) != release_digest(swapped)
    records = [{"part": 1, "rows": 2, "content_sha256": "y"}, {"part": 0, "rows": 3, "content_sha256": "x"}]
    section = manifest_section(records)
    assert [p["part"] for p in section["parts"]] == [0, 1] and section["rows"] == 5


def test_pyarrow_and_datasets_open_a_manifest_folder_directly(tmp_path):
    tables = _bigger_tables()
    paths = write_release_v2(str(tmp_path), tables=tables, n_parts=3)
    folder = paths.manifest_dir(CLASSIFIER_STAGE)
    assert pq.read_table(folder).num_rows == len(tables[CLASSIFIER_STAGE])
    assert pads.dataset(folder, format="parquet").count_rows() == len(tables[CLASSIFIER_STAGE])
    assert len(pd.read_parquet(paths.manifest_dir(UTTERANCES))) == len(tables[UTTERANCES])
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=paths.manifest_dir(ASR_STAGE), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert sorted(ds["row_id"]) == sorted(tables[ASR_STAGE]["row_id"])


def test_harmonise_gives_every_part_one_schema(tmp_path):
    """An extra column that is all null in one part (type null) would make the folder unreadable as one
    dataset; harmonising rewrites that part with the other parts' type and keeps the row content."""
    utt = make_tables()[UTTERANCES]
    a = utt.iloc[:3].assign(mood=["calm", "calm", None])
    b = utt.iloc[3:].assign(mood=[None] * (len(utt) - 3))
    records = [write_part(a, UTTERANCES, str(tmp_path), 0), write_part(b, UTTERANCES, str(tmp_path), 1)]
    before = [pq.read_schema(tmp_path / r["path"]).field("mood").type for r in records]
    assert not pa.types.is_null(before[0]) and pa.types.is_null(before[1])
    fixed = harmonise_parts(str(tmp_path), UTTERANCES, records)
    after = [pq.read_schema(tmp_path / r["path"]) for r in fixed]
    assert after[0].remove_metadata().equals(after[1].remove_metadata())
    assert fixed[0] == records[0] and fixed[1]["sha256"] != records[1]["sha256"]
    assert fixed[1]["content_sha256"] == records[1]["content_sha256"]  # nulls stay nulls
    assert pads.dataset(str(tmp_path / "manifests" / UTTERANCES)).to_table().column("mood").null_count == len(utt) - 2


def test_harmonise_promotes_a_column_that_is_all_missing_in_one_part_whatever_its_type(tmp_path):
    """pandas writes an all-NaN flag column as double: a part whose rows all lack a corpus flag must not
    stop a release whose other parts hold booleans (it used to fail: double vs bool)."""
    utt = make_tables()[UTTERANCES]
    a = utt.iloc[:3].assign(acted=[True, False, True])
    b = utt.iloc[3:].assign(acted=[float("nan")] * (len(utt) - 3))
    records = [write_part(a, UTTERANCES, str(tmp_path), 0), write_part(b, UTTERANCES, str(tmp_path), 1)]
    assert pq.read_schema(tmp_path / records[1]["path"]).field("acted").type == pa.float64()
    said: list[str] = []
    fixed = harmonise_parts(str(tmp_path), UTTERANCES, records, log=lambda msg, *a: said.append(msg % a))
    after = [pq.read_schema(tmp_path / r["path"]) for r in fixed]
    assert after[1].field("acted").type == pa.bool_() and after[0].remove_metadata().equals(
        after[1].remove_metadata())
    assert fixed[1]["content_sha256"] == records[1]["content_sha256"]  # missing stays missing
    column = pads.dataset(str(tmp_path / "manifests" / UTTERANCES)).to_table().column("acted")
    assert column.null_count == len(utt) - 3 and column.to_pylist()[:3] == [True, False, True]
    assert said == ["manifest utterances: 1 of 2 part(s) rewritten to one schema (part 1: acted double -> bool)"]


def test_an_added_column_without_a_value_is_written_with_its_type(tmp_path):
    """This project's added columns (`ADDED_COLUMN_TYPES`) get their type when a part holds no value, so
    the finishing step need not rewrite (read, write, hash again) those parts: at 10 M most parts hold
    no `pii_types` value and every one of them was rewritten. A part with values writes the same type
    (pandas' str columns would convert as large_string)."""
    utt = make_tables()[UTTERANCES]
    a = utt.iloc[:3].assign(pii_detected=[True, False, True], pii_types=["PHONE", None, "EMAIL"])
    b = utt.iloc[3:].assign(pii_detected=[float("nan")] * (len(utt) - 3), pii_types=None)
    records = [write_part(a, UTTERANCES, str(tmp_path), 0), write_part(b, UTTERANCES, str(tmp_path), 1)]
    schema = pq.read_schema(tmp_path / records[1]["path"])
    assert schema.field("pii_detected").type == pa.bool_() and schema.field("pii_types").type == pa.string()
    said: list[str] = []
    fixed = harmonise_parts(str(tmp_path), UTTERANCES, records, log=lambda msg, *a: said.append(msg % a))
    assert fixed == records and said == []
    assert pq.read_schema(tmp_path / records[0]["path"]).field("pii_types").type == pa.string()  # not large_string
    assert mio.read_manifest(mio.ReleasePaths(str(tmp_path)).manifest(UTTERANCES))["pii_types"].isna().sum() == len(utt) - 2

    a = utt.iloc[:3].assign(pii_detected=[True, False, True])
    c = utt.iloc[3:].assign(pii_detected=["yes"] + [None] * (len(utt) - 4))  # a real conflict still fails
    records = [write_part(a, UTTERANCES, str(tmp_path / "x"), 0), write_part(c, UTTERANCES, str(tmp_path / "x"), 1)]
    with pytest.raises(mio.ManifestError, match="incompatible column types"):
        harmonise_parts(str(tmp_path / "x"), UTTERANCES, records)


def test_part_of_matches_the_pipeline_shard_hash():
    from tasks.core.shards import stable_hash

    for key in ("src/u1", "noise/x#3", "rejects/a.wav"):
        assert part_of(key, 8) == int(stable_hash(key)[:12], 16) % 8


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t[UTTERANCES].__setitem__("speaker_id", t[UTTERANCES]["speaker_id"].where(
        t[UTTERANCES]["utterance_id"] != "other/x4", "o0")), "speakers in more than one split"),
    (lambda t: t[UTTERANCES].__setitem__("segment_key", t[UTTERANCES]["segment_key"].where(
        t[UTTERANCES]["utterance_id"] != "other/x4", t[UTTERANCES]["segment_key"].iloc[0])),
     "segment_key in more than one split"),
    (lambda t: t[CLASSIFIER_STAGE].__setitem__("class_weight", t[CLASSIFIER_STAGE]["class_weight"] * 1.5),
     "mean class_weight over speech windows is"),
])
def test_global_invariants_are_checked_across_parts(tmp_path, mutate, message):
    tables = _bigger_tables()
    mutate(tables)
    write_release_v2(str(tmp_path), tables=tables, n_parts=4)
    problems = validate_release(str(tmp_path), workers=2).problems
    assert any(message in p for p in problems), problems


def test_found_equals_accepted_plus_rejected_summed_over_parts(tmp_path):
    paths = write_release_v2(str(tmp_path), tables=_bigger_tables(), n_parts=3)
    card = json.loads(Path(paths.card_json).read_text())
    card["counts"]["sources"]["src"]["found"] += 1
    Path(paths.card_json).write_text(json.dumps(card))
    assert any("found 8 but accepted 6 + rejected 1" in p for p in validate_release(paths.root).problems)


def test_a_tampered_or_missing_part_is_caught(tmp_path):
    paths = write_release_v2(str(tmp_path), tables=_bigger_tables(), n_parts=3)
    part = Path(paths.root) / part_path(ASR_STAGE, 1)
    table = pq.read_table(part)
    pq.write_table(table.set_column(table.schema.get_field_index("target_text"), "target_text",
                                    pa.array(["Positive x"] * table.num_rows)), part)
    problems = "\n".join(validate_release(paths.root).problems)
    assert "content_sha256 mismatch" in problems and "asr_stage/00001" in problems
    (Path(paths.root) / part_path(REJECTS, 2)).unlink()
    problems = "\n".join(validate_release(paths.root).problems)
    assert "manifests/rejects/ lacks part(s) 2" in problems


def test_unreadable_v2_card_version_is_refused(tmp_path):
    paths = write_release_v2(str(tmp_path), n_parts=2)
    card = json.loads(fs.read_bytes(paths.card_json))
    card["schema_version"] = "1"
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    assert any("dataset card schema_version is '1', expected '2'" in p for p in validate_release(paths.root).problems)


def test_write_part_frame_returns_what_a_reader_reads_back(tmp_path):
    """The frame `write_part_frame` hands back (and digests) comes from the Arrow table in memory; it must
    equal the part file read back, for every column kind (nulls in bool/int columns, lists, all-null
    extra columns, unicode), so the record's content_sha256 is what the validator recomputes."""
    import numpy as np

    from manifests.parts import part_uri, read_part, write_part_frame

    tables = make_tables()
    asr = tables[ASR_STAGE].reset_index(drop=True)
    k = len(asr)
    asr = asr.assign(recipe_applied=[None, *[True] * (k - 1)], aug_seed=[None, *range(1, k)],
                     speed=[float("nan"), *[-0.0] * (k - 1)], target_text=["é 😀", *[None] * (k - 1)],
                     words=[["a", None], *[[]] * (k - 1)], nested=[[[1, 2], []], *[None] * (k - 1)],
                     all_null=[None] * k, counts=pd.array([None, *range(k - 1)], dtype="Int32"),
                     ratio=np.float32(0.1))
    frames = {**tables, ASR_STAGE: asr, REJECTS: tables[REJECTS].iloc[0:0]}
    root = str(tmp_path / "releases" / "r1")
    for name, df in frames.items():
        record, written = write_part_frame(df, name, root, 3, metadata={"config": {"x": 1}}, release_name="r1")
        back = read_part(part_uri(root, name, 3)).to_pandas()
        pd.testing.assert_frame_equal(written, back, check_exact=True)
        assert record["content_sha256"] == mio.table_digest(back, name, root, "r1")
        assert record["rows"] == len(back) == len(df)


def test_harmonised_types_follow_the_values_not_the_part_layout(tmp_path):
    """A part without rows writes its extra columns as double; a column with no value anywhere got that
    type in one layout and null in another (a release's schema, and its rows read back as NaN or None,
    depended on part_rows). Now: the contract's type, whatever the layout."""
    utt = make_tables()[UTTERANCES].assign(pii_types=None, pii_detected=False)
    empty = utt.iloc[:0].assign(pii_types=pd.Series(dtype="float64"), pii_detected=pd.Series(dtype="float64"))
    layouts = {"one": [utt], "three": [utt.iloc[:2], empty, utt.iloc[2:]]}
    schemas = {}
    for layout, frames in layouts.items():
        root = str(tmp_path / layout)
        records = [write_part(f, UTTERANCES, root, i) for i, f in enumerate(frames)]
        if layout == "three":  # the part without rows: typed by the contract as it is written
            assert pq.read_schema(tmp_path / layout / records[1]["path"]).field("pii_types").type == pa.string()
        fixed = harmonise_parts(root, UTTERANCES, records)
        found = {pq.read_schema(tmp_path / layout / r["path"]).remove_metadata() for r in fixed}
        assert len(found) == 1
        schemas[layout] = found.pop()
        table = pads.dataset(str(tmp_path / layout / "manifests" / UTTERANCES)).to_table()
        assert table.column("pii_types").null_count == len(utt)
    assert schemas["one"].field("pii_types").type == pa.string() == schemas["three"].field("pii_types").type
    assert schemas["three"].field("pii_detected").type == pa.bool_()
