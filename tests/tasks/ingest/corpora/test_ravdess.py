"""RAVDESS adapter on a small real-layout fixture (48 kHz, one stereo file, bad names, a zero-byte file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.ravdess import ingest_ravdess
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

GOOD = {
    "Actor_01/03-01-03-01-01-01-01.wav": ("happy", "normal", "Kids are talking by the door", "male"),
    "Actor_02/03-01-05-02-02-02-02.wav": ("angry", "strong", "Dogs are sitting by the door", "female"),
    "Actor_02/03-02-02-01-01-01-02.wav": ("calm", "normal", "Kids are talking by the door", "female"),  # song
}
SURPRISED = "Actor_02/03-01-08-01-01-01-02.wav"
MALFORMED = [
    "Actor_01/03-01-01-01-01-01-02.wav",  # actor 02 inside Actor_01
    "Actor_01/03-01-09-01-01-01-01.wav",  # emotion 09 does not exist
    "Actor_01/take-2.wav",
    "stray.wav",  # not in an Actor_NN folder
]
EMPTY = "Actor_01/03-01-02-02-02-01-01.wav"


def make_ravdess(root: Path) -> Path:
    for i, rel in enumerate([*GOOD, SURPRISED, *MALFORMED]):
        channels = 2 if rel.startswith("Actor_01/03-01-03") else 1
        write_tone(root / rel, 0.4, sample_rate=48000, channels=channels, seed=i)
    (root / EMPTY).write_bytes(b"")
    (root / "Actor_02" / "._03-01-01-01-01-01-02.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "README.txt").write_text("RAVDESS\n")
    return root


def _source(root: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="acted", kind="ravdess", path=str(root), **kw)


def test_labels_from_file_names(tmp_path: Path) -> None:
    root = make_ravdess(tmp_path / "Audio_Speech_Actors_01-24")
    result = ingest_ravdess(_source(root), "fa")

    assert result.found == len(GOOD) + 1 + len(MALFORMED) + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == sorted(f"acted/{Path(rel).stem}" for rel in GOOD)
    for rel, (emotion, intensity, text, gender) in GOOD.items():
        row = items.loc[f"acted/{Path(rel).stem}"]
        assert (row["emotion"], row["emotion_intensity"], row["transcript_raw"]) == (emotion, intensity, text)
        assert (row["gender"], row["transcript_origin"], row["sentiment_origin"]) == (gender, "human", "mapped_emotion")
        assert row["speaker_id"] == f"actor_{rel[6:8]}"
        assert (row["language"], row["license"], row["split"]) == ("en", "CC-BY-NC-SA-4.0", None)
        assert row["sample_rate"] == 48000 and row["duration_s"] == pytest.approx(0.4)
        assert row["audio_uri"] == str(root / rel) and row["corpus"] == "ravdess"
    assert items["sentiment"].to_dict() == {
        "acted/03-01-03-01-01-01-01": "positive",
        "acted/03-01-05-02-02-02-02": "negative",
        "acted/03-02-02-01-01-01-02": "neutral",
    }
    assert items.loc["acted/03-01-03-01-01-01-01", "num_channels"] == 2

    rejects = result.rejects.set_index("input_ref")
    assert rejects.loc[str(root / SURPRISED), "reason"] == "unmapped_label"
    assert "emotion_map" in rejects.loc[str(root / SURPRISED), "detail"]
    for rel in MALFORMED:
        assert rejects.loc[str(root / rel), "reason"] == "malformed_metadata", rel
    assert "does not match its folder" in rejects.loc[str(root / MALFORMED[0]), "detail"]
    assert "emotion code '09'" in rejects.loc[str(root / MALFORMED[1]), "detail"]
    assert "Actor_NN folder" in rejects.loc[str(root / MALFORMED[3]), "detail"]
    assert rejects.loc[str(root / EMPTY), "reason"] == "empty_audio"
    assert not any("._" in ref for ref in rejects.index)


def test_spec_overrides_mapping_and_license(tmp_path: Path) -> None:
    root = make_ravdess(tmp_path / "r")
    result = ingest_ravdess(_source(root, emotion_map={"surprised": "positive", "calm": None}, license="custom"), "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["acted/03-01-08-01-01-01-02", "sentiment"] == "positive"
    assert "acted/03-02-02-01-01-01-02" not in items.index  # calm unmapped by the spec
    assert set(items["license"]) == {"custom"}
    assert result.found == len(result.items) + len(result.rejects) == 9


def test_layout_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "x"
    write_tone(root / "b.wav", 0.1)
    write_tone(root / "Actor_01" / "notes.wav", 0.1)
    (root / "a.mp3").write_bytes(b"ID3\x03\x00")
    with pytest.raises(CorpusLayoutError) as info:
        ingest_ravdess(_source(root), "en")
    text = str(info.value)
    assert text.startswith(f"ravdess source 'acted' at {root}: expected Actor_NN/ folders with MM-VV-EE-II-SS-RR-AA.wav")
    assert "found 0 such files" in text and "3 files: Actor_01/notes.wav, a.mp3, b.wav" in text
    with pytest.raises(CorpusLayoutError, match="empty or does not exist"):
        ingest_ravdess(_source(tmp_path / "missing"), "en")
