"""unsupported_language hints name only the options that work (tasks/sentiment/languages.py)."""

from __future__ import annotations

import pandas as pd

from tasks.label.sentiment import text_classifier
from tasks.label.sentiment.languages import unsupported_hint
from tasks.spec_labelers import TextClassifierSettings


def _row(corpus: str, language: str) -> dict:
    return {"utterance_id": "u1", "source": "s", "corpus": corpus, "language": language, "split": "train",
            "transcript": "سلام دنیا", "transcript_raw": "سلام دنیا", "sentiment": None}


def test_commonvoice_persian_hint_has_no_emotion_map_and_no_comprehend() -> None:
    hint = unsupported_hint(_row("commonvoice", "fa"), "VADER is English-only")
    assert "emotion_map" not in hint and "aws_comprehend" not in hint
    assert "kind: trained" in hint and "hf_model" in hint and "'fa'" in hint


def test_german_folder_hint_offers_comprehend_metadata_and_emotion_map() -> None:
    hint = unsupported_hint(_row("folder", "de"), "VADER is English-only")
    assert "aws_comprehend" in hint and "sentiment column" in hint and "emotion_map" in hint


def test_vader_rejects_persian_with_the_hint() -> None:
    items = pd.DataFrame([_row("commonvoice", "fa")])
    result = text_classifier.fill_missing_sentiment(items, TextClassifierSettings(), None)
    rejects = result.rejects if hasattr(result, "rejects") else result[1]
    assert len(rejects) == 1 and rejects["reason"].iloc[0] == "unsupported_language"
    assert "emotion_map" not in rejects["detail"].iloc[0]
