"""MELD adapter: CRLF CSVs with curly quotes, MP4 clips (one missing, one corrupt), layouts; real test CSV."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.meld import episode_seconds, ingest_meld, parse_sent_emo
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

REAL_CSV = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real" / "meld" / "test_sent_emo.csv"
HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
TRAIN_ROWS = [
    '1,"Oh. That’s so Monica, ‘Where’s number 27?!’",Rachel,anger,negative,0,0,3,19,"00:14:40,629","00:14:47,385"',
    '2,Y\'know what?,Joey,neutral,neutral,0,1,3,19,"0:14:56,353","0:14:57,520"',  # one-digit hours
    '3,"What?!",All,surprise,positive,0,2,3,19,"00:14:58,000","00:14:59,100"',
    "4,Missing clip,Ross,sadness,negative,0,3,3,19,x,y",
    '5,Corrupt clip,Monica,joy,positive,1,0,1,2,"00:01:00,000","00:01:02,000"',
    "6,Mixed feelings,Ross,neutral,mixed,1,1,1,2,,",
    "7,Bad id,Ross,neutral,neutral,one,2,1,2,,",
]
DEV_ROWS = ['1,"Line one,\r\nline two",Phoebe,fear,negative,0,0,2,3,"00:00:01,000","00:00:02,000"']
TEST_ROWS = ["1,Hey.,Chandler,joy,positive,5,0,2,3,,"]


def _mp4(path: Path, seconds: float, seed: int) -> None:
    """A small MP4 with a video and an AAC audio track, like MELD's clips."""
    wav = write_tone(path.with_suffix(".wav"), seconds, sample_rate=48000, channels=2, seed=seed)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=32x32:r=5",
         "-i", str(wav), "-shortest", "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "64k", str(path)],
        check=True,
        timeout=60,
    )
    wav.unlink()


def _csv(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8"))


def make_meld(root: Path, flat: bool = False) -> Path:
    """The MELD.Raw release layout (or a flattened copy with dev_splits/); returns root."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    train = root / ("train_splits" if flat else "train/train_splits")
    dev = root / ("dev_splits" if flat else "dev_splits_complete")
    test = root / ("test_splits" if flat else "output_repeated_splits_test")
    for i, clip in enumerate(["dia0_utt0", "dia0_utt1", "dia0_utt2", "dia1_utt1", "dia1_utt2"]):
        _mp4(train / f"{clip}.mp4", 0.5 + 0.1 * i, seed=i)
    (train / "dia1_utt0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (train / "._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07")
    _mp4(dev / "dia0_utt0.mp4", 0.6, seed=10)
    _mp4(test / "dia5_utt0.mp4", 0.7, seed=11)
    _mp4(root / "stray" / "dia0_utt3.mp4", 0.4, seed=12)  # not in a clip folder: does not count
    _csv(root / "train_sent_emo.csv", TRAIN_ROWS)
    _csv(root / "dev_sent_emo.csv", DEV_ROWS)
    _csv(root / "test_sent_emo.csv", TEST_ROWS)
    return root


def _source(path: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="meld", kind="meld", path=str(path), **kw)


def test_release_layout(tmp_path: Path) -> None:
    root = make_meld(tmp_path / "MELD.Raw")
    result = ingest_meld(_source(tmp_path), "fa")

    assert result.found == len(TRAIN_ROWS) + 1 + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == [
        "meld/dev/dia0_utt0",
        "meld/test/dia5_utt0",
        "meld/train/dia0_utt0",
        "meld/train/dia0_utt1",
        "meld/train/dia0_utt2",
    ]
    first = items.loc["meld/train/dia0_utt0"]
    assert first["transcript_raw"] == "Oh. That’s so Monica, ‘Where’s number 27?!’"
    assert (first["sentiment"], first["sentiment_origin"], first["emotion"]) == ("negative", "human", "anger")
    assert (first["speaker_id"], first["split"], first["language"], first["license"]) == (
        "Rachel",
        "train",
        "en",
        "GPL-3.0",
    )
    assert (first["season"], first["episode"]) == ("3", "19")
    assert (first["episode_start_s"], first["episode_end_s"]) == pytest.approx((880.629, 887.385))
    assert (first["sample_rate"], first["num_channels"], first["corpus"]) == (48000, 2, "meld")
    assert first["audio_uri"] == str(root / "train/train_splits/dia0_utt0.mp4")
    assert first["duration_s"] == pytest.approx(0.5, abs=0.1)
    assert items.loc["meld/train/dia0_utt1", "episode_start_s"] == pytest.approx(896.353)
    assert items.loc["meld/train/dia0_utt1", "transcript_raw"] == "Y'know what?"
    surprise = items.loc["meld/train/dia0_utt2"]
    assert (surprise["sentiment"], surprise["sentiment_origin"], surprise["speaker_id"]) == ("positive", "human", "All")
    dev = items.loc["meld/dev/dia0_utt0"]
    assert (dev["split"], dev["transcript_raw"], dev["sentiment"]) == ("dev", "Line one,\r\nline two", "negative")
    assert items.loc["meld/test/dia5_utt0", "split"] == "test"

    rejects = result.rejects.set_index("input_ref")
    assert rejects.loc["train_sent_emo.csv:5", "reason"] == "missing_audio"
    assert "dia0_utt3.mp4" in rejects.loc["train_sent_emo.csv:5", "detail"]
    assert rejects.loc["train_sent_emo.csv:6", "reason"] == "unreadable_audio"
    assert "dia1_utt0.mp4" in rejects.loc["train_sent_emo.csv:6", "detail"]
    assert rejects.loc["train_sent_emo.csv:7", "reason"] == "unmapped_label"
    assert "'mixed'" in rejects.loc["train_sent_emo.csv:7", "detail"]
    assert rejects.loc["train_sent_emo.csv:8", "reason"] == "malformed_metadata"
    assert "Dialogue_ID 'one'" in rejects.loc["train_sent_emo.csv:8", "detail"]


def test_flat_layout_and_emotion_map_override(tmp_path: Path) -> None:
    make_meld(tmp_path, flat=True)
    result = ingest_meld(_source(tmp_path, emotion_map={"surprise": None, "Anger": "neutral"}), "en")
    items = result.items.set_index("utterance_id")
    assert "meld/dev/dia0_utt0" in items.index and "meld/test/dia5_utt0" in items.index
    assert (items.loc["meld/train/dia0_utt0", "sentiment"], items.loc["meld/train/dia0_utt0", "sentiment_origin"]) == (
        "neutral",
        "mapped_emotion",
    )
    assert items.loc["meld/train/dia0_utt1", "sentiment_origin"] == "human"
    rejects = result.rejects.set_index("input_ref")
    assert rejects.loc["train_sent_emo.csv:4", "reason"] == "unmapped_label"
    assert "emotion_map" in rejects.loc["train_sent_emo.csv:4", "detail"]


def test_layout_errors(tmp_path: Path) -> None:
    write_tone(tmp_path / "train_splits" / "dia0_utt0.wav", 0.2)
    with pytest.raises(CorpusLayoutError, match=r"expected train_sent_emo\.csv.*found none of the"):
        ingest_meld(_source(tmp_path), "en")
    (tmp_path / "dev_sent_emo.csv").write_text("Sr No.,Utterance,Speaker\n1,hi,Joey\n")
    with pytest.raises(CorpusLayoutError, match="lacks Emotion, Sentiment, Dialogue_ID, Utterance_ID"):
        ingest_meld(_source(tmp_path), "en")


def test_episode_seconds() -> None:
    assert episode_seconds("00:14:38,127") == pytest.approx(878.127)
    assert episode_seconds("0:10:44,769") == pytest.approx(644.769)
    assert [episode_seconds(v) for v in ("", None, "14:38", "x")] == [None] * 4


@pytest.mark.realdata
def test_real_test_csv_labels_and_missing_clips() -> None:
    if not REAL_CSV.is_file():
        pytest.skip(f"real MELD CSV not found at {REAL_CSV}")
    source = _source(REAL_CSV.parent)
    rows = parse_sent_emo(REAL_CSV.read_text(encoding="utf-8"), "test", "test_sent_emo.csv", source)
    assert len(rows) == 2610 and all(r.reason is None for r in rows)
    assert Counter(r.labels["sentiment"] for r in rows) == {"neutral": 1256, "negative": 833, "positive": 521}
    assert Counter(r.labels["emotion"] for r in rows) == {
        "neutral": 1256, "joy": 402, "anger": 345, "surprise": 281, "sadness": 208, "disgust": 68, "fear": 50,
    }
    assert {r.labels["sentiment_origin"] for r in rows} == {"human"}
    assert len({r.native_id for r in rows}) == 2610
    first, second = rows[0], rows[1]
    assert (first.native_id, first.clip, first.ref) == ("test/dia0_utt0", "dia0_utt0.mp4", "test_sent_emo.csv:2")
    assert first.labels["transcript_raw"] == "Why do all you’re coffee mugs have numbers on the bottom?"
    assert (first.labels["speaker_id"], first.labels["emotion"], first.labels["sentiment"]) == (
        "Mark",
        "surprise",
        "positive",
    )
    assert second.labels["transcript_raw"].endswith("she can be like, ‘Where’s number 27?!’")
    assert first.extras["episode_start_s"] == pytest.approx(878.127)
    assert all(r.extras["episode_start_s"] is not None for r in rows)  # one- and two-digit hours parse

    result = ingest_meld(source, "en")
    assert result.found == 2610 and result.items.empty
    assert set(result.rejects["reason"]) == {"missing_audio"} and len(result.rejects) == 2610


def test_upper_case_mp4_is_the_rows_clip(tmp_path: Path) -> None:
    """A copy saved with `.MP4` names (case-insensitive file systems, re-zipped archives) still matches."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    _mp4(tmp_path / "output_repeated_splits_test" / "dia5_utt0.MP4", 0.5, seed=1)
    _csv(tmp_path / "test_sent_emo.csv", TEST_ROWS)

    result = ingest_meld(_source(tmp_path), "en")

    assert result.rejects.empty, result.rejects.to_dict("records")
    assert result.found == 1
    row = result.items.iloc[0]
    assert row["utterance_id"] == "meld/test/dia5_utt0" and row["sentiment"] == "positive"
    assert row["audio_uri"] == str(tmp_path / "output_repeated_splits_test" / "dia5_utt0.MP4")


def test_windows_1252_csv_is_read_as_such_with_a_note(tmp_path: Path) -> None:
    """MELD CSVs with cp1252 punctuation (\\x92 for ’) give the right characters, never U+FFFD."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    _mp4(tmp_path / "output_repeated_splits_test" / "dia5_utt0.mp4", 0.5, seed=1)
    row = "1,\u201cHey\u201d \u2013 it\u2019s me.,Chandler,joy,positive,5,0,2,3,,"
    (tmp_path / "test_sent_emo.csv").write_bytes(("\r\n".join([HEADER, row]) + "\r\n").encode("cp1252"))

    result = ingest_meld(_source(tmp_path), "en")

    assert result.rejects.empty, result.rejects.to_dict("records")
    assert result.items.loc[0, "transcript_raw"] == "\u201cHey\u201d \u2013 it\u2019s me."
    assert len(result.notes) == 1 and "Windows-1252" in result.notes[0]
    assert str(tmp_path / "test_sent_emo.csv") in result.notes[0]


def test_utf8_csv_gives_no_note_and_undecodable_csv_is_a_layout_error(tmp_path: Path) -> None:
    _csv(tmp_path / "test_sent_emo.csv", ["1,It\u2019s,Chandler,joy,positive,5,0,2,3,,"])
    assert ingest_meld(_source(tmp_path), "en").notes == []
    # \x81 is undefined in Windows-1252 and \xff is not UTF-8: no guess, the file is named
    (tmp_path / "test_sent_emo.csv").write_bytes(HEADER.encode() + b"\r\n1,\x81\xff,A,joy,positive,5,0,2,3,,\r\n")
    with pytest.raises(CorpusLayoutError, match="neither UTF-8"):
        ingest_meld(_source(tmp_path), "en")
