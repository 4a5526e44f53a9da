"""Interval helpers shared by speech detection, Whisper's decode checks and the classifier windows."""

from __future__ import annotations

import pytest

from tasks.core.intervals import covered_seconds, merge_intervals


def test_merge_intervals_sorts_joins_touching_and_overlapping_and_drops_empty() -> None:
    assert merge_intervals([(3.0, 4.0), (0.0, 1.0), (0.5, 2.0), (2.0, 2.5), (5.0, 5.0), (6.0, 5.5)]) == [
        (0.0, 2.5),
        (3.0, 4.0),
    ]
    assert merge_intervals([]) == []
    assert merge_intervals([[1, 2]]) == [(1.0, 2.0)]  # lists (Parquet-read pairs) work too


def test_covered_seconds_counts_overlaps_once_and_clips_to_the_span() -> None:
    assert covered_seconds([(1.0, 2.0), (1.5, 3.0)], 0.0, 5.0) == pytest.approx(2.0)
    assert covered_seconds([(4.0, 9.0)], 0.0, 5.0) == pytest.approx(1.0)
    assert covered_seconds([(0.0, 1.0)], 2.0, 3.0) == 0.0
    assert covered_seconds([], 0.0, 5.0) == 0.0
