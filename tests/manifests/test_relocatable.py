"""A release is relocatable as a folder, and its identity covers its audio bytes (issue 14, items 2 and 8)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from manifests import io as mio
from manifests.dataset import AsrDataset, ClassifierDataset
from manifests.export import export_lhotse, export_nemo
from manifests.hf import to_hf_dataset
from manifests.release import AUDIO_ROOTS_ENV, open_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, MANIFEST_NAMES
from manifests.validate import validate_release
from tests.manifests.release_factory import make_tables, materialise_audio, write_release


@pytest.fixture(autouse=True)
def _no_env_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIO_ROOTS_ENV, raising=False)


def _release(base: Path, **kwargs) -> Path:
    tables = make_tables()
    materialise_audio(tables, str(base / "out" / "releases" / "r1"), **kwargs)
    write_release(str(base / "out"), tables)
    return base / "out"


def _card_hash(out: Path) -> str:
    return mio.read_card(mio.resolve_release(str(out)))["content_sha256"]


def _ok(uri: str, deep: bool = False) -> None:
    report = validate_release(uri, deep=deep)
    assert report.ok, report.problems


def test_a_copied_release_validates_hashes_the_same_and_reads_its_audio(tmp_path: Path) -> None:
    out = _release(tmp_path / "a")
    raw = mio.read_manifest(str(out / "releases" / "r1" / "manifests" / "classifier_stage.parquet"))
    assert raw["audio_uri"].str.startswith("audio/").all()  # relative to the release root
    _ok(str(out), deep=True)
    want = {n: ClassifierDataset(str(out), split=None)[i]["waveform"] for i, n in enumerate(range(3))}
    digest = _card_hash(out)

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(out)  # the original is gone: only the copy exists
    _ok(str(moved))
    _ok(str(moved), deep=True)
    assert main(["validate", "--deep", str(moved)]) == 0
    root = mio.resolve_release(str(moved)).root
    tables = {n: mio.read_manifest(mio.ReleasePaths(root).manifest(n)) for n in MANIFEST_NAMES}
    assert mio.content_sha256(tables, root) == digest == _card_hash(moved)

    release = open_release(str(moved))
    for table in (release.classifier, release.asr):
        assert table["audio_uri"].str.startswith(root + "/audio/").all()
    data = ClassifierDataset(release, split=None)
    for i in range(3):
        assert np.array_equal(data[i]["waveform"].numpy(), want[i].numpy())
    assert AsrDataset(release, split=None)[0]["waveform"].abs().sum() > 0
    hf = to_hf_dataset(release, "classifier", decode=True)
    assert np.array_equal(np.asarray(hf[0]["audio"]["array"]), want[0].numpy())
    export_nemo(release, "asr", str(tmp_path / "asr.jsonl"))
    paths = [json.loads(line)["audio_filepath"] for line in (tmp_path / "asr.jsonl").read_text().splitlines()]
    assert paths and all(p.startswith(root + "/audio/") and Path(p).exists() for p in paths)
    export_lhotse(release, "classifier", str(tmp_path / "lhotse"))
    sources = {s["source"] for line in gzip.open(tmp_path / "lhotse" / "recordings.jsonl.gz", "rt")
               for s in json.loads(line)["sources"]}
    assert sources and all(Path(s).is_file() and s.startswith(root) for s in sources)


def test_empty_or_changed_release_audio_fails_validation(tmp_path: Path) -> None:
    out = _release(tmp_path)
    audio = sorted((out / "releases" / "r1" / "audio").glob("*.flac"))
    _ok(str(out), deep=True)

    data = audio[0].read_bytes()
    audio[0].write_bytes(data[:-64] + bytes(64))  # same size, other bytes: only a re-hash sees it
    _ok(str(out))
    deep = validate_release(str(out), deep=True)
    assert not deep.ok and any("audio_sha256" in p and audio[0].name in p for p in deep.problems)

    audio[0].write_bytes(b"")  # the crash case: a 0-byte FLAC in the release
    plain = validate_release(str(out))
    assert not plain.ok and any("empty" in p and audio[0].name in p for p in plain.problems)

    audio[0].write_bytes(data)
    audio[1].unlink()
    plain = validate_release(str(out))
    assert not plain.ok and any("missing" in p and audio[1].name in p for p in plain.problems)
    assert main(["validate", str(out)]) == 1


def test_garbage_with_a_matching_hash_still_fails_deep_validation(tmp_path: Path) -> None:
    """--deep decodes too: a file whose bytes are not audio is named even when the hash was recorded for it."""
    tables = make_tables()
    root = tmp_path / "out" / "releases" / "r1"
    materialise_audio(tables, str(root))
    target = root / tables[CLASSIFIER_STAGE]["audio_uri"].iloc[0]
    target.write_bytes(b"not a sound file at all")
    tables[CLASSIFIER_STAGE].loc[0, "audio_sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    write_release(str(tmp_path / "out"), tables)
    _ok(str(tmp_path / "out"))
    deep = validate_release(str(tmp_path / "out"), deep=True)
    assert not deep.ok and any("do not decode" in p and target.name in p for p in deep.problems)


def test_the_hash_covers_the_audio_bytes(tmp_path: Path) -> None:
    """Same manifests but other audio bytes: another content_sha256 (it used to be equal)."""
    a = _release(tmp_path / "a")
    tables = make_tables()
    root = tmp_path / "b" / "out" / "releases" / "r1"
    materialise_audio(tables, str(root))
    first = root / tables[ASR_STAGE]["audio_uri"].iloc[0]
    first.write_bytes(first.read_bytes()[:-64] + bytes(64))
    tables[ASR_STAGE].loc[0, "audio_sha256"] = hashlib.sha256(first.read_bytes()).hexdigest()
    write_release(str(tmp_path / "b" / "out"), tables)
    assert _card_hash(a) != _card_hash(tmp_path / "b" / "out")
    assert _card_hash(a) == _card_hash(_release(tmp_path / "c"))  # and equal bytes hash equal


def _strip_audio_sha256(root: Path) -> None:
    """Rewrite the stage files as releases before `audio_sha256` were written (no such column)."""
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        path = root / "manifests" / f"{name}.parquet"
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["audio_sha256"]), path)


def test_an_older_release_with_absolute_paths_and_no_audio_sha256_stays_valid_and_movable(tmp_path: Path) -> None:
    from tests.manifests.test_io import _oracle_content_sha256

    tables = make_tables()
    root = tmp_path / "a" / "out" / "releases" / "r1"
    materialise_audio(tables, str(root), absolute=True, with_hash=False)
    paths = write_release(str(tmp_path / "a" / "out"), tables)
    _strip_audio_sha256(root)
    old = {n: pq.read_table(paths.manifest(n)).to_pandas() for n in MANIFEST_NAMES}
    assert "audio_sha256" not in old[CLASSIFIER_STAGE].columns
    assert old[CLASSIFIER_STAGE]["audio_uri"].str.startswith(str(root) + "/audio/").all()
    old_hash = _oracle_content_sha256(old, paths.root)  # what the previous code computed and wrote
    card = json.loads(Path(paths.card_json).read_text())
    card["content_sha256"] = old_hash
    Path(paths.card_json).write_text(json.dumps(card))
    _ok(str(tmp_path / "a" / "out"), deep=True)

    moved = tmp_path / "b" / "moved"
    shutil.copytree(tmp_path / "a" / "out", moved)
    shutil.rmtree(tmp_path / "a")
    _ok(str(moved), deep=True)  # the marker rule finds the audio of the old absolute form
    release = open_release(str(moved))
    new_root = mio.resolve_release(str(moved)).root
    assert release.classifier["audio_uri"].str.startswith(new_root + "/audio/").all()
    assert ClassifierDataset(release, split=None)[0]["waveform"].abs().sum() > 0


def test_relative_paths_may_not_leave_the_release(tmp_path: Path) -> None:
    tables = make_tables()
    root = tmp_path / "out" / "releases" / "r1"
    materialise_audio(tables, str(root))
    tables[CLASSIFIER_STAGE].loc[0, "audio_uri"] = "../../../secret.flac"
    write_release(str(tmp_path / "out"), tables)
    report = validate_release(str(tmp_path / "out"))
    assert not report.ok and any("leave the release" in p for p in report.problems)
    with pytest.raises(ValueError, match="inside the release"):
        open_release(str(tmp_path / "out"))


def test_s3_round_trip_keeps_the_release_valid_and_equal(tmp_path: Path, moto_server: str, s3_bucket: str) -> None:
    """`aws s3 sync` up and back down: valid on S3 (deep too) and locally, same content_sha256."""
    import boto3

    out = _release(tmp_path / "a")
    digest = _card_hash(out)
    client = boto3.client("s3", endpoint_url=moto_server)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        client.upload_file(str(path), s3_bucket, f"synced/{path.relative_to(out)}")
    remote = f"s3://{s3_bucket}/synced"
    _ok(remote)
    _ok(remote, deep=True)
    release = open_release(remote)
    assert release.classifier["audio_uri"].str.startswith(f"{remote}/releases/r1/audio/").all()
    assert ClassifierDataset(release, split=None)[0]["waveform"].abs().sum() > 0

    back = tmp_path / "back"
    for obj in client.list_objects_v2(Bucket=s3_bucket, Prefix="synced/")["Contents"]:
        target = back / obj["Key"][len("synced/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3_bucket, obj["Key"], str(target))
    _ok(str(back), deep=True)
    assert _card_hash(back) == digest
    root = mio.resolve_release(str(back)).root
    tables = {n: mio.read_manifest(mio.ReleasePaths(root).manifest(n)) for n in MANIFEST_NAMES}
    assert mio.content_sha256(tables, root) == digest
