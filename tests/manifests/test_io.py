import pandas as pd
import pyarrow.parquet as pq
import pytest

from manifests import io as mio
from manifests.schema import ASR_STAGE, MANIFEST_NAMES, UTTERANCES, UTTERANCES_SCHEMA
from tests.manifests.release_factory import make_tables, write_release


def test_writer_casts_to_contract_and_tags_schema_version(tmp_path):
    tables = make_tables()
    uri = str(tmp_path / "utterances.parquet")
    mio.write_manifest(tables[UTTERANCES].assign(extra_col=1), UTTERANCES, uri)
    table = pq.read_table(uri)
    assert table.schema.metadata[b"voicetone.schema_version"] == b"1"
    for field in UTTERANCES_SCHEMA:
        assert table.schema.field(field.name).type == field.type
    assert "extra_col" in table.schema.names  # the contract allows added columns
    back = mio.read_manifest(uri)
    assert back["utterance_id"].tolist() == tables[UTTERANCES]["utterance_id"].tolist()
    assert back["gender"].isna().all()  # absent optional columns are written as nulls


def test_reader_refuses_other_schema_versions(tmp_path):
    uri = str(tmp_path / "x.parquet")
    table = mio.to_arrow(make_tables()[UTTERANCES], UTTERANCES)
    meta = dict(table.schema.metadata)
    meta[b"voicetone.schema_version"] = b"2"
    pq.write_table(table.replace_schema_metadata(meta), uri)
    with pytest.raises(mio.ManifestError, match="schema version 2"):
        mio.read_manifest(uri)


def test_writer_names_the_column_it_cannot_store(tmp_path):
    bad = make_tables()[UTTERANCES].assign(duration_s="three seconds")
    with pytest.raises(mio.ManifestError, match="utterances.duration_s"):
        mio.write_manifest(bad, UTTERANCES, str(tmp_path / "u.parquet"))


def test_content_hash_ignores_row_order_release_name_and_timing(tmp_path):
    a = write_release(str(tmp_path / "a"), release="20260101T000000Z")
    tables = make_tables()
    tables[ASR_STAGE] = tables[ASR_STAGE].iloc[::-1].assign(processing_time_s=1.23)
    b = write_release(str(tmp_path / "b"), tables=tables, release="20270101T000000Z")
    ha = mio.content_sha256({n: mio.read_manifest(a.manifest(n)) for n in MANIFEST_NAMES}, a.root)
    hb = mio.content_sha256({n: mio.read_manifest(b.manifest(n)) for n in MANIFEST_NAMES}, b.root)
    assert ha == hb
    tables[UTTERANCES].loc[0, "transcript"] = "changed"
    c = write_release(str(tmp_path / "c"), tables=tables)
    hc = mio.content_sha256({n: mio.read_manifest(c.manifest(n)) for n in MANIFEST_NAMES}, c.root)
    assert hc != ha


def test_latest_resolution(tmp_path):
    paths = write_release(str(tmp_path))
    assert mio.resolve_release(str(tmp_path)).root == paths.root
    assert mio.resolve_release(paths.root).root == paths.root
    tables = mio.read_release(str(tmp_path))
    assert set(tables) == set(MANIFEST_NAMES)
    with pytest.raises(mio.ManifestError, match="neither a release folder"):
        mio.resolve_release(str(tmp_path / "nothing"))


def test_s3_round_trip(moto_server, s3_bucket):
    output = f"s3://{s3_bucket}/datasets/demo"
    paths = write_release(output)
    assert paths.root.startswith("s3://")
    tables = mio.read_release(output)
    assert len(tables[UTTERANCES]) == 6
    assert isinstance(tables[ASR_STAGE], pd.DataFrame)
