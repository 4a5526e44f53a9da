"""What both ASR labelers (Whisper, Amazon Transcribe) do the same way around their engine call.

Both keep human transcripts (normalised; a transcript with no words left is a reject), send only
the rest to the engine, and return the kept rows with the same transcript columns. Sharing
`TranscriptStage` keeps those rules, the column dtypes and the reject rows identical for both, so
`on_failed: whisper` can hand rows from one labeler to the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.core.rows import StageResult, reject_row, rejects_frame
from tasks.label.transcripts.normalize import base_language, normalize_transcript

STAGE = "transcripts"
TEXT_COLUMNS: tuple[str, ...] = ("transcript", "transcript_raw", "transcript_origin", "language", "segment_key")
SCORE_COLUMNS: tuple[str, ...] = ("transcript_confidence", "avg_logprob", "no_speech_prob", "compression_ratio")


def has_text(value: Any) -> bool:
    """A non-blank string (None, NaN and whitespace are no text)."""
    return isinstance(value, str) and bool(value.strip())


def with_transcript_columns(items: pd.DataFrame) -> pd.DataFrame:
    """A copy with every transcript column present (object text, float64 scores) and a 0..n-1 index."""
    items = items.copy()
    for column in TEXT_COLUMNS:
        if column not in items.columns:
            items[column] = None
        items[column] = items[column].astype(object)
    for column in SCORE_COLUMNS:
        if column not in items.columns:
            items[column] = np.nan
        items[column] = items[column].astype("float64")
    return items.reset_index(drop=True)


class TranscriptStage:
    """The rows of one labeler call, the rejects so far, and the steps both labelers share."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.items = with_transcript_columns(items)
        self.languages = [base_language(v) for v in self.items["language"]]
        self.rejects: list[dict[str, str]] = []
        self.rejected: set[int] = set()

    def utt(self, i: int) -> str:
        return str(self.items.at[i, "utterance_id"])

    def reject(self, i: int, reason: str, detail: str) -> None:
        self.rejects.append(reject_row(str(self.items.at[i, "source"]), self.utt(i), STAGE, reason, detail))
        self.rejected.add(i)

    def keep_human_transcripts(self) -> list[int]:
        """Normalise the rows that have a transcript; return the positions that need the engine."""
        need = []
        for i, raw in enumerate(self.items["transcript_raw"]):
            if not has_text(raw):
                need.append(i)
                continue
            text = normalize_transcript(raw, self.languages[i])
            if not text:
                self.reject(i, "missing_label", f"{self.utt(i)}: transcript {raw!r} has no words after "
                            "normalisation; give the spoken words or drop the row")  # fmt: skip
                continue
            self.items.at[i, "transcript"] = text
            if not has_text(self.items.at[i, "transcript_origin"]):
                self.items.at[i, "transcript_origin"] = "human"
        return need

    def result(self) -> StageResult:
        """The rows not rejected (index 0..n-1) and the rejects."""
        kept = [i for i in range(len(self.items)) if i not in self.rejected]
        return StageResult(items=self.items.iloc[kept].reset_index(drop=True), rejects=rejects_frame(self.rejects))


def nearest_span(spans: list[tuple[float, float]], t: float, candidates: list[int] | None = None) -> int:
    """The span holding time `t`, or the nearest one (a word in a gap goes to the closer clip)."""

    def distance(i: int) -> float:
        start, end = spans[i]
        return 0.0 if start <= t <= end else min(abs(t - start), abs(t - end))

    return min(candidates or range(len(spans)), key=distance)
