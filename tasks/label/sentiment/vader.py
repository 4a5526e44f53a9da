"""VADER, the default offline text sentiment labeler: lexicon scores to a class, a confidence and p_* values.

VADER (vaderSentiment 3.3.2) is a lexicon and rule-based English classifier: it ships its lexicon,
needs no model download and labels thousands of sentences a second on one core. The dispatcher
(tasks/label/sentiment/text_classifier.py) decides which rows it labels and caches its labels.

Decision (VADER's documented convention, thresholds from `TextClassifierSettings`):
``compound >= positive_threshold`` is positive, ``compound <= negative_threshold`` is negative,
anything in between is neutral.

Scores: ``p_negative``/``p_neutral``/``p_positive`` are VADER's ``neg``/``neu``/``pos``, the shares
of the text's sentiment intensity that are negative, neutral and positive (they sum to 1; a text
with no scorable token gets ``p_neutral = 1``). The compound itself goes to the extra column
``sentiment_compound``, so the decision can be re-made with other thresholds without re-labelling.

Confidence of the chosen class: how far the compound lies inside the class's interval, measured
from the decision boundary towards the class's most certain point and mapped to [0.5, 1]. At a
boundary the two neighbouring classes are equally likely (0.5); at the class's extreme it is 1::

    positive: 0.5 + 0.5 * (compound - pos_t) / (1 - pos_t)              (most certain at +1)
    negative: 0.5 + 0.5 * (neg_t - compound) / (neg_t + 1)              (most certain at -1)
    neutral:  0.5 + 0.5 * (1 - |compound| / pos_t)     for compound >= 0   (most certain at 0)
              0.5 + 0.5 * (1 - |compound| / |neg_t|)   for compound < 0

Compound 0 means VADER found no sentiment evidence, so it is the most certain neutral; each side is
scaled by its own threshold, so asymmetric thresholds stay fair. (Should the neutral band not contain
0, its centre takes that role.) Every class can therefore reach any confidence, and
``settings.min_confidence[class]`` is applied per class (a single threshold on ``|compound|`` would
reject every neutral). Known limit: a text whose positive and negative words cancel out is a
confident neutral; ``p_neutral`` is low for it, so it can be found.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tasks.label.sentiment.common import is_missing
from tasks.spec_labelers import TextClassifierSettings

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

LABELER_NAME = "vader"
ENGLISH_CODES = frozenset({"en", "eng", "english"})

_ANALYZER: SentimentIntensityAnalyzer | None = None
_ANALYZER_LOCK = threading.Lock()


def _analyzer() -> SentimentIntensityAnalyzer:
    """One analyzer per process: building it parses the 7,500-word lexicon."""
    global _ANALYZER
    if _ANALYZER is None:
        with _ANALYZER_LOCK:
            if _ANALYZER is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def check_thresholds(settings: TextClassifierSettings) -> None:
    """Refuse thresholds that leave no neutral band inside [-1, 1] (checked for every kind, before any work)."""
    neg_t, pos_t = settings.negative_threshold, settings.positive_threshold
    if not -1.0 <= neg_t < pos_t <= 1.0:
        raise ValueError(
            "labelers.text_classifier needs -1 <= negative_threshold < positive_threshold <= 1 "
            f"(got negative_threshold={neg_t}, positive_threshold={pos_t})"
        )


def class_of(compound: float, settings: TextClassifierSettings) -> str:
    """The class VADER's compound score falls in under the settings' thresholds."""
    if compound >= settings.positive_threshold:
        return "positive"
    if compound <= settings.negative_threshold:
        return "negative"
    return "neutral"


def confidence(compound: float, sentiment: str, settings: TextClassifierSettings) -> float:
    """Confidence of `sentiment` in [0.5, 1]: the compound's depth inside that class's interval."""
    neg_t, pos_t = settings.negative_threshold, settings.positive_threshold
    if sentiment == "positive":
        margin, span = compound - pos_t, 1.0 - pos_t
    elif sentiment == "negative":
        margin, span = neg_t - compound, neg_t + 1.0
    else:
        anchor = 0.0 if neg_t < 0.0 < pos_t else (pos_t + neg_t) / 2.0  # the most neutral compound
        span = pos_t - anchor if compound >= anchor else anchor - neg_t
        margin = span - abs(compound - anchor)
    if span <= 0.0:  # the class is a single point (threshold at +-1): it is certain when reached
        return 1.0
    return 0.5 + 0.5 * min(max(margin / span, 0.0), 1.0)


def classify(texts: Sequence[str], settings: TextClassifierSettings) -> list[dict[str, Any]]:
    """The label of each text (the fields of `text_classifier.LABEL_FIELDS`), with VADER's compound."""
    analyzer = _analyzer()
    out = []
    for text in texts:
        scores = analyzer.polarity_scores(text)
        neg, neu, pos = float(scores["neg"]), float(scores["neu"]), float(scores["pos"])
        if neg + neu + pos == 0.0:  # no scorable token at all: nothing says it is not neutral
            neu = 1.0
        compound = float(scores["compound"])
        sentiment = class_of(compound, settings)
        out.append(
            {
                "p_negative": neg,
                "p_neutral": neu,
                "p_positive": pos,
                "sentiment": sentiment,
                "sentiment_confidence": confidence(compound, sentiment, settings),
                "compound": compound,
            }
        )
    return out


def is_english(language: Any) -> bool:
    """True for en, en-US, en_GB, eng; a missing language is taken as English (the spec default)."""
    if is_missing(language):
        return True
    primary = str(language).strip().lower().replace("_", "-").split("-", 1)[0]
    return primary in ENGLISH_CODES
