"""The offline text sentiment dispatcher (default kind VADER): which rows it labels, rejects, the label cache."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.label_cache import LabelCache
from tasks.label.sentiment import text_classifier as tc
from tasks.label.sentiment import vader
from tasks.spec_labelers import TextClassifierSettings

HAPPY = "I am so happy, this is wonderful!"
ANGRY = "This is terrible and I hate it."
FLAT = "The train leaves at nine."


def _row(uid: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "utterance_id": f"src/{uid}",
        "source": "src",
        "language": "en",
        "transcript": None,
        "transcript_raw": None,
        "sentiment": None,
        "sentiment_origin": None,
        "p_negative": None,
        "p_neutral": None,
        "p_positive": None,
        "sentiment_confidence": None,
    }
    return {**base, **fields}


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text VADER actually scores in this test."""
    analyzer = vader._analyzer()
    original = analyzer.polarity_scores
    calls: list[str] = []

    def counting(text: str) -> dict[str, float]:
        calls.append(text)
        return original(text)

    monkeypatch.setattr(analyzer, "polarity_scores", counting)
    return calls


def test_fill_keeps_labelled_rows_classifies_the_rest_and_rejects_what_it_cannot() -> None:
    items = pd.DataFrame(
        [
            _row("human", transcript=ANGRY, sentiment="positive", sentiment_origin="human"),
            _row("mapped", transcript=HAPPY, sentiment="neutral", sentiment_origin="mapped_emotion"),
            _row("happy", transcript=HAPPY),
            _row("raw-only", transcript_raw=ANGRY, language="en-US"),
            _row("blank", transcript="   ", transcript_raw=FLAT, language=None),
            _row("persian", transcript="من خیلی خوشحالم", language="fa"),
            _row("silent"),
        ]
    )
    result = tc.fill_missing_sentiment(items, TextClassifierSettings(), cache=None)

    kept = result.items.set_index("utterance_id")
    assert len(result.items) + len(result.rejects) == len(items)  # found = kept + rejected
    assert kept.loc["src/human", "sentiment"] == "positive"  # a human label is never overridden
    assert kept.loc["src/human", "sentiment_origin"] == "human"
    assert math.isnan(kept.loc["src/human", "p_positive"])
    assert kept.loc["src/mapped", "sentiment"] == "neutral"
    assert kept.loc["src/mapped", "sentiment_origin"] == "mapped_emotion"
    assert kept.loc["src/happy", "sentiment"] == "positive"
    assert kept.loc["src/raw-only", "sentiment"] == "negative"
    assert kept.loc["src/blank", "sentiment"] == "neutral"
    for uid in ("src/happy", "src/raw-only", "src/blank"):
        assert kept.loc[uid, "sentiment_origin"] == "text_classifier"
        assert 0.5 <= kept.loc[uid, "sentiment_confidence"] <= 1.0
        assert not math.isnan(kept.loc[uid, "sentiment_compound"])
    assert kept.loc["src/happy", "p_positive"] > 0.5

    rejects = result.rejects.set_index("input_ref")
    assert set(rejects.index) == {"src/persian", "src/silent"}
    assert set(rejects["stage"]) == {"sentiment"} and set(rejects["source"]) == {"src"}
    assert rejects.loc["src/persian", "reason"] == "unsupported_language"
    assert (
        "src/persian" in rejects.loc["src/persian", "detail"]
        and "'fa'" in rejects.loc["src/persian", "detail"]
    )
    assert rejects.loc["src/silent", "reason"] == "missing_label"
    assert "no transcript to classify" in rejects.loc["src/silent", "detail"]


def test_per_class_min_confidence_rejects_weak_labels_only() -> None:
    settings = TextClassifierSettings(
        positive_threshold=0.5, min_confidence={"negative": 0.0, "neutral": 0.8, "positive": 0.6}
    )
    items = pd.DataFrame(
        [
            _row("flat", transcript=FLAT),  # compound 0: the most certain neutral
            _row("good", transcript="good"),  # compound 0.44: neutral, close to the 0.5 boundary
            _row("happy", transcript=HAPPY),  # compound 0.87: positive, confidence 0.87
            _row("angry", transcript=ANGRY),
        ]
    )
    result = tc.fill_missing_sentiment(items, settings, cache=None)
    assert list(result.items["utterance_id"]) == ["src/flat", "src/happy", "src/angry"]
    (reject,) = result.rejects.to_dict("records")
    assert reject["input_ref"] == "src/good" and reject["reason"] == "low_confidence_sentiment"
    assert "neutral" in reject["detail"] and "min_confidence.neutral = 0.8" in reject["detail"]


def test_rerun_with_cache_classifies_nothing_again(tmp_path: Path, count_calls: list[str]) -> None:
    settings = TextClassifierSettings()
    items = pd.DataFrame(
        [
            _row("a", transcript=HAPPY),
            _row("b", transcript=HAPPY),
            _row("c", transcript=ANGRY),
            _row("d", transcript=FLAT),
        ]
    )
    first_cache = tc.make_cache(str(tmp_path), settings)
    assert tc.make_cache(str(tmp_path), settings) is first_cache  # shards of one process share it
    first = tc.fill_missing_sentiment(items, settings, first_cache)
    assert sorted(count_calls) == sorted([HAPPY, ANGRY, FLAT])  # duplicates classified once
    assert first_cache.stats["writes"] == 3

    count_calls.clear()
    rerun_cache = LabelCache(str(tmp_path), "vader", settings.model_dump())  # as a new process would
    again = tc.fill_missing_sentiment(items, settings, rerun_cache)
    assert count_calls == []
    assert rerun_cache.stats["hits"] == 3 and rerun_cache.stats["misses"] == 0
    assert rerun_cache.stats["writes"] == 0
    pd.testing.assert_frame_equal(first.items, again.items)

    # Other thresholds are other labels: a fresh cache folder, and VADER runs again.
    stricter = TextClassifierSettings(positive_threshold=0.9)
    result = tc.fill_missing_sentiment(items, stricter, tc.make_cache(str(tmp_path), stricter))
    assert len(count_calls) == 3 and result.items.loc[0, "sentiment"] == "neutral"


def test_a_cache_for_other_settings_is_refused(tmp_path: Path) -> None:
    items = pd.DataFrame([_row("a", transcript=HAPPY)])
    wrong = LabelCache(str(tmp_path), "vader", {"kind": "vader"})
    with pytest.raises(ValueError, match="does not belong"):
        tc.fill_missing_sentiment(items, TextClassifierSettings(), wrong)
