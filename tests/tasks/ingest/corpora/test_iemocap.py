"""IEMOCAP adapter on a small real-layout fixture (two sessions, `._` files, xxx/fru/exc/sur labels)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.iemocap import ingest_iemocap
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

# utterance -> (session, dialog, emotion code, [V, A, D]) as in EmoEvaluation
LABELS = {
    "Ses01F_impro01_F000": (1, "Ses01F_impro01", "neu", "[2.5000, 2.5000, 2.5000]"),
    "Ses01F_impro01_M000": (1, "Ses01F_impro01", "fru", "[2.0000, 3.5000, 3.5000]"),
    "Ses01F_impro01_M001": (1, "Ses01F_impro01", "xxx", "[2.5000, 3.0000, 3.0000]"),
    "Ses01F_impro01_F001": (1, "Ses01F_impro01", "sur", "[3.0000, 3.5000, 2.5000]"),
    "Ses02M_script01_1_F000": (2, "Ses02M_script01_1", "exc", "[4.0000, 4.0000, 3.0000]"),
    "Ses02M_script01_1_M000": (2, "Ses02M_script01_1", "hap", "[4.5000, 3.0000, 3.0000]"),
    "Ses02M_script01_1_M001": (2, "Ses02M_script01_1", "ang", "[1.5000, 4.0000, 4.5000]"),
    "Ses02M_script01_1_M002": (2, "Ses02M_script01_1", "sad", "[1.5000, 2.0000, 2.0000]"),  # WAV missing
}
UNLABELLED = "Ses02M_script01_1_F001"
TRANSCRIPTS = {
    "Ses01F_impro01_F000": "Excuse me.",
    "Ses01F_impro01_M000": "Do you have your forms?",
    "Ses02M_script01_1_F000": "Oh, this is wonderful!",
}


def make_iemocap(root: Path) -> Path:
    dialogs: dict[tuple[int, str], list[str]] = {}
    for i, (utt, (session, dialog, _, _)) in enumerate(LABELS.items()):
        dialogs.setdefault((session, dialog), []).append(utt)
        if utt != "Ses02M_script01_1_M002":
            write_tone(root / f"Session{session}/sentences/wav/{dialog}/{utt}.wav", 0.3, seed=i)
    write_tone(root / f"Session2/sentences/wav/Ses02M_script01_1/{UNLABELLED}.wav", 0.3, seed=50)
    write_tone(root / "Session1/dialog/wav/Ses01F_impro01.wav", 1.0, seed=60)  # whole dialog: not an item
    for (session, dialog), utts in dialogs.items():
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for n, utt in enumerate(utts):
            code, vad = LABELS[utt][2], LABELS[utt][3]
            lines += [f"[{n * 3 + 0.5:.4f} - {n * 3 + 2.5:.4f}]\t{utt}\t{code}\t{vad}",
                      "C-E2:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", ""]
        evaluation = root / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text("\n".join(lines) + "\n")
        (evaluation.parent / "Categorical").mkdir(exist_ok=True)
        (evaluation.parent / "Categorical" / f"{dialog}_e2_cat.txt").write_text(f"{utts[0]} :Neutral state; ()\n")
        (evaluation.parent / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07\xff\xfe")
        transcript = root / f"Session{session}/dialog/transcriptions/{dialog}.txt"
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_text("".join(f"{u} [006.2901-008.2357]: {TRANSCRIPTS[u]}\n" for u in utts if u in TRANSCRIPTS)
                              + f"{dialog}_MXX0 [010.0000-011.0000]: overlap\n")
    (root / "Session1/sentences/wav/Ses01F_impro01/._Ses01F_impro01_F000.wav").write_bytes(b"\x00\x05\x16\x07")
    return root


def _source(root: Path | str, **kw: object) -> SourceSpec:
    return SourceSpec(name="iemo", kind="iemocap", path=str(root), **kw)


def test_labels_transcripts_and_speakers(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "IEMOCAP_full_release")
    result = ingest_iemocap(_source(root), "de")

    assert result.found == len(LABELS) + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == sorted(
        f"iemo/{u}" for u in ["Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses02M_script01_1_F000",
                              "Ses02M_script01_1_M000", "Ses02M_script01_1_M001"]
    )
    assert items["sentiment"].to_dict() == {
        "iemo/Ses01F_impro01_F000": "neutral",
        "iemo/Ses01F_impro01_M000": "negative",  # fru
        "iemo/Ses02M_script01_1_F000": "positive",  # exc
        "iemo/Ses02M_script01_1_M000": "positive",
        "iemo/Ses02M_script01_1_M001": "negative",
    }
    row = items.loc["iemo/Ses01F_impro01_M000"]
    assert (row["speaker_id"], row["gender"], row["emotion"]) == ("Ses01_M", "male", "frustrated")
    assert (row["transcript_raw"], row["transcript_origin"]) == ("Do you have your forms?", "human")
    assert (row["valence"], row["arousal"], row["dominance"]) == (2.0, 3.5, 3.5)
    assert items.loc["iemo/Ses02M_script01_1_F000", "speaker_id"] == "Ses02_F"
    assert items.loc["iemo/Ses02M_script01_1_F000", "gender"] == "female"
    no_text = items.loc["iemo/Ses02M_script01_1_M000"]
    assert no_text["transcript_raw"] is None and no_text["transcript_origin"] is None
    assert set(items["language"]) == {"en"} and set(items["license"]) == {"IEMOCAP-license"}
    assert items["split"].isna().all() and set(items["sentiment_origin"]) == {"mapped_emotion"}
    assert row["audio_uri"] == str(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M000.wav")

    rejects = result.rejects.set_index("input_ref")
    wav = root / "Session1/sentences/wav/Ses01F_impro01"
    assert rejects.loc[str(wav / "Ses01F_impro01_M001.wav"), "reason"] == "unmapped_label"  # xxx
    assert "'xxx'" in rejects.loc[str(wav / "Ses01F_impro01_M001.wav"), "detail"]
    assert rejects.loc[str(wav / "Ses01F_impro01_F001.wav"), "reason"] == "unmapped_label"  # sur
    unlabelled = str(root / f"Session2/sentences/wav/Ses02M_script01_1/{UNLABELLED}.wav")
    assert rejects.loc[unlabelled, "reason"] == "missing_label"
    assert "EmoEvaluation/Ses02M_script01_1.txt" in rejects.loc[unlabelled, "detail"]
    missing = [r for r in rejects.index if r.endswith(":Ses02M_script01_1_M002")]
    assert len(missing) == 1 and rejects.loc[missing[0], "reason"] == "missing_audio"
    assert not any("._" in ref for ref in rejects.index)


def test_emotion_map_by_code_or_name_and_test_sessions(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "r")
    spec = _source(root, emotion_map={"xxx": "neutral", "surprise": "positive", "exc": None},
                   options={"test_sessions": [2]}, license="mine")
    result = ingest_iemocap(spec, "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["iemo/Ses01F_impro01_M001", "sentiment"] == "neutral"
    assert items.loc["iemo/Ses01F_impro01_F001", "sentiment"] == "positive"
    assert "iemo/Ses02M_script01_1_F000" not in items.index  # exc unmapped by the spec
    assert {s: set(g) for s, g in items.groupby("split")["speaker_id"]} == {
        "train": {"Ses01_F", "Ses01_M"}, "test": {"Ses02_M"}}
    assert set(items["license"]) == {"mine"}
    assert result.found == len(result.items) + len(result.rejects) == 9


def test_bad_options_and_layout(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "r")
    with pytest.raises(ValueError, match=r"test_sessions names session\(s\) \[5\]"):
        ingest_iemocap(_source(root, options={"test_sessions": [5]}), "en")
    with pytest.raises(ValueError, match="non-empty list of session numbers"):
        ingest_iemocap(_source(root, options={"test_sessions": ["5"]}), "en")
    with pytest.raises(ValueError, match="unknown option"):
        ingest_iemocap(_source(root, options={"test_session": [5]}), "en")
    flat = tmp_path / "flat"
    write_tone(flat / "Ses01F_impro01_F000.wav", 0.1)
    with pytest.raises(CorpusLayoutError, match=r"expected Session<N>/sentences/wav/<dialog>/<utterance>\.wav.*"
                       r"found no utterance WAVs \(0 EmoEvaluation files\).*Ses01F_impro01_F000\.wav"):
        ingest_iemocap(_source(flat), "en")
