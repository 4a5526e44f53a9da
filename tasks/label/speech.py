"""Speech presence from Silero VAD: where an utterance holds speech, in seconds from its start.

`speech_intervals` runs faster-whisper's bundled Silero VAD (ONNX, no download) on the clean
utterance; intervals are seconds from the utterance start at the original rate ("source time
relative to offset_s"). `detect_speech` does it for every readable utterance of a shard (the
speech stage, tasks/label/steps.py) and rejects the unreadable ones. Windows are cut from these
intervals at publish time (tasks/publish/windows.py); items where VAD hears little get a second
opinion (tasks/label/speech_presence.py).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from manifests.schema import REJECT_REASONS
from tasks.core.intervals import Interval
from tasks.core.rows import reject_row, rejects_frame

log = logging.getLogger(__name__)

STAGE = "segments"  # the stage its rejects name
VAD_SR = 16000
# Tighter than faster-whisper's transcription defaults (2 s silence, 400 ms pad): we want where the
# speech is, to +-0.1 s, not generous chunks for an ASR model.
VAD_MIN_SPEECH_MS = 150
VAD_MIN_SILENCE_MS = 300
VAD_PAD_MS = 100


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
