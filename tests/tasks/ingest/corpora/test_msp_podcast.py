"""MSP-Podcast adapter on a real-layout fixture: Unknown speakers, X/O/U classes, transcripts, splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.msp_podcast import ingest_msp_podcast
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
ROWS = [
    "MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train",  # line 2
    "MSP-PODCAST_0001_0019.wav,H,5.0,6.2,5.0,127,Female,Development",  # 3
    "MSP-PODCAST_0002_0033.wav,A,6.0,2.0,6.0,Unknown,Unknown,Test1",  # 4
    "MSP-PODCAST_0002_0034.wav,X,3.0,4.0,3.0,Unknown,Male,Test2",  # 5: no agreement
    "MSP-PODCAST_0003_0001.wav,O,3.0,4.0,3.0,55,Male,Train",  # 6: other
    "MSP-PODCAST_0003_0002.wav,C,4.0,2.5,5.5,55,Male,Test3",  # 7
    "MSP-PODCAST_0003_0003.wav,S,2.0,2.0,2.0,55,Male,Train",  # 8: WAV missing
    "MSP-PODCAST_0003_0004.wav,Q,2.0,2.0,2.0,55,Male,Train",  # 9: unknown class
    "MSP-PODCAST_0003_0005.wav,S,2.0,2.0,2.0,55,Male,Holdout",  # 10: unknown split
    "MSP-PODCAST_0003_0006.wav,S,two,2.0,2.0,55,Male,Train",  # 11: bad number
]
UNLABELLED = "MSP-PODCAST_0009_0001.wav"


def make_msp(root: Path, label_name: str = "labels_consensus.csv") -> Path:
    for i, row in enumerate(ROWS):
        name = row.split(",")[0]
        if name != "MSP-PODCAST_0003_0003.wav":
            write_tone(root / "Audios" / name, 0.4, seed=i)
    write_tone(root / "Audios" / UNLABELLED, 0.4, seed=30)
    (root / "Audios" / "._MSP-PODCAST_0001_0008.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / label_name).write_text("\n".join([HEADER, *ROWS]) + "\n")
    (root / "Transcripts").mkdir()
    (root / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("So we went downtown.\n")
    (root / "Transcripts" / "MSP-PODCAST_0002_0033.txt").write_text("That is outrageous\n")
    return root


def _source(root: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="msp", kind="msp_podcast", path=str(root), **kw)


def test_labels_speakers_splits_and_transcripts(tmp_path: Path) -> None:
    root = make_msp(tmp_path / "MSP-PODCAST-Publish-1.12")
    result = ingest_msp_podcast(_source(root), "en")

    assert result.found == len(ROWS) + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == ["msp/MSP-PODCAST_0001_0008", "msp/MSP-PODCAST_0001_0019",
                                   "msp/MSP-PODCAST_0002_0033", "msp/MSP-PODCAST_0003_0002"]
    first = items.loc["msp/MSP-PODCAST_0001_0008"]
    assert (first["sentiment"], first["emotion"], first["split"]) == ("neutral", "neutral", "train")
    assert (first["speaker_id"], first["gender"]) == ("127", "female")
    assert (first["transcript_raw"], first["transcript_origin"]) == ("So we went downtown.", "human")
    assert (first["arousal"], first["valence"], first["dominance"]) == (4.2, 4.0, 4.4)
    assert items.loc["msp/MSP-PODCAST_0001_0019", "split"] == "dev"
    assert items.loc["msp/MSP-PODCAST_0001_0019", "transcript_raw"] is None
    unknown = items.loc["msp/MSP-PODCAST_0002_0033"]
    assert unknown["speaker_id"] is None and unknown["gender"] is None
    assert (unknown["sentiment"], unknown["split"]) == ("negative", "test")
    contempt = items.loc["msp/MSP-PODCAST_0003_0002"]
    assert (contempt["sentiment"], contempt["emotion"], contempt["split"]) == ("negative", "contempt", "test")
    assert set(items["license"]) == {"MSP-Podcast-license"} and set(items["sentiment_origin"]) == {"mapped_emotion"}

    rejects = result.rejects.set_index("input_ref")
    label = "Labels/labels_consensus.csv"
    assert {k: v for k, v in rejects["reason"].items() if k.startswith(label)} == {
        f"{label}:5": "unmapped_label",
        f"{label}:6": "unmapped_label",
        f"{label}:8": "missing_audio",
        f"{label}:9": "unmapped_label",
        f"{label}:10": "malformed_metadata",
        f"{label}:11": "malformed_metadata",
    }
    assert "'no-agreement'" in rejects.loc[f"{label}:5", "detail"]
    assert "Holdout" in rejects.loc[f"{label}:10", "detail"]
    assert rejects.loc[str(root / "Audios" / UNLABELLED), "reason"] == "missing_label"
    assert not any("._" in ref for ref in rejects.index)


def test_old_spelling_transcript_column_and_overrides(tmp_path: Path) -> None:
    root = make_msp(tmp_path / "msp", label_name="labels_concensus.csv")
    labels = root / "Labels" / "labels_concensus.csv"
    lines = labels.read_text().splitlines()
    lines[0] += ",Transcript"
    lines[1:] = [line + ',"Well, hello"' for line in lines[1:]]
    labels.write_text("\n".join(lines) + "\n")
    result = ingest_msp_podcast(_source(root, emotion_map={"X": "neutral", "other": "neutral", "C": None}), "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["msp/MSP-PODCAST_0002_0034", "sentiment"] == "neutral"  # X by code
    assert items.loc["msp/MSP-PODCAST_0003_0001", "sentiment"] == "neutral"  # O by name
    assert "msp/MSP-PODCAST_0003_0002" not in items.index  # C unmapped by the spec
    assert set(items["transcript_raw"]) == {"Well, hello"}
    assert result.found == len(result.items) + len(result.rejects)


def test_layout_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "x"
    write_tone(root / "Audios" / "a.wav", 0.1)
    with pytest.raises(CorpusLayoutError, match=r"expected Labels/labels_consensus\.csv.*no label file \(1 WAVs"):
        ingest_msp_podcast(_source(root), "en")
