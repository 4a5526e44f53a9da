"""SLUE-VoxCeleb adapter on a real-layout fixture: crops, <mixed>/Disagreement, crops past the end, S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import storage
from tasks.ingest.corpora.base import CorpusLayoutError, IngestResult
from tasks.ingest.corpora.slue_voxceleb import ingest_slue_voxceleb
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

HEADER = "id\tnormalized_text\tspeaker_id\tsplit\tsentiment\tstart_second\tend_second"
FINE_TUNE = [
    "id10059_229vKIGbxrI_00001\tand i loved every minute of it\tid10059\tfine-tune\tPositive\t0.2\t1.0",
    "id10059_229vKIGbxrI_00002\tthat was a terrible day\tid10059\tfine-tune\tNegative\t0.0\t1.5",
    "id10060_aaaaaaaaaaa_00001\twell it was good and bad\tid10060\tfine-tune\t<mixed>\t0.1\t0.9",
    "id10060_aaaaaaaaaaa_00002\ti suppose so\tid10060\tfine-tune\tDisagreement\t0.1\t0.9",
    "id10061_bbbbbbbbbbb_00001\twe went there\tid10061\tfine-tune\tNeutral\t1.0\t2.5",  # past the end
    "id10061_bbbbbbbbbbb_00002\tno audio for this one\tid10061\tfine-tune\tNeutral\t0.0\t1.0",  # missing
    "id10062_ccccccccccc_00001\tbackwards\tid10062\tfine-tune\tNeutral\t1.0\t0.5",
    "id10062_ccccccccccc_00002\ttoo few fields\tid10062",
    "id10062_ccccccccccc_00003\thappy label\tid10062\tfine-tune\tHappy\t0.0\t1.0",
]
DEV = ["id10070_ddddddddddd_00001\tthat's fine by me\tid10070\tdev\tNeutral\t0.0\t1.49"]
BLIND = ["id\tspeaker_id\tsplit\tstart_second\tend_second", "id10080_eeeeeeeeeee_00001\tid10080\ttest\t0.5\t1.5"]
NO_AUDIO = "id10061_bbbbbbbbbbb_00002"


def make_slue(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "slue-voxceleb_fine-tune.tsv").write_text("\n".join([HEADER, *FINE_TUNE]) + "\n")
    (root / "slue-voxceleb_dev.tsv").write_text("\n".join([HEADER, *DEV]) + "\n")
    (root / "slue-voxceleb_test_blind.tsv").write_text("\n".join(BLIND) + "\n")
    for i, line in enumerate(FINE_TUNE):
        utt = line.split("\t")[0]
        if utt != NO_AUDIO:
            write_tone(root / "fine-tune_raw" / f"{utt}.flac", 1.5, seed=i)
    write_tone(root / "dev_raw" / f"{DEV[0].split()[0]}.flac", 1.5, seed=20)
    write_tone(root / "test_raw" / "id10080_eeeeeeeeeee_00001.flac", 2.0, seed=21)
    return root


def _source(root: Path | str, **kw: object) -> SourceSpec:
    return SourceSpec(name="slue", kind="slue_voxceleb", path=str(root), **kw)


def _check_default(result: IngestResult, root: str) -> None:
    assert result.found == len(FINE_TUNE) + len(DEV) + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == [
        "slue/id10059_229vKIGbxrI_00001", "slue/id10059_229vKIGbxrI_00002",
        "slue/id10070_ddddddddddd_00001", "slue/id10080_eeeeeeeeeee_00001",
    ]
    row = items.loc["slue/id10059_229vKIGbxrI_00001"]
    assert (row["offset_s"], row["duration_s"]) == pytest.approx((0.2, 0.8))
    assert (row["sentiment"], row["sentiment_origin"], row["split"]) == ("positive", "human", "train")
    assert (row["transcript_raw"], row["transcript_origin"]) == ("and i loved every minute of it", "human")
    assert (row["speaker_id"], row["license"], row["language"]) == ("id10059", "CC-BY-4.0", "en")
    assert row["audio_uri"] == storage.join(root, "fine-tune_raw", "id10059_229vKIGbxrI_00001.flac")
    dev = items.loc["slue/id10070_ddddddddddd_00001"]
    assert (dev["split"], dev["sentiment"], dev["transcript_raw"]) == ("dev", "neutral", "that's fine by me")
    blind = items.loc["slue/id10080_eeeeeeeeeee_00001"]
    assert blind["split"] == "test" and blind["sentiment"] is None and blind["transcript_raw"] is None
    assert blind["speaker_id"] == "id10080" and blind["duration_s"] == pytest.approx(1.0)

    rejects = result.rejects.set_index("input_ref")
    reasons = rejects["reason"].to_dict()
    name = "slue-voxceleb_fine-tune.tsv"
    assert reasons == {
        f"{name}:4": "unmapped_label",  # <mixed>
        f"{name}:5": "unmapped_label",  # Disagreement
        f"{name}:6": "malformed_metadata",  # crop past the end
        f"{name}:7": "missing_audio",
        f"{name}:8": "malformed_metadata",  # end before start
        f"{name}:9": "malformed_metadata",  # field count
        f"{name}:10": "unmapped_label",  # Happy
    }
    assert "mixed_policy" in rejects.loc[f"{name}:4", "detail"]
    assert "past the end of the file" in rejects.loc[f"{name}:6", "detail"]
    assert NO_AUDIO in rejects.loc[f"{name}:7", "detail"]
    assert "not after start_second" in rejects.loc[f"{name}:8", "detail"]


def test_default_policy_local(tmp_path: Path) -> None:
    root = make_slue(tmp_path / "slue-voxceleb")
    _check_default(ingest_slue_voxceleb(_source(root), "fr"), str(root))


def test_s3_source(tmp_path: Path, s3_bucket: str) -> None:
    local = make_slue(tmp_path / "slue-voxceleb")
    root = f"s3://{s3_bucket}/corpora/slue-voxceleb"
    for path in sorted(local.rglob("*")):
        if path.is_file():
            storage.write_bytes(storage.join(root, path.relative_to(local).as_posix()), path.read_bytes())
    result = ingest_slue_voxceleb(_source(root), "en")
    _check_default(result, root)
    local_result = ingest_slue_voxceleb(_source(local), "en")
    assert sorted(result.items["audio_sha256"]) == sorted(local_result.items["audio_sha256"])


def test_mixed_policy(tmp_path: Path) -> None:
    root = make_slue(tmp_path / "s")
    items = ingest_slue_voxceleb(_source(root, options={"mixed_policy": "neutral"}), "en").items.set_index("utterance_id")
    assert items.loc["slue/id10060_aaaaaaaaaaa_00001", "sentiment"] == "neutral"
    assert items.loc["slue/id10060_aaaaaaaaaaa_00002", "sentiment"] == "neutral"
    result = ingest_slue_voxceleb(
        _source(root, options={"mixed_policy": {"<mixed>": "positive", "Disagreement": "reject"}}), "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["slue/id10060_aaaaaaaaaaa_00001", "sentiment"] == "positive"
    assert "slue/id10060_aaaaaaaaaaa_00002" not in items.index
    assert result.found == len(result.items) + len(result.rejects)
    with pytest.raises(ValueError, match="allowed: reject, negative, neutral, positive"):
        ingest_slue_voxceleb(_source(root, options={"mixed_policy": "drop"}), "en")
    with pytest.raises(ValueError, match="only <mixed>, Disagreement can be mapped"):
        ingest_slue_voxceleb(_source(root, options={"mixed_policy": {"Happy": "positive"}}), "en")
    with pytest.raises(ValueError, match="must be a string or a mapping"):
        ingest_slue_voxceleb(_source(root, options={"mixed_policy": 1}), "en")


def test_bad_header_and_layout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    (root / "slue-voxceleb_dev.tsv").write_text("utt\ttext\nx\ty\n")
    result = ingest_slue_voxceleb(_source(root), "en")
    assert result.items.empty and result.found == 1
    assert "no column(s) id, start_second, end_second" in result.rejects.loc[0, "detail"]
    other = tmp_path / "o"
    write_tone(other / "dev_raw" / "a.flac", 0.1)
    with pytest.raises(CorpusLayoutError, match=r"expected slue-voxceleb_fine-tune\.tsv.*1 files: dev_raw/a\.flac"):
        ingest_slue_voxceleb(_source(other), "en")
