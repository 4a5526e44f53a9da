"""What the text sentiment labelers share: which rows count as unlabelled, what text they read, their
reject rows, and how class probabilities become a label.

Comprehend, VADER, the trained classifier and a local HF model must agree on these, or the same row
would be labelled by one labeler and rejected by another (and `on_failed` hand-offs would differ).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from manifests.schema import SENTIMENTS
from tasks.core.rows import reject_row

STAGE = "sentiment"
TEXT_COLUMNS: tuple[str, ...] = ("transcript", "transcript_raw")  # first one with text is classified


def is_missing(value: Any) -> bool:
    """None, NaN/NA, or a blank string: a cell that holds no label or text."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text_of(row: Mapping[str, Any]) -> str | None:
    """The text a row's sentiment is read from: its normalised transcript, else the raw one."""
    for column in TEXT_COLUMNS:
        value = row.get(column)
        if not is_missing(value):
            return str(value)
    return None


def stage_reject(row: Mapping[str, Any], reason: str, detail: str) -> dict[str, str]:
    """A reject row of the sentiment stage for one utterance row."""
    return reject_row(str(row.get("source")), str(row.get("utterance_id")), STAGE, reason, detail)


def label_from_scores(scores: Mapping[str, float]) -> dict[str, Any]:
    """The label of one text from its class probabilities: the arg-max class (ties go to neutral)."""
    best = max(SENTIMENTS, key=lambda c: (scores[c], c == "neutral"))
    return {
        "p_negative": scores["negative"],
        "p_neutral": scores["neutral"],
        "p_positive": scores["positive"],
        "sentiment": best,
        "sentiment_confidence": scores[best],
        "compound": None,
    }
