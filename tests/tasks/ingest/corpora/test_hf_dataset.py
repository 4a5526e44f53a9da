"""hf_dataset adapter on tiny datasets built here: save_to_disk (Dataset, DatasetDict) and Parquet."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.core import audio, storage
from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.hf_dataset import ingest_hf_dataset
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

datasets = pytest.importorskip("datasets")
LABELS = ["negative", "neutral", "positive"]


def _wavs(folder: Path, n: int) -> list[Path]:
    return [write_tone(folder / f"clip{i}.wav", 0.3 + 0.1 * i, seed=i) for i in range(n)]


def _dataset(wavs: list[Path], labels: list[int], texts: list[str | None], speakers: list[str]) -> object:
    """A Dataset with an undecoded Audio column (encoding through Audio() would need torchcodec)."""
    ds = datasets.Dataset.from_dict(
        {"audio": [str(p) for p in wavs], "text": texts, "label": labels, "speaker": speakers}
    )
    return ds.cast_column("audio", datasets.Audio(decode=False)).cast_column(
        "label", datasets.ClassLabel(names=LABELS)
    )


def _source(path: Path | str, **options: object) -> SourceSpec:
    return SourceSpec(name="hf", kind="hf_dataset", path=str(path), options=options)


COLUMNS = {"transcript": "text", "sentiment": "label", "speaker_id": "speaker"}


def test_save_to_disk_embeds_bytes_into_the_cache(tmp_path: Path) -> None:
    wavs = _wavs(tmp_path / "src", 3)
    ds = _dataset(wavs, [0, 2, 1], ["bad day", "great day", None], ["s1", "s2", "s1"])
    ds.save_to_disk(str(tmp_path / "saved"))  # save_to_disk embeds the WAV bytes, path becomes "clipN.wav"
    for wav in wavs:
        wav.unlink()  # the dataset must not depend on the original files

    result = ingest_hf_dataset(_source(tmp_path / "saved", columns=COLUMNS), "de")
    assert result.found == 3 == len(result.items) and result.rejects.empty
    items = result.items.set_index("utterance_id")
    assert list(items["sentiment"]) == ["negative", "positive", "neutral"]
    assert list(items.index) == ["hf/0", "hf/1", "hf/2"]
    assert list(items["transcript_raw"]) == ["bad day", "great day", None]
    assert list(items["transcript_origin"]) == ["human", "human", None]
    assert list(items["speaker_id"]) == ["s1", "s2", "s1"] and set(items["language"]) == {"de"}
    assert items["split"].isna().all() and set(items["sentiment_origin"]) == {"human"}
    cache = tmp_path / "saved" / ".voicetone-audio"
    for uri, sha in zip(items["audio_uri"], items["audio_sha256"], strict=True):
        assert uri == str(cache / sha[:2] / f"{sha}.wav")
        assert hashlib.sha256(Path(uri).read_bytes()).hexdigest() == sha
        assert audio.read_audio(uri).size > 0
    assert items.loc["hf/1", "duration_s"] == pytest.approx(0.4)

    again = ingest_hf_dataset(_source(tmp_path / "saved", columns=COLUMNS), "de")  # the cache is reused
    assert list(again.items["audio_uri"]) == list(result.items["audio_uri"])
    assert len(list(cache.rglob("*.wav"))) == 3


def test_dataset_dict_splits_and_label_names(tmp_path: Path) -> None:
    wavs = _wavs(tmp_path / "src", 4)
    train = _dataset(wavs[:3], [0, 1, 2], ["a", "b", "c"], ["s1", "s2", "s3"])
    test = _dataset(wavs[3:], [2], ["d"], ["s4"])
    datasets.DatasetDict({"train": train, "validation": test}).save_to_disk(str(tmp_path / "dd"))
    cache = tmp_path / "cache"
    options = {"columns": {**COLUMNS, "sentiment": "label"}, "label_names": {0: "neg", 1: "neu", 2: "pos"},
               "audio_cache": str(cache)}
    result = ingest_hf_dataset(_source(tmp_path / "dd", **options), "en")
    items = result.items.set_index("utterance_id")
    assert items["split"].to_dict() == {"hf/train/0": "train", "hf/train/1": "train", "hf/train/2": "train",
                                        "hf/validation/0": "dev"}
    assert items["sentiment"].to_dict()["hf/validation/0"] == "positive"
    assert all(uri.startswith(str(cache)) for uri in items["audio_uri"])

    fixed = ingest_hf_dataset(_source(tmp_path / "dd", columns={**COLUMNS, "id": "text"}, split="test"), "en")
    assert set(fixed.items["split"]) == {"test"}
    assert sorted(fixed.items["utterance_id"]) == ["hf/train/a", "hf/train/b", "hf/train/c", "hf/validation/d"]


def test_parquet_paths_bytes_and_awkward_rows(tmp_path: Path) -> None:
    wavs = _wavs(tmp_path / "src", 3)
    # to_parquet keeps local paths (no bytes): the adapter reads the files where they are
    _dataset(wavs, [0, 1, 2], ["x", "y", "z"], ["a", "b", "c"]).to_parquet(
        str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    # embedded bytes (one without a usable path), an emotion label, one unmapped emotion
    rows = {
        "audio": [{"bytes": wavs[0].read_bytes(), "path": None}, {"bytes": wavs[1].read_bytes(), "path": "b.wav"},
                  {"bytes": wavs[2].read_bytes(), "path": "c"}],
        "emo": ["happy", "surprised", "angry"],
        "text": ["one", "two", "three"],
    }
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
    ds.to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00002.parquet"))
    # a row whose path is gone and that embeds no bytes (to_parquet itself would stat the path)
    gone = datasets.Dataset.from_dict({"audio": [{"bytes": None, "path": "gone.wav"}], "emo": ["sad"],
                                       "text": ["x"]}).cast_column("audio", datasets.Audio(decode=False))
    pq.write_table(gone.data.table, tmp_path / "pq" / "data" / "test-00001-of-00002.parquet")
    (tmp_path / "pq" / "README.md").write_text("# card\n")

    result = ingest_hf_dataset(_source(tmp_path / "pq", columns={"transcript": "text", "emotion": "emo"},
                                       allow_absolute_paths=True), "en")
    assert result.found == 7 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    train = items[items["split"] == "train"]
    assert list(train["audio_uri"]) == [str(p) for p in wavs]  # the files themselves, not copies
    assert train["sentiment"].isna().all()  # the label column was not mapped
    test = items[items["split"] == "test"]
    assert list(test.index) == ["hf/data/test-00000-of-00002/0", "hf/data/test-00000-of-00002/2"]
    assert list(test["sentiment"]) == ["positive", "negative"]
    assert set(test["sentiment_origin"]) == {"mapped_emotion"}
    assert all(uri.endswith(".wav") for uri in test["audio_uri"])  # suffix sniffed from the RIFF header
    rejects = result.rejects.set_index("input_ref")
    base = f"{tmp_path / 'pq'}#data/test-0000"
    assert rejects.loc[f"{base}1-of-00002:0", "reason"] == "missing_audio"
    assert "'gone.wav' does not exist" in rejects.loc[f"{base}1-of-00002:0", "detail"]
    assert rejects.loc[f"{base}0-of-00002:1", "reason"] == "unmapped_label"

    # a numeric sentiment column with no names is refused, never guessed
    plain = datasets.Dataset.from_dict({"audio": [str(wavs[0])], "score": [1]})
    plain.to_parquet(str(tmp_path / "plain.parquet"))
    one = ingest_hf_dataset(_source(tmp_path / "plain.parquet", columns={"audio": "audio", "sentiment": "score"},
                                    allow_absolute_paths=True), "en")
    assert one.items.empty and one.rejects.loc[0, "reason"] == "unmapped_label"
    assert "label_names" in one.rejects.loc[0, "detail"]


def test_configuration_errors_and_layout(tmp_path: Path) -> None:
    wavs = _wavs(tmp_path / "src", 1)
    _dataset(wavs, [0], ["x"], ["a"]).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="unknown column role"):
        ingest_hf_dataset(_source(tmp_path / "saved", columns={"sentimnt": "label"}), "en")
    with pytest.raises(ValueError, match=r"names column\(s\) lable that the dataset does not have"):
        ingest_hf_dataset(_source(tmp_path / "saved", columns={"sentiment": "lable"}), "en")
    with pytest.raises(ValueError, match="option split 'holdout'"):
        ingest_hf_dataset(_source(tmp_path / "saved", split="holdout"), "en")
    with pytest.raises(CorpusLayoutError, match=r"expected a save_to_disk folder.*1 files: clip0\.wav"):
        ingest_hf_dataset(_source(tmp_path / "src"), "en")


def test_s3_save_to_disk_with_s3_cache(tmp_path: Path, s3_bucket: str) -> None:
    wavs = _wavs(tmp_path / "src", 2)
    _dataset(wavs, [2, 0], ["yes", "no"], ["a", "b"]).save_to_disk(str(tmp_path / "saved"))
    root = f"s3://{s3_bucket}/hf/saved"
    for path in sorted((tmp_path / "saved").rglob("*")):
        if path.is_file():
            storage.write_bytes(storage.join(root, path.relative_to(tmp_path / "saved").as_posix()), path.read_bytes())
    result = ingest_hf_dataset(_source(root, columns=COLUMNS), "en")
    assert list(result.items["sentiment"]) == ["positive", "negative"] and result.rejects.empty
    for uri, sha in zip(result.items["audio_uri"], result.items["audio_sha256"], strict=True):
        assert uri == f"{root}/.voicetone-audio/{sha[:2]}/{sha}.wav"
        assert audio.read_audio(uri).size > 0
