"""CREMA-D adapter on a real-layout fixture: name codes, XX level, demographics, bad names, empty file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.cremad import EMOTIONS, SENTENCES, ingest_cremad, parse_demographics, parse_name
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

DEMOGRAPHICS = (
    '\ufeff"ActorID","Age","Sex","Race","Ethnicity"\r\n'
    "1001,51,Male,Caucasian,Not Hispanic\r\n"
    "1002,21,Female,Caucasian,Not Hispanic\r\n"
    "1003,,Female,African American,\r\n"
)
GOOD = {
    "1001_DFA_ANG_XX.wav": ("anger", None, "Don't forget a jacket", "negative"),
    "1001_IEO_HAP_HI.wav": ("happy", "high", "It's eleven o'clock", "positive"),
    "1002_TSI_NEU_XX.wav": ("neutral", None, "The surface is slick", "neutral"),
    "1003_WSI_SAD_LO.wav": ("sad", "low", "We'll stop in a couple of minutes", "negative"),
    "1091_ITH_DIS_MD.wav": ("disgust", "medium", "I think I have a doctor's appointment", "negative"),
}
FEAR = "1002_MTI_FEA_MD.wav"
MALFORMED = ["1001_XYZ_ANG_XX.wav", "1001_DFA_SUR_XX.wav", "1001_DFA_ANG_ZZ.wav", "take-2.wav"]
EMPTY = "1076_MTI_SAD_XX.wav"  # empty in the real corpus too


def make_cremad(root: Path) -> Path:
    wav = root / "AudioWAV"
    for i, name in enumerate([*GOOD, FEAR, *MALFORMED]):
        write_tone(wav / name, 0.3 + 0.02 * i, seed=i)
    (wav / EMPTY).write_bytes(b"")
    (wav / "._1001_DFA_ANG_XX.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS, newline="")
    (root / "processedResults").mkdir()
    (root / "processedResults" / "tabulatedVotes.csv").write_text("fileName,emoVote\n")
    return root


def _source(path: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="crema", kind="cremad", path=str(path), **kw)


def test_labels_and_demographics(tmp_path: Path) -> None:
    root = make_cremad(tmp_path / "CREMA-D")
    result = ingest_cremad(_source(root, emotion_map={"fear": None}), "fa")

    assert result.found == len(GOOD) + 1 + len(MALFORMED) + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == sorted(f"crema/{n[:-4]}" for n in GOOD)
    for name, (emotion, level, text, sentiment) in GOOD.items():
        row = items.loc[f"crema/{name[:-4]}"]
        assert (row["emotion"], row["emotion_intensity"], row["transcript_raw"]) == (emotion, level, text), name
        assert (row["sentiment"], row["sentiment_origin"], row["transcript_origin"]) == (
            sentiment,
            "mapped_emotion",
            "human",
        )
        assert (row["language"], row["license"], row["split"], row["corpus"]) == ("en", "ODbL-1.0", None, "cremad")
        assert row["speaker_id"] == name[:4]
    ang = items.loc["crema/1001_DFA_ANG_XX"]
    assert (ang["gender"], ang["age"], ang["age_bucket"], ang["race"], ang["ethnicity"]) == (
        "male",
        "51",
        "50s",
        "Caucasian",
        "Not Hispanic",
    )
    sad = items.loc["crema/1003_WSI_SAD_LO"]
    assert (sad["gender"], sad["age"], sad["race"], sad["ethnicity"]) == ("female", None, "African American", None)
    unknown = items.loc["crema/1091_ITH_DIS_MD"]  # actor not in the demographics file
    assert [unknown[c] for c in ("gender", "age", "age_bucket", "race", "ethnicity")] == [None] * 5

    rejects = result.rejects.set_index("input_ref")
    wav = root / "AudioWAV"
    assert rejects.loc[str(wav / FEAR), "reason"] == "unmapped_label"
    assert "emotion_map" in rejects.loc[str(wav / FEAR), "detail"]
    for name in MALFORMED:
        assert rejects.loc[str(wav / name), "reason"] == "malformed_metadata", name
    assert "sentence code 'XYZ'" in rejects.loc[str(wav / MALFORMED[0]), "detail"]
    assert "emotion code 'SUR'" in rejects.loc[str(wav / MALFORMED[1]), "detail"]
    assert "level code 'ZZ'" in rejects.loc[str(wav / MALFORMED[2]), "detail"]
    assert rejects.loc[str(wav / EMPTY), "reason"] == "empty_audio"
    assert not any("._" in ref for ref in rejects.index)


def test_audiowav_root_finds_demographics_beside_it(tmp_path: Path) -> None:
    root = make_cremad(tmp_path / "c")
    result = ingest_cremad(_source(root / "AudioWAV", emotion_map={"happy": "neutral"}, license="x"), "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["crema/1002_TSI_NEU_XX", "gender"] == "female"
    assert items.loc["crema/1001_IEO_HAP_HI", "sentiment"] == "neutral"
    assert items.loc["crema/1002_MTI_FEA_MD", "sentiment"] == "negative"
    assert set(items["license"]) == {"x"}
    (root / "VideoDemographics.csv").unlink()
    bare = ingest_cremad(_source(root / "AudioWAV"), "en")
    assert bare.items["gender"].isna().all() and bare.items["race"].isna().all()


def test_parsers_and_layout_error(tmp_path: Path) -> None:
    assert len(SENTENCES) == 12 and sorted(EMOTIONS) == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert parse_name("1050_TAI_FEA_HI.wav")["emotion_intensity"] == "high"
    with pytest.raises(ValueError, match="not <actor>_<SENTENCE>"):
        parse_name("1050_TAI_FEA.wav")
    people = parse_demographics(DEMOGRAPHICS)
    assert people["1002"] == {"age": "21", "gender": "female", "race": "Caucasian", "ethnicity": "Not Hispanic"}
    write_tone(tmp_path / "AudioWAV" / "clip.wav", 0.2)
    with pytest.raises(CorpusLayoutError, match=r"expected AudioWAV/<actor>.*found 0 such files \(1 \.wav files\)"):
        ingest_cremad(_source(tmp_path), "en")
