"""Classifier windows: the fixed-length slices of each utterance the classifier stage is cut into.

Window rule (what the validator checks). Every window is exactly `window_s` long:
- an utterance no longer than one window gets one window (0, window_s) with
  `valid_s = duration` (the reader pads with zeros, so every example has the same length and
  padding length never becomes a class cue);
- a longer utterance gets windows at 0, hop, 2*hop, ... while they fit entirely; if the tail
  after the last full window is >= `min_last_window_s` (and > 0), one more full window is added
  aligned to the END (start = duration - window_s, valid_s = window_s), so no padding appears in
  the middle of the corpus; a shorter tail is dropped.
So `end_s - start_s == window_s` always, `valid_s <= window_s`, and `valid_s < window_s` only for the
single window of a short utterance. Times are rounded to microseconds.

Speech presence: the utterance's speech intervals come from Silero VAD (tasks/label/speech.py), in
seconds from the utterance start at the original rate. A window's `speech_ratio` is the speech share
of its real audio (`start_s .. start_s + valid_s`, after dividing the intervals by the recipe's
speed), so a short padded utterance is judged on its audio, not its padding. Windows below `min_speech_ratio`
are non-speech: their sentiment is null (contract).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from manifests.schema import CLASS_INDEX
from tasks.core.intervals import Interval, covered_by_merged, merge_intervals
from tasks.spec import SegmentSpec

_EPS = 1e-6


def _us(x: float) -> float:
    """Round to microseconds (and turn -0.0 into 0.0)."""
    return round(float(x), 6) + 0.0


def window_bounds(
    duration_s: float, window_s: float = 5.0, hop_s: float = 2.5, min_last_window_s: float = 1.0
) -> list[tuple[float, float, float]]:
    """(start, end, valid) windows in utterance time, following the module's window rule."""
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window_s and hop_s must be positive (got {window_s}, {hop_s})")
    duration = _us(duration_s) if duration_s is not None and math.isfinite(duration_s) else 0.0
    window = _us(window_s)
    if duration <= 0:
        return []
    if duration <= window + _EPS:
        return [(0.0, window, min(duration, window))]
    windows: list[tuple[float, float, float]] = []
    k = 0
    while True:
        start = _us(k * hop_s)
        if _us(start + window) > duration:
            break
        windows.append((start, _us(start + window), window))
        k += 1
    tail = _us(duration - windows[-1][1])  # exact comparisons on microsecond-rounded values
    if tail > 0 and tail >= _us(min_last_window_s):
        start = _us(duration - window)
        windows.append((start, duration, window))
    return windows


def speech_ratio(intervals: Iterable[Sequence[float]], start: float, end: float) -> float:
    """Share of [start, end] covered by the (possibly overlapping) speech intervals."""
    return _merged_ratio(merge_intervals(intervals), start, end)


def _merged_ratio(merged: list[Interval], start: float, end: float) -> float:
    """`speech_ratio` of intervals already merged (an utterance's, once for all its windows)."""
    length = end - start
    if length <= 0:
        return 0.0
    return min(1.0, covered_by_merged(merged, start, end) / length)


def _speed(value: object) -> float:
    try:
        speed = float(value)
    except (TypeError, ValueError):
        return 1.0
    return speed if math.isfinite(speed) and speed > 0 else 1.0


def _as_intervals(value: object) -> list[Interval]:
    """Intervals from a list, a Parquet-read array of pairs, or a null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [(float(pair[0]), float(pair[1])) for pair in value]  # type: ignore[union-attr]


def classifier_windows(rows: pd.DataFrame, spec: SegmentSpec) -> pd.DataFrame:
    """One row per window of each utterance-level stage row (see the module docstring).

    Needs row_id, duration_s (utterance time), speed and speech_intervals (seconds from the
    utterance start at the original rate); every other column is copied, speech_intervals dropped.
    Built a column at a time: each column's values as `to_dict("records")` yields them, repeated per
    window, and the frame made from the rows as tuples, which infers the same dtypes as the records
    did (tests/tasks/publish/test_windows.py keeps the record loop as the oracle).
    """
    from pandas.api.types import is_object_dtype
    from pandas.core.dtypes.cast import maybe_box_native

    values: dict[str, list] = {}  # a repeated column name: the last one, as in a record
    for k, name in enumerate(rows.columns):
        col = rows.iloc[:, k]
        if isinstance(col.dtype, pd.StringDtype):  # Python str and the missing marker, as iteration gives
            values[name] = col.tolist()  # ~20x faster than iterating an Arrow-backed column
            continue
        boxed = is_object_dtype(col.dtype) or isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
        values[name] = list(map(maybe_box_native, col)) if boxed else list(col)
    n = len(rows)
    missing = [None] * n
    take: list[int] = []
    new: dict[str, list] = {c: [] for c in ("row_id", "start_s", "end_s", "valid_s", "speech_ratio",
                                            "speech_present", "sentiment", "class_index")}
    for i, (row_id, duration, speed_value, spans, sentiment) in enumerate(zip(
            values["row_id"], values["duration_s"], values.get("speed", missing),
            values.get("speech_intervals", missing), values.get("sentiment", missing), strict=True)):
        speed = _speed(speed_value)
        merged = merge_intervals((a / speed, b / speed) for a, b in _as_intervals(spans))  # once per row
        for start, end, valid in window_bounds(float(duration), spec.window_s, spec.hop_s, spec.min_last_window_s):
            ratio = round(_merged_ratio(merged, start, start + valid), 6)
            present = ratio >= spec.min_speech_ratio
            label = sentiment if present else None
            take.append(i)
            new["row_id"].append(f"{row_id}@{start:.2f}")
            new["start_s"].append(start)
            new["end_s"].append(end)
            new["valid_s"].append(valid)
            new["speech_ratio"].append(ratio)
            new["speech_present"].append(present)
            new["sentiment"].append(label)
            new["class_index"].append(CLASS_INDEX.get(label) if isinstance(label, str) else None)
    columns = [c for c in rows.columns if c != "speech_intervals"]
    columns += [c for c in ("start_s", "end_s", "valid_s", "speech_ratio", "speech_present", "class_index")
                if c not in columns]
    if take:
        out = _frame_as_from_tuples([new[c] if c in new else values[c] for c in columns], columns,
                                    [c not in new for c in columns], np.asarray(take, dtype=np.intp))
    else:
        out = pd.DataFrame([], columns=columns)
    out["speech_present"] = out["speech_present"].astype(bool)
    out["class_index"] = out["class_index"].astype("Int32")
    return out


def _frame_as_from_tuples(data: list[list], columns: list[str], repeat: list[bool], take: np.ndarray) -> pd.DataFrame:
    """`pd.DataFrame(list(zip(*columns_data)), columns=columns)` without building a tuple per row.

    Each column becomes one object array (a copied column's values repeated per window by `take`), and
    the arrays go through the very conversion pandas gives the columns of a list of tuples
    (`convert_object_array`, then `arrays_to_mgr`), so every dtype is what the tuples gave (the
    record loop in tests/tasks/publish/test_windows.py is the oracle)."""
    from pandas.core.dtypes.cast import construct_1d_object_array_from_listlike  # pandas internals (>= 1.5)
    from pandas.core.indexes.api import default_index
    from pandas.core.internals.construction import convert_object_array

    arrays = [construct_1d_object_array_from_listlike(values)[take] if again
              else construct_1d_object_array_from_listlike(values) for values, again in zip(data, repeat, strict=True)]
    return pd.DataFrame._from_arrays(convert_object_array(arrays, dtype=None), columns=pd.Index(columns),
                                     index=default_index(len(take)))


def _spread(candidates: list[tuple[float, float, float]], k: int) -> list[tuple[float, float, float]]:
    """k windows spread evenly over the candidates (first and last included), deterministic."""
    if k <= 0 or not candidates:
        return []
    if k >= len(candidates):
        return candidates
    if k == 1:
        return [candidates[len(candidates) // 2]]
    picks = sorted({round(i * (len(candidates) - 1) / (k - 1)) for i in range(k)})
    return [candidates[i] for i in picks]


_NOISE_COLUMNS = [
    "row_id", "utterance_id", "source", "split", "sentiment", "source_audio_uri", "audio_uri", "offset_s",
    "duration_s", "recipe_applied", "speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain",
    "aug_seed", "sentiment_origin", "transcript_origin", "start_s", "end_s", "valid_s", "speech_ratio",
    "speech_present", "class_index",
]


def noise_windows(noise_files: list[tuple[str, str, float, str]], spec: SegmentSpec) -> pd.DataFrame:
    """Non-speech example windows cut from noise files: (noise_id, uri, duration_s, split) each.

    Each window is its own short "utterance": offset_s/duration_s name the cut in the noise file,
    start_s/end_s the window inside it (0..window_s), so readers need no special case.
    """
    records: list[dict] = []
    for noise_id, uri, duration_s, split in noise_files:
        candidates = window_bounds(duration_s, spec.window_s, spec.hop_s, spec.min_last_window_s)
        for start, _end, valid in _spread(candidates, spec.non_speech_windows_per_noise_file):
            records.append(
                {
                    "row_id": f"noise/{noise_id}@{start:.2f}",
                    "utterance_id": f"noise/{noise_id}",
                    "source": "noise",
                    "split": split,
                    "sentiment": None,
                    "source_audio_uri": uri,
                    "audio_uri": uri,
                    "offset_s": start,
                    "duration_s": valid,
                    "recipe_applied": False,
                    "speed": 1.0,
                    "rir_id": None,
                    "noise_id": None,
                    "noise_offset_s": None,
                    "snr_db": None,
                    "gain": 1.0,
                    "aug_seed": None,
                    "sentiment_origin": None,
                    "transcript_origin": None,
                    "start_s": 0.0,
                    "end_s": _us(spec.window_s),
                    "valid_s": valid,
                    "speech_ratio": 0.0,
                    "speech_present": False,
                    "class_index": None,
                }
            )
    out = pd.DataFrame.from_records(records, columns=_NOISE_COLUMNS)
    out["speech_present"] = out["speech_present"].astype(bool)
    out["class_index"] = out["class_index"].astype("Int32")
    return out


def check_windows(windows: pd.DataFrame, spec: SegmentSpec) -> list[str]:
    """Sentences for windows that break the window rule (length, valid_s, padding only when short)."""
    problems: list[str] = []
    if windows.empty:
        return problems
    length = (windows["end_s"] - windows["start_s"]).round(6)
    bad_len = windows[(length - spec.window_s).abs() > _EPS]
    if not bad_len.empty:
        problems.append(f"{len(bad_len)} windows are not {spec.window_s:g} s long (e.g. {bad_len['row_id'].iloc[0]})")
    bad_valid = windows[(windows["valid_s"] > spec.window_s + _EPS) | (windows["valid_s"] <= 0)]
    if not bad_valid.empty:
        problems.append(f"{len(bad_valid)} windows have valid_s outside (0, window] (e.g. {bad_valid['row_id'].iloc[0]})")
    is_padded = windows["valid_s"] < spec.window_s - _EPS
    not_alone = windows["start_s"].abs() > _EPS
    if "utterance_id" in windows.columns:
        not_alone |= windows.groupby("utterance_id")["start_s"].transform("size") > 1
    padded = windows[is_padded & not_alone]
    if not padded.empty:
        problems.append(
            f"{len(padded)} padded windows are not the single window of a short utterance "
            f"(e.g. {padded['row_id'].iloc[0]})"
        )
    return problems
