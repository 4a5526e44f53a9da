"""Time intervals (start, end) in seconds: merging overlaps and measuring how much of a span they cover.

Shared by speech detection (tasks/label/speech.py, tasks/label/speech_presence.py), Whisper's packed-decode
checks (tasks/label/transcripts/whisper_decode.py) and the classifier windows (tasks/publish/windows.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Interval = tuple[float, float]


def merge_intervals(intervals: Iterable[Sequence[float]]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time (empty ones dropped)."""
    spans = sorted((float(a), float(b)) for a, b in intervals if float(b) > float(a))
    merged: list[Interval] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def covered_seconds(intervals: Iterable[Sequence[float]], start: float, end: float) -> float:
    """Seconds of [start, end] covered by the (possibly overlapping) intervals."""
    return covered_by_merged(merge_intervals(intervals), start, end)


def covered_by_merged(merged: Sequence[Interval], start: float, end: float) -> float:
    """`covered_seconds` of intervals `merge_intervals` already merged: for many spans over one set."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in merged)
