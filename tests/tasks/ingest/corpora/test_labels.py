"""Label vocabularies: emotion -> sentiment, sentiment spellings, gender, age buckets."""

from __future__ import annotations

import math

import pytest

from tasks.ingest.corpora.labels import (
    LabelError,
    age_bucket,
    map_emotion,
    normalize_gender,
    normalize_sentiment,
    unmapped_emotion_detail,
)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("happy", "positive"),
        ("Joy", "positive"),
        ("EXCITED", "positive"),
        ("neutral", "neutral"),
        ("calm", "neutral"),
        ("sad", "negative"),
        ("angry", "negative"),
        ("anger", "negative"),
        ("fear", "negative"),
        ("fearful", "negative"),
        ("disgust", "negative"),
        ("frustrated", "negative"),
        (" contempt ", "negative"),
        ("surprise", None),
        ("surprised", None),
        ("other", None),
        ("xxx", None),
        ("no-agreement", None),
        ("bored", None),
    ],
)
def test_default_emotion_map(label: str, expected: str | None) -> None:
    assert map_emotion(label) == expected


def test_overrides_win_case_insensitively_and_can_unmap() -> None:
    overrides = {"Surprised": "positive", "calm": None, "bored": "neutral"}
    assert map_emotion("surprised", overrides) == "positive"
    assert map_emotion("CALM", overrides) is None
    assert map_emotion("bored", overrides) == "neutral"
    assert map_emotion("happy", overrides) == "positive"


def test_unmapped_detail_names_label_source_and_fix() -> None:
    detail = unmapped_emotion_detail("Surprised", "ravdess", "x.wav")
    assert "'Surprised'" in detail and "emotion_map" in detail and "'ravdess'" in detail and "x.wav" in detail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("positive", "positive"),
        ("Negative", "negative"),
        (" NEUTRAL ", "neutral"),
        ("pos", "positive"),
        ("Neg", "negative"),
        ("neu", "neutral"),
        (None, None),
        ("", None),
        ("  ", None),
        (math.nan, None),
    ],
)
def test_normalize_sentiment(value: object, expected: str | None) -> None:
    assert normalize_sentiment(value) == expected


@pytest.mark.parametrize("value", ["mixed", "0", "1", 2, "-1", "happy", "<mixed>"])
def test_normalize_sentiment_refuses_unknown_and_numeric(value: object) -> None:
    with pytest.raises(LabelError) as info:
        normalize_sentiment(value)
    assert repr(value) in str(info.value)
    assert info.value.reason == "unmapped_label"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("f", "female"),
        ("Female", "female"),
        ("woman", "female"),
        ("W", "female"),
        ("female_feminine", "female"),
        ("m", "male"),
        ("MALE", "male"),
        ("man", "male"),
        ("male_masculine", "male"),
        ("other", "other"),
        ("non-binary", "other"),
        ("nonbinary", "other"),
        ("", None),
        (None, None),
        ("do_not_wish_to_say", None),
    ],
)
def test_normalize_gender(value: str | None, expected: str | None) -> None:
    assert normalize_gender(value) == expected


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("34", "30s"),
        ("34.0", "30s"),
        (34, "30s"),
        (29.9, "20s"),
        ("twenties", "20s"),
        ("Fourties", "40s"),
        ("teens", "10s"),
        ("7", "0s"),
        ("", None),
        (None, None),
        ("unknown", None),
        ("-3", None),
        ("250", None),
    ],
)
def test_age_bucket(age: object, expected: str | None) -> None:
    assert age_bucket(age) == expected
