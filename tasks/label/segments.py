"""Classifier windows (in utterance time) and speech presence from Silero VAD.

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

Speech presence: `speech_intervals` runs faster-whisper's bundled Silero VAD (ONNX, no download)
on the clean utterance; intervals are seconds from the utterance start at the original rate
("source time relative to offset_s"). A window's `speech_ratio` is the speech share of its real
audio (`start_s .. start_s + valid_s`, after dividing the intervals by the recipe's speed), so a
short padded utterance is judged on its audio, not its padding. Windows below `min_speech_ratio`
are non-speech: their sentiment is null (contract).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from manifests.schema import CLASS_INDEX, REJECT_REASONS
from tasks.core.rows import reject_row, rejects_frame
from tasks.spec import SegmentSpec

log = logging.getLogger(__name__)

STAGE = "segments"
VAD_SR = 16000
_EPS = 1e-6
# Tighter than faster-whisper's transcription defaults (2 s silence, 400 ms pad): we want where the
# speech is, to +-0.1 s, not generous chunks for an ASR model.
VAD_MIN_SPEECH_MS = 150
VAD_MIN_SILENCE_MS = 300
VAD_PAD_MS = 100

Interval = tuple[float, float]


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


def speech_ratio(intervals: Iterable[Sequence[float]], start: float, end: float) -> float:
    """Share of [start, end] covered by the (possibly overlapping) speech intervals."""
    length = end - start
    if length <= 0:
        return 0.0
    return min(1.0, covered_seconds(intervals, start, end) / length)


def covered_seconds(intervals: Iterable[Sequence[float]], start: float, end: float) -> float:
    """Seconds of [start, end] covered by the (possibly overlapping) intervals."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in merge_intervals(intervals))


def speech_intervals(audio: np.ndarray, sr: int = VAD_SR, threshold: float = 0.5) -> list[Interval]:
    """Speech (start, end) seconds in `audio` (mono float) by faster-whisper's bundled Silero VAD."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim > 1:
        samples = samples.mean(axis=-1 if samples.shape[-1] <= 8 else 0)
    if sr != VAD_SR and samples.size:
        from scipy.signal import resample_poly

        g = math.gcd(int(sr), VAD_SR)
        samples = resample_poly(samples, VAD_SR // g, int(sr) // g).astype(np.float32)
    if samples.size == 0:
        return []
    options = VadOptions(
        threshold=threshold,
        min_speech_duration_ms=VAD_MIN_SPEECH_MS,
        min_silence_duration_ms=VAD_MIN_SILENCE_MS,
        speech_pad_ms=VAD_PAD_MS,
    )
    stamps = get_speech_timestamps(samples, vad_options=options, sampling_rate=VAD_SR)
    return [(round(s["start"] / VAD_SR, 3), round(s["end"] / VAD_SR, 3)) for s in stamps]


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
    """
    records: list[dict] = []
    for row in rows.to_dict("records"):
        speed = _speed(row.get("speed"))
        intervals = [(a / speed, b / speed) for a, b in _as_intervals(row.get("speech_intervals"))]
        base = {k: v for k, v in row.items() if k != "speech_intervals"}
        for start, end, valid in window_bounds(
            float(row["duration_s"]), spec.window_s, spec.hop_s, spec.min_last_window_s
        ):
            ratio = round(speech_ratio(intervals, start, start + valid), 6)
            present = ratio >= spec.min_speech_ratio
            sentiment = row.get("sentiment") if present else None
            records.append(
                {
                    **base,
                    "row_id": f"{row['row_id']}@{start:.2f}",
                    "start_s": start,
                    "end_s": end,
                    "valid_s": valid,
                    "speech_ratio": ratio,
                    "speech_present": present,
                    "sentiment": sentiment,
                    "class_index": CLASS_INDEX.get(sentiment) if isinstance(sentiment, str) else None,
                }
            )
    columns = [c for c in rows.columns if c != "speech_intervals"]
    columns += [c for c in ("start_s", "end_s", "valid_s", "speech_ratio", "speech_present", "class_index")
                if c not in columns]
    out = pd.DataFrame(records, columns=columns)
    out["speech_present"] = out["speech_present"].astype(bool)
    out["class_index"] = out["class_index"].astype("Int32")
    return out


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


def detect_speech(items: pd.DataFrame, threshold: float = 0.5) -> tuple[pd.Series, pd.DataFrame]:
    """VAD intervals per readable utterance (Series indexed by utterance_id) and rejects for the rest.

    The Series has no entry for an utterance that could not be read; an empty list means "read, no
    speech found". Rejects use stage "segments" so the flow can drop those utterances.
    """
    from tasks.core.audio import read_audio
    from tasks.core.threads import pin_native_threads

    pin_native_threads()  # resampling and the VAD must not depend on the thread environment

    found: dict[str, list[Interval]] = {}
    rejects: list[dict[str, str]] = []
    for row in items.to_dict("records"):
        uid = str(row.get("utterance_id"))
        uri = row.get("audio_uri")
        offset = row.get("offset_s")
        duration = row.get("duration_s")
        offset = 0.0 if offset is None or pd.isna(offset) else float(offset)
        duration = None if duration is None or pd.isna(duration) else float(duration)
        try:
            audio = read_audio(uri, offset_s=offset, duration_s=duration, target_sr=VAD_SR, mono=True)
        except Exception as err:  # any decoder failure is a per-item reject, never a crashed run
            log.warning("speech detection could not read %s (%s): %s", uid, uri, err)
            reason = getattr(err, "reason", None)
            reason = reason if reason in REJECT_REASONS else "unreadable_audio"
            cause = getattr(err, "detail", None) or f"{type(err).__name__}: {err}"
            rejects.append(
                reject_row(
                    source=str(row.get("source")),
                    input_ref=uid,
                    stage=STAGE,
                    reason=reason,
                    detail=(
                        f"speech detection of {uid} could not read {uri} at {offset:g} s: {cause} "
                        f"Check that the file is present and decodable."
                    ),
                )
            )
            continue
        found[uid] = speech_intervals(audio, VAD_SR, threshold)
    series = pd.Series(list(found.values()), index=pd.Index(list(found), dtype=object, name="utterance_id"),
                       dtype=object, name="speech_intervals")
    return series, rejects_frame(rejects)


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
