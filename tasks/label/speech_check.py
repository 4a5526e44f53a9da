"""A second opinion on speech presence, for items where Silero VAD hears little or no speech.

Why: Silero VAD (threshold 0.5) misses loud, strong-intensity acted speech (shouting, fear; RAVDESS
actor 06 scores 0.16-0.80 at best), so a labelled utterance would become "non-speech" and its human
sentiment would never reach the classifier stage: a bias against high-arousal speech. Every item a
corpus delivers is meant to be speech, so when VAD covers less than ``LOW_SPEECH_SHARE`` of an item,
this detector listens again with cues VAD does not use.

The detector (deterministic numpy, no model): 40 ms frames every 10 ms on 16 kHz audio, high-passed at
60 Hz. A frame is *voiced* when it is loud (above ``FLOOR_DBFS`` and within ``RANGE_DB`` of the
loudest frame) and periodic with a pitch of 70-600 Hz (YIN's cumulative mean normalised difference
below ``APERIODICITY``; de Cheveigné & Kawahara 2002). The item is speech only when, beyond
``MIN_VOICED_S`` of voiced frames, it also has what speech has and hum, tones and stationary noise
lack: a moving pitch (spread of the voiced frames' pitch >= ``MIN_PITCH_SPREAD_ST`` semitones) and a
syllabic loudness contour (spread of the loud frames' level >= ``MIN_LEVEL_SPREAD_DB``). White, pink
and brown noise are not periodic; mains hum's period (50/60 Hz) is longer than the longest pitch period
searched, and its level is flat; a steady or beeping tone has one pitch. Speech it finds is returned as
intervals of voiced frames, padded and bridged like VAD's (``tasks.label.speech`` constants).
"""

from __future__ import annotations

import numpy as np

SR = 16000
VERSION = 1  # bump when the detector's decisions can change (work results and caches are keyed by it)
LOW_SPEECH_SHARE = 0.2  # VAD speech below this share of an item asks for a second opinion
FRAME = 640  # 40 ms analysis frame
HOP = 160  # 10 ms
WINDOW = 400  # 25 ms integration window of the difference function
TAU_MIN = SR // 600  # highest pitch searched: 600 Hz (screams, children)
TAU_MAX = SR // 70  # lowest pitch searched: 70 Hz (below it: mains hum at 50/60 Hz)
APERIODICITY = 0.25  # YIN threshold: a frame is periodic when its normalised difference dips below
FLOOR_DBFS = -55.0  # quieter frames are silence whatever their shape
RANGE_DB = 35.0  # frames more than this below the loudest frame are background
MIN_VOICED_S = 0.3  # less voiced audio than this is not an utterance
MIN_PITCH_SPREAD_ST = 1.0  # interquartile range of the voiced pitch, in semitones
MIN_LEVEL_SPREAD_DB = 3.0  # standard deviation of the loud frames' level, in dB
MIN_RUN_S = 0.05  # voiced runs shorter than this are clicks, not syllables
PAD_S = 0.1  # like VAD_PAD_MS
BRIDGE_S = 0.3  # like VAD_MIN_SILENCE_MS


def needs_second_opinion(intervals: list[tuple[float, float]], duration_s: float) -> bool:
    """True when VAD covers less than LOW_SPEECH_SHARE of the item (or nothing at all)."""
    if duration_s <= 0:
        return False
    covered = sum(max(0.0, min(b, duration_s) - max(a, 0.0)) for a, b in intervals)
    return covered < LOW_SPEECH_SHARE * duration_s


def _frames(x: np.ndarray) -> np.ndarray:
    n = 1 + max(0, (len(x) - FRAME)) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    return x[idx]


def _pitches(frames: np.ndarray) -> np.ndarray:
    """YIN pitch (Hz) of each frame, 0.0 where a frame is not periodic enough.

    The difference function d(tau) = sum_j (x_j - x_{j+tau})^2 over WINDOW samples is computed as
    energy(0) + energy(tau) - 2 * correlation(tau), the correlation by one batched FFT (pocketfft:
    deterministic for the same input).
    """
    if len(frames) == 0:
        return np.zeros(0)
    n_fft = 1 << (FRAME + WINDOW - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(frames, n_fft) * np.conj(np.fft.rfft(frames[:, :WINDOW], n_fft)), n_fft)
    cum = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(1, TAU_MAX + 1)
    energy = cum[:, taus + WINDOW] - cum[:, taus]
    diff = np.maximum(cum[:, [WINDOW]] + energy - 2.0 * corr[:, taus], 0.0)
    running = np.cumsum(diff, axis=1)
    cmnd = np.where(running > 0, diff * taus / np.maximum(running, 1e-20), 1.0)
    return np.array([_dip(row[TAU_MIN - 1 :]) for row in cmnd])


def _dip(search: np.ndarray) -> float:
    """YIN's absolute threshold: the first dip below APERIODICITY, walked down to its bottom."""
    below = np.flatnonzero(search < APERIODICITY)
    if len(below) == 0:
        return 0.0
    i = int(below[0])
    while i + 1 < len(search) and search[i + 1] < search[i]:
        i += 1  # walk down to the dip's bottom
    return SR / float(i + TAU_MIN)


def analyse(audio: np.ndarray, sr: int = SR) -> dict[str, object]:
    """Per-frame level and pitch, the item-level cues and the decision (see the module docstring)."""
    import scipy.signal

    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if sr != SR:
        raise ValueError(f"the second opinion works on {SR} Hz audio (got {sr})")
    empty = {"speech": False, "voiced_s": 0.0, "pitch_spread_st": 0.0, "level_spread_db": 0.0, "intervals": []}
    if len(x) < FRAME:
        return empty
    sos = scipy.signal.butter(2, 60.0, btype="highpass", fs=SR, output="sos")
    x = scipy.signal.sosfilt(sos, x)
    frames = _frames(x)
    level = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = (level > FLOOR_DBFS) & (level > float(np.max(level)) - RANGE_DB)
    pitch = np.zeros(len(frames))
    pitch[loud] = _pitches(frames[loud])
    voiced = loud & (pitch > 0)
    voiced = _drop_short_runs(voiced, int(round(MIN_RUN_S * SR / HOP)))
    voiced_s = float(voiced.sum() * HOP / SR)
    semitones = 12.0 * np.log2(pitch[voiced] / 100.0) if voiced.any() else np.zeros(0)
    spread = float(np.subtract(*np.percentile(semitones, [75, 25]))) if len(semitones) >= 4 else 0.0
    level_spread = float(np.std(level[loud])) if loud.sum() >= 4 else 0.0
    speech = voiced_s >= MIN_VOICED_S and spread >= MIN_PITCH_SPREAD_ST and level_spread >= MIN_LEVEL_SPREAD_DB
    duration = len(audio) / SR
    return {"speech": bool(speech), "voiced_s": round(voiced_s, 3), "pitch_spread_st": round(spread, 3),
            "level_spread_db": round(level_spread, 3),
            "intervals": _intervals(voiced, duration) if speech else []}


def _drop_short_runs(mask: np.ndarray, min_len: int) -> np.ndarray:
    out = mask.copy()
    start = None
    for i, v in enumerate([*mask.tolist(), False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start < min_len:
                out[start:i] = False
            start = None
    return out


def _intervals(voiced: np.ndarray, duration: float) -> list[tuple[float, float]]:
    """Voiced runs as (start, end) seconds, padded by PAD_S and bridged across gaps under BRIDGE_S."""
    spans: list[list[float]] = []
    start = None
    for i, v in enumerate([*voiced.tolist(), False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            a = max(0.0, start * HOP / SR - PAD_S)
            b = min(duration, ((i - 1) * HOP + FRAME) / SR + PAD_S)
            if spans and a - spans[-1][1] < BRIDGE_S:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
            start = None
    return [(round(a, 3), round(b, 3)) for a, b in spans]


def second_opinion(audio: np.ndarray, sr: int = SR) -> list[tuple[float, float]]:
    """Speech intervals (seconds) the second opinion finds; [] when it does not call the item speech."""
    return list(analyse(audio, sr)["intervals"])  # type: ignore[arg-type]
