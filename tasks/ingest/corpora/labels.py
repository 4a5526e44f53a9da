"""Label vocabularies shared by corpus adapters: emotion -> sentiment, sentiment spellings, gender, age.

Kept in one place so every corpus maps labels the same way and a spec's `emotion_map` changes the
mapping for one source without code changes. A label we cannot map is never guessed (in particular
never defaulted to neutral): adapters turn it into an `unmapped_label` reject.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Default emotion -> sentiment table (docs: /work/shared/design/facts.md). None = deliberately unmapped.
DEFAULT_EMOTION_MAP: dict[str, str | None] = {
    "happy": "positive",
    "happiness": "positive",
    "joy": "positive",
    "excited": "positive",
    "neutral": "neutral",
    "calm": "neutral",
    "sad": "negative",
    "sadness": "negative",
    "angry": "negative",
    "anger": "negative",
    "fear": "negative",
    "fearful": "negative",
    "disgust": "negative",
    "frustrated": "negative",
    "contempt": "negative",
    "surprise": None,
    "surprised": None,
    "other": None,
    "xxx": None,
    "no-agreement": None,
}

# Accepted spellings of the three sentiments (compared lower-cased, stripped).
_SENTIMENT_SPELLINGS: dict[str, str] = {
    "negative": "negative",
    "neg": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "positive": "positive",
    "pos": "positive",
}

_GENDER_SPELLINGS: dict[str, str] = {
    "f": "female",
    "female": "female",
    "woman": "female",
    "w": "female",
    "female_feminine": "female",
    "m": "male",
    "male": "male",
    "man": "male",
    "male_masculine": "male",
    "other": "other",
    "nonbinary": "other",
    "non-binary": "other",
    "non_binary": "other",
    "nb": "other",
    "x": "other",
    "diverse": "other",
    "intersex": "other",
    "transgender": "other",
}

# Common Voice age buckets (including its historical spelling "fourties").
_AGE_WORDS: dict[str, str] = {
    "teens": "10s",
    "twenties": "20s",
    "thirties": "30s",
    "forties": "40s",
    "fourties": "40s",
    "fifties": "50s",
    "sixties": "60s",
    "seventies": "70s",
    "eighties": "80s",
    "nineties": "90s",
}

_MAX_AGE = 120


class LabelError(ValueError):
    """A label value that cannot be mapped; str(err) is the reject detail, reason is unmapped_label."""

    reason = "unmapped_label"


def is_blank(value: Any) -> bool:
    """True for None, NaN and empty/whitespace strings: the project's "not given"."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _key(value: Any) -> str:
    return str(value).strip().lower()


def map_emotion(label: str, overrides: Mapping[str, str | None] | None = None) -> str | None:
    """Sentiment for an emotion label, or None when it is unmapped (the caller rejects it).

    Matching is case-insensitive. `overrides` (a source's `emotion_map`) wins over the default table,
    and an override to None unmaps a label the table would map.
    """
    key = _key(label)
    for name, target in (overrides or {}).items():
        if _key(name) == key:
            return target
    return DEFAULT_EMOTION_MAP.get(key)


# Suggestions for labels the default table leaves unmapped, per label as corpora spell them: the
# reject's hint must fit the corpus (TESS `ps` is a pleasant surprise: positive, not neutral).
# label (lower case) -> (suggested sentiment or None = leave it unmapped, what the label means).
EMOTION_HINTS: dict[str, tuple[str | None, str]] = {
    "ps": ("positive", "pleasant surprise (TESS)"),
    "pleasant_surprise": ("positive", "pleasant surprise (TESS)"),
    "pleasant surprise": ("positive", "pleasant surprise (TESS)"),
    "pleasant_surprised": ("positive", "pleasant surprise (TESS)"),
    "su": (None, "surprise (SAVEE): pleasant or not depends on the clip; map it to positive or negative "
                 "only if your corpus says which"),
    "surprise": (None, "surprise: pleasant or not depends on the clip; map it only if your corpus says which"),
    "surprised": (None, "surprise: pleasant or not depends on the clip; map it only if your corpus says which"),
    "sur": (None, "surprise (IEMOCAP): pleasant or not depends on the clip"),
    "boredom": ("negative", "boredom (EmoDB, low-arousal negative)"),
    "bored": ("negative", "boredom (low-arousal negative)"),
    "anxiety": ("negative", "anxiety/fear (EmoDB)"),
    "anxious": ("negative", "anxiety/fear"),
    "scared": ("negative", "fear"),
    "disgusted": ("negative", "disgust"),
    "annoyed": ("negative", "annoyance"),
    "annoyance": ("negative", "annoyance"),
    "frustration": ("negative", "frustration"),
    "shame": ("negative", "shame"),
    "guilt": ("negative", "guilt"),
    "amused": ("positive", "amusement (EmoV-DB)"),
    "amusement": ("positive", "amusement"),
    "pleasure": ("positive", "pleasure"),
    "love": ("positive", "love"),
    "pride": ("positive", "pride"),
    "relief": ("positive", "relief"),
    "contentment": ("positive", "contentment"),
    "sleepy": ("neutral", "sleepiness (EmoV-DB): low arousal, no valence"),
    "other": (None, "no emotion category: leave it unmapped (rejected) unless you know what it holds"),
    "oth": (None, "no emotion category (IEMOCAP): leave it unmapped unless you know what it holds"),
    "xxx": (None, "annotators did not agree (IEMOCAP): leave it unmapped"),
    "no-agreement": (None, "annotators did not agree (MSP-Podcast X): leave it unmapped"),
}


def emotion_hint(label: str) -> str:
    """The fix to suggest for an unmapped emotion label: a mapping that fits what the label means."""
    key = _key(label)
    hint = EMOTION_HINTS.get(key)
    if hint is None:
        return (f"e.g. emotion_map: {{{key}: negative|neutral|positive}} for what {label!r} means in this corpus, "
                f"or {{{key}: null}} to keep rejecting it (docs/corpora.md, emotion tables)")
    target, meaning = hint
    if target is None:
        return f"{label!r} is {meaning}; to map it anyway: emotion_map: {{{key}: positive|negative}}"
    return f"{label!r} is {meaning}: emotion_map: {{{key}: {target}}}"


def unmapped_emotion_detail(label: str, source_name: str, item: str) -> str:
    """The reject sentence for an emotion that has no sentiment: names the label and a fix that fits it."""
    return (
        f"{item}: emotion {label!r} has no sentiment mapping; add it to emotion_map of source "
        f"{source_name!r} in the dataset spec ({emotion_hint(str(label).strip())})"
    )


def normalize_sentiment(value: Any) -> str | None:
    """'negative' | 'neutral' | 'positive', or None when the value is blank.

    Accepted (case-insensitive, surrounding spaces ignored): negative/neutral/positive and the short
    forms neg/neu/pos. Numbers are NOT accepted: 0/1/2 (class index) and -1/0/1 (polarity) are both
    common and disagree on what 0 and 1 mean, so a numeric column would be silently mislabelled.
    Anything else raises LabelError naming the value.
    """
    if is_blank(value):
        return None
    found = _SENTIMENT_SPELLINGS.get(_key(value))
    if found is None:
        raise LabelError(
            f"sentiment {value!r} is not one of negative, neutral, positive (or neg, neu, pos); "
            "numeric codes are ambiguous and not accepted"
        )
    return found


def normalize_gender(value: Any) -> str | None:
    """'female' | 'male' | 'other', or None when blank or not a recognised spelling.

    Gender is descriptive metadata, so an unknown spelling (or "do_not_wish_to_say") becomes None
    rather than a reject.
    """
    if is_blank(value):
        return None
    return _GENDER_SPELLINGS.get(_key(value))


def age_bucket(age: Any) -> str | None:
    """Decade bucket such as '20s' for '34', '34.0', 34 or 'twenties'; None when blank or not an age."""
    if is_blank(age):
        return None
    text = _key(age)
    if text in _AGE_WORDS:
        return _AGE_WORDS[text]
    if not re.fullmatch(r"\d+(\.\d+)?", text):
        return None
    years = float(text)
    if years > _MAX_AGE:
        return None
    return f"{int(years) // 10 * 10}s"
