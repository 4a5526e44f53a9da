"""open_release: LATEST, schema-version checks, tables, pool index; local and S3 (moto server)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.io import ManifestError
from manifests.release import Release, open_release, pool_index_uri, write_pool_index
from manifests.validate import validate_release
from tests.manifests.release_factory import make_tables, write_release


def test_open_release_resolves_latest_and_reads_tables(tmp_path: Path) -> None:
    write_release(str(tmp_path), release="r1")
    paths = write_release(str(tmp_path), release="r2")
    release = open_release(str(tmp_path))
    assert isinstance(release, Release)
    assert release.root == paths.root and release.name == "r2"
    assert release.card["schema_version"] == "1"
    expected = make_tables()
    assert len(release.utterances) == len(expected["utterances"])
    assert list(release.asr["row_id"]) == list(expected["asr_stage"]["row_id"])
    assert release.classifier["class_weight"].notna().all()
    assert release.rejects["reason"].tolist() == ["unreadable_audio"]
    table = release.arrow("classifier")
    assert isinstance(table, pa.Table) and table.num_rows == len(release.classifier)
    assert release.table("asr") is release.asr  # read once
    assert open_release(paths.root).root == paths.root  # a release folder directly


def test_open_release_refuses_other_schema_versions(tmp_path: Path) -> None:
    paths = write_release(str(tmp_path))
    card = json.loads(Path(paths.card_json).read_text())
    Path(paths.card_json).write_text(json.dumps({**card, "schema_version": "3"}))
    with pytest.raises(ManifestError, match="schema version 3"):
        open_release(str(tmp_path))
    Path(paths.card_json).write_text(json.dumps(card))
    table = pq.read_table(paths.manifest("asr_stage"))
    meta = dict(table.schema.metadata)
    meta[b"voicetone.schema_version"] = b"0"
    pq.write_table(table.replace_schema_metadata(meta), paths.manifest("asr_stage"))
    with pytest.raises(ManifestError, match="asr_stage.parquet: schema version 0"):
        open_release(str(tmp_path))


def test_open_release_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="neither a release folder"):
        open_release(str(tmp_path))
    with pytest.raises(ValueError, match="unknown stage"):
        write_release(str(tmp_path))
        open_release(str(tmp_path)).table("windows")


def test_pool_index_round_trip_and_relative_uris(tmp_path: Path) -> None:
    paths = write_release(str(tmp_path))
    assert open_release(str(tmp_path)).pools == {"rirs": {}, "noises": {}}
    write_pool_index(paths.root, {"room/a.wav": "/pools/rir/a.wav"}, {"n.wav": "pools/n.wav"})
    assert json.loads(Path(pool_index_uri(paths.root)).read_text())["schema_version"] == "2"
    pools = open_release(str(tmp_path)).pools
    assert pools["rirs"] == {"room/a.wav": "/pools/rir/a.wav"}
    assert pools["noises"] == {"n.wav": str(Path(paths.root) / "pools" / "n.wav")}


@pytest.mark.aws
def test_open_release_on_s3(tmp_path: Path, s3_bucket: str) -> None:
    import boto3

    paths = write_release(str(tmp_path))
    write_pool_index(paths.root, {"r.wav": "s3://b/r.wav"}, {})
    client = boto3.client("s3")
    for file in sorted(tmp_path.rglob("*")):
        if file.is_file():
            client.upload_file(str(file), s3_bucket, f"out/{file.relative_to(tmp_path)}")
    release = open_release(f"s3://{s3_bucket}/out")
    assert release.root == f"s3://{s3_bucket}/out/releases/r1"
    assert len(release.classifier) == len(make_tables()["classifier_stage"])
    assert release.pools["rirs"] == {"r.wav": "s3://b/r.wav"}
    assert release.card["content_sha256"] == json.loads(Path(paths.card_json).read_text())["content_sha256"]


@pytest.mark.aws
def test_open_release_on_s3_reads_v2_parts(tmp_path: Path, s3_bucket: str) -> None:
    import boto3

    from tests.manifests.release_factory import write_release_v2

    paths = write_release_v2(str(tmp_path), n_parts=3)
    client = boto3.client("s3")
    for file in sorted(tmp_path.rglob("*")):
        if file.is_file():
            client.upload_file(str(file), s3_bucket, f"out/{file.relative_to(tmp_path)}")
    release = open_release(f"s3://{s3_bucket}/out")
    assert release.root == f"s3://{s3_bucket}/out/releases/r2"
    assert len(list(release.iter_arrow("asr"))) == 3
    assert sorted(release.classifier["row_id"]) == sorted(make_tables()["classifier_stage"]["row_id"])
    assert validate_release(f"s3://{s3_bucket}/out").ok
    assert release.card["content_sha256"] == json.loads(Path(paths.card_json).read_text())["content_sha256"]


def test_demo_releases_open(materialized_release: Path, lazy_release: Path) -> None:
    mat, lazy = open_release(str(materialized_release)), open_release(str(lazy_release))
    assert mat.classifier["recipe_applied"].any() and not lazy.classifier["recipe_applied"].any()
    assert not mat.needs_pools and lazy.needs_pools
    ids = set(lazy.classifier["rir_id"].dropna()) | set(lazy.classifier["noise_id"].dropna())
    assert ids and ids <= set(lazy.pools["rirs"]) | set(lazy.pools["noises"])
    assert set(mat.classifier["row_id"]) == set(lazy.classifier["row_id"])
