"""Whisper's decode of a group of clips: packed into shared windows, validated, and split back into clips.

Speed: Whisper's encoder always sees 30 s, so a 3 s clip costs as much as a 30 s one. Short clips
are therefore *packed*: concatenated, in the order given (the labeler sorts them by segment key),
with 0.5 s of silence between them into windows of at most 29 s, decoded a batch of windows at a
time through faster-whisper's `BatchedInferencePipeline` (one window per batch element), and split
back into clips by word timestamps: each word goes to the clip that holds its midpoint (or the
nearest clip when the midpoint falls in a gap), restricted to the clips of the window that produced
the word, so no word leaks across a boundary. The batched decoder sometimes stops early in a window
or mis-aligns its word timestamps (words then land in another clip, or clips get none), so every
packed window is validated: its word timestamps must lie inside the clips' audio, in order and not
collapsed (else all its clips are decoded alone), and each clip holding Silero VAD speech must get
words covering it (else that clip is decoded alone); clips left empty or failing a threshold are
also decoded alone before anything is cached. Measured on 105 s of espeak-ng sentences (tiny.en,
int8, 2 threads, beam 1, busy 2-core machine): packed+batched 0.038 x real time (26x faster than
real time, pooled WER 0.14) vs one clip at a time 0.177 x real time (5.6x, WER 0.23); packing into
the sequential decoder instead of the batched one reached only 19x, with worse WER. A clip longer
than ``vad_min_duration_s`` is decoded alone, the Silero VAD splitting it into speech chunks; a clip
too long to pack but not that long is decoded alone without VAD (`decode_mode`).

Per-clip numbers of a label (`_label`; the labeler writes them to the utterance row):
- ``confidence`` (``transcript_confidence``): mean word probability of the clip's words (Whisper's
  per-word probability is the mean of its tokens' probabilities), so it is the clip's own, not its window's.
- ``avg_logprob``, ``no_speech_prob``: the decoder's values for the segments that produced the
  clip's words, weighted by word duration (in a packed window the decoder scores the window, so
  these are shared by its clips); a clip without words gets its window's values.
- ``compression_ratio``: Whisper's gzip ratio of the clip's own text (repetition loops score high).
`low_confidence_problems` says which thresholds a label fails (the labeler rejects such clips).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.core.intervals import covered_seconds
from tasks.label.speech import speech_intervals
from tasks.label.transcripts.common import nearest_span
from tasks.label.transcripts.normalize import normalize_transcript
from tasks.spec_labelers import WhisperSettings

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16000
PACK_WINDOW_S = 29.0  # under Whisper's 30 s input so the last word's timestamp is never clipped
PACK_GAP_S = 0.5  # silence between packed clips: room for word boundaries to fall in
DECODER_VERSION = "packed-v3"  # bump when packing or decoding changes its output (new cache)
# v3: numpy's BLAS is pinned to one thread (tasks/core/threads.py), and clips are packed in the build's
# packing groups (tasks/label/transcripts/packing.py); v2 labels depend on the thread environment and on
# the shard a clip was in, so they are not reused.
# v2: packed windows are validated and suspicious clips decoded alone; v1 cached unchecked
# packed results (words in the wrong clip, empty transcripts for speech), so none are reused.
# Checks of a packed window (`_window_problems`):
TIME_TOLERANCE_S = 0.2  # how far a word may reach past its clips' audio
COLLAPSED_RUN = 3  # this many zero-length words in a row = the timestamps collapsed
MIN_SPEECH_S = 0.3  # VAD speech a clip must hold before getting no words is suspicious
UNHEARD_SLACK_S = 0.5  # VAD speech this close to one of the clip's words counts as heard
MAX_UNHEARD_S = 1.0  # more speech than this without a word nearby = words went missing

logger = logging.getLogger(__name__)


@dataclass
class Clip:
    """One clip to decode: its label-cache key, its 16 kHz mono audio and its language."""

    key: str  # cache key
    audio: np.ndarray
    language: str

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class _Words:
    """What one decode produced for one clip, before it becomes a label."""

    words: list[tuple[str, float, float, float, float, float]] = field(default_factory=list)
    # (text, start, end, probability, segment avg_logprob, segment no_speech_prob)
    fallback_avg_logprob: float = math.nan
    fallback_no_speech_prob: float = math.nan


def _segments(
    model: WhisperModel,
    audio: np.ndarray,
    windows: list[tuple[float, float]],
    settings: WhisperSettings,
    language: str,
    mode: str,
) -> Iterable[Any]:
    """Run the model: faster-whisper segments (each with ``seek``, times and ``words``)."""
    from faster_whisper import BatchedInferencePipeline

    # temperature 0 only: faster-whisper's default falls back to sampling (0.2, 0.4, ...) when a decode
    # looks poor, and sampling is random, so the same clip could get different words in two runs and
    # equal specs would stop giving equal releases. A poor greedy decode is left to the quality gates.
    common: dict[str, Any] = {"language": language, "beam_size": settings.beam_size, "word_timestamps": True,
                              "temperature": 0.0}
    if mode == "packed":
        segments, _ = BatchedInferencePipeline(model).transcribe(
            audio,
            clip_timestamps=[{"start": start, "end": end} for start, end in windows],
            batch_size=settings.batch_size,
            **common,
        )
    elif mode == "vad":
        segments, _ = BatchedInferencePipeline(model).transcribe(
            audio, vad_filter=True, batch_size=settings.batch_size, **common
        )
    else:
        segments, _ = model.transcribe(audio, condition_on_previous_text=False, vad_filter=False, **common)
    return segments


def _decode(
    segments: Iterable[Any],
    spans: list[tuple[float, float]],
    windows: list[tuple[float, float]],
) -> tuple[list[_Words], list[list[tuple[int, float, float]]]]:
    """Give each span (clip) the words whose midpoint is nearest to it, within the word's window.

    Also returns, per window, its words in decoding order as (clip index, start, end), which is
    what `_window_problems` checks.
    """
    # A word may only go to a clip of the window that produced it: windows abut, and a word
    # timestamped past its window's end must not land in the next window's first clip. The window
    # is the segment's `seek` (its chunk's start frame), not its start time, which comes from the
    # word timestamps being checked.
    members = _members(spans, windows)
    out = [_Words() for _ in spans]
    decoded: list[list[tuple[int, float, float]]] = [[] for _ in windows]
    for segment in segments:
        window = _segment_window(segment, windows)
        for word in segment.words or []:
            idx = nearest_span(spans, (word.start + word.end) / 2, members[window])
            decoded[window].append((idx, float(word.start), float(word.end)))
            out[idx].words.append(
                (
                    word.word,
                    word.start,
                    word.end,
                    word.probability,
                    segment.avg_logprob,
                    segment.no_speech_prob,
                )
            )
        for idx in members[window]:  # the window's values for clips that get no words
            if math.isnan(out[idx].fallback_no_speech_prob):
                out[idx].fallback_avg_logprob = segment.avg_logprob
                out[idx].fallback_no_speech_prob = segment.no_speech_prob
    return out, decoded


def _members(spans: list[tuple[float, float]], windows: list[tuple[float, float]]) -> list[list[int]]:
    """The clip indices of each window."""
    return [[i for i, (start, _) in enumerate(spans) if ws - 1e-6 <= start < we] for ws, we in windows]


def _segment_window(segment: Any, windows: list[tuple[float, float]]) -> int:
    """The window a segment was decoded from: its seek frame (10 ms) is the window's start."""
    seek = getattr(segment, "seek", None)
    if seek is not None:
        for k, (ws, _) in enumerate(windows):
            if round(ws * 100) == seek:
                return k
    return max((k for k, (ws, _) in enumerate(windows) if ws <= segment.start + 0.01), default=0)


def _speech(audio: np.ndarray) -> list[tuple[float, float]]:
    """Speech intervals (seconds) in 16 kHz audio by the Silero VAD used for speech detection."""
    return speech_intervals(audio, SAMPLE_RATE)


def _window_problems(
    words: list[tuple[int, float, float]], spans: Mapping[int, tuple[float, float]]
) -> list[str]:
    """Why a packed window's word timestamps cannot be trusted to split it into clips (empty = they can).

    `words` are the window's words in decoding order as (assigned clip, start, end) and `spans`
    the window's clips by index (absolute seconds). The timestamps must lie inside the clips'
    audio (allowing the silence between clips), run in order, and not collapse onto one instant:
    when the batched decoder mis-aligns a window, words land in the wrong clip, so none of the
    window's clips can be trusted.
    """
    problems: list[str] = []
    first = min(start for start, _ in spans.values())
    last = max(end for _, end in spans.values())
    margin = PACK_GAP_S / 2 + TIME_TOLERANCE_S
    outside = [
        (s, e) for _, s, e in words
        if s < first - TIME_TOLERANCE_S or e > last + TIME_TOLERANCE_S
        or not any(a - margin <= (s + e) / 2 <= b + margin for a, b in spans.values())
    ]  # fmt: skip
    if outside:
        s, e = outside[0]
        problems.append(
            f"{len(outside)} word(s) outside the clips' audio {first:.2f}-{last:.2f} s (first at {s:.2f}-{e:.2f} s)"
        )
    if any(b[1] < a[1] - TIME_TOLERANCE_S or b[0] < a[0] for a, b in itertools.pairwise(words)):
        problems.append("word timestamps or clips out of order")
    zero = [e - s < 0.02 for _, s, e in words]
    run = longest = 0
    for z in zero:
        run = run + 1 if z else 0
        longest = max(longest, run)
    if longest >= COLLAPSED_RUN or (len(words) >= 6 and sum(zero) > len(words) / 3):
        problems.append(f"word timestamps collapse ({sum(zero)} of {len(words)} words have no duration)")
    return problems


def _clip_problems(
    words: list[tuple[int, float, float]], speech: Mapping[int, list[tuple[float, float]]]
) -> dict[int, str]:
    """The clips of a packed window whose speech the decode did not cover, with the reason.

    `speech` holds each clip's Silero VAD speech intervals (absolute seconds). A clip with speech
    but no words, or with more than MAX_UNHEARD_S of speech that no word of its own is near, lost
    words: the batched decoder stops early in some windows, leaving the rest of the window empty.
    """
    problems: dict[int, str] = {}
    for idx, intervals in sorted(speech.items()):
        said = sum(e - s for s, e in intervals)
        own = [(s, e) for i, s, e in words if i == idx]
        if not own:
            if said >= MIN_SPEECH_S:
                problems[idx] = f"holds {said:.1f} s of speech but got no words"
            continue
        heard = [(s - UNHEARD_SLACK_S, e + UNHEARD_SLACK_S) for s, e in own]
        unheard = said - sum(covered_seconds(heard, s, e) for s, e in intervals)
        if unheard > MAX_UNHEARD_S:
            problems[idx] = f"{unheard:.1f} s of its speech got no words"
    return problems


def _pack(clips: list[Clip]) -> tuple[np.ndarray, list[tuple[float, float]], list[tuple[float, float]]]:
    """Lay clips out in windows of at most PACK_WINDOW_S with PACK_GAP_S silence between clips.

    Returns the audio, each clip's (start, end) and each window's (start, end), in seconds.
    Windows start on whole seconds (see below); a window's decoded words carry absolute times.
    """
    gap = np.zeros(int(PACK_GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    windows: list[tuple[float, float]] = []
    position = 0
    window_start = 0
    for clip in clips:
        if parts:
            end_if_added = position + len(gap) + len(clip.audio)
            if (end_if_added - window_start) / SAMPLE_RATE > PACK_WINDOW_S:
                windows.append((window_start / SAMPLE_RATE, position / SAMPLE_RATE))
                # The next window starts on a whole second: faster-whisper converts window starts
                # to samples and to 10 ms frames by truncation, and whole seconds survive both
                # exactly. The padding lies between windows, so it is never decoded.
                pad = -position % SAMPLE_RATE
                parts.append(np.zeros(pad, dtype=np.float32))
                position += pad
                window_start = position
            else:
                parts.append(gap)
                position += len(gap)
        parts.append(clip.audio)
        spans.append((position / SAMPLE_RATE, (position + len(clip.audio)) / SAMPLE_RATE))
        position += len(clip.audio)
    windows.append((window_start / SAMPLE_RATE, position / SAMPLE_RATE))
    return np.concatenate(parts), spans, windows


def _label(words: _Words) -> dict[str, Any]:
    """The cached label of one clip: Whisper's text and the raw numbers the filters use."""
    from faster_whisper.transcribe import get_compression_ratio

    text = "".join(w[0] for w in words.words).strip()
    if words.words:
        weights = np.array([max(w[2] - w[1], 0.02) for w in words.words])
        avg_logprob = float(np.average([w[4] for w in words.words], weights=weights))
        no_speech = float(np.average([w[5] for w in words.words], weights=weights))
        confidence = float(np.mean([w[3] for w in words.words]))
    else:
        avg_logprob, no_speech, confidence = (
            words.fallback_avg_logprob,
            words.fallback_no_speech_prob,
            math.nan,
        )
    return {
        "text": text,
        "confidence": confidence,
        "avg_logprob": avg_logprob,
        "no_speech_prob": no_speech,
        "compression_ratio": get_compression_ratio(text) if text else 0.0,
        "num_words": len(words.words),
    }


def decode_group(
    model: WhisperModel, clips: list[Clip], settings: WhisperSettings, mode: str
) -> dict[str, dict[str, Any]]:
    """Labels by cache key for clips decoded together (one language, one mode).

    A packed decode is checked window by window. Every clip of a window whose word timestamps fail
    (`_window_problems`), and every clip whose speech the decode did not cover (`_clip_problems`),
    whose packed text is empty or whose label fails a threshold, is decoded alone (``single``) and
    labelled from that decode; so a packed result is only ever returned, and cached, when it
    passed the checks. ``decode`` in the label says which decode it came from; ``recheck`` says
    why a packed clip was decoded alone.
    """
    if mode != "packed":
        (clip,) = clips
        span = [(0.0, clip.duration)]
        words, _ = _decode(_segments(model, clip.audio, span, settings, clip.language, mode), span, span)
        return {clip.key: {**_label(words[0]), "decode": mode}}
    audio, spans, windows = _pack(clips)
    segments = _segments(model, audio, windows, settings, clips[0].language, "packed")
    words, decoded = _decode(segments, spans, windows)
    labels: dict[str, dict[str, Any]] = {}
    recheck: dict[int, str] = {}
    for k, members in enumerate(_members(spans, windows)):
        ws, we = windows[k]
        problems = _window_problems(decoded[k], {i: spans[i] for i in members})
        if problems:
            logger.info("Whisper: packed window %.1f-%.1f s (%d clips) decoded again clip by clip: %s",
                        ws, we, len(members), "; ".join(problems))  # fmt: skip
            recheck.update({i: f"packed window failed: {'; '.join(problems)}" for i in members})
            continue
        window_audio = audio[round(ws * SAMPLE_RATE) : round(we * SAMPLE_RATE)]
        found = [(ws + s, ws + e) for s, e in _speech(window_audio)]
        missed = _clip_problems(decoded[k], {i: _clip_to(found, spans[i]) for i in members})
        if missed:
            logger.info("Whisper: packed window %.1f-%.1f s lost words of %d of its %d clips; decoding "
                        "them alone", ws, we, len(missed), len(members))  # fmt: skip
        for i in members:
            label = _label(words[i])
            if i in missed:
                recheck[i] = f"packed decode lost words: clip {missed[i]}"
            elif not normalize_transcript(label["text"], clips[i].language):
                recheck[i] = "packed decode gave no words"
            elif weak := low_confidence_problems(label, settings):
                recheck[i] = f"packed decode looked unreliable: {'; '.join(weak)}"
            else:
                labels[clips[i].key] = {**label, "decode": "packed"}
    for i, reason in recheck.items():
        (label,) = decode_group(model, [clips[i]], settings, "single").values()
        labels[clips[i].key] = {**label, "recheck": reason}
    return {clip.key: labels[clip.key] for clip in clips}


def _clip_to(intervals: list[tuple[float, float]], span: tuple[float, float]) -> list[tuple[float, float]]:
    """The parts of `intervals` inside `span`."""
    a, b = span
    return [(max(s, a), min(e, b)) for s, e in intervals if min(e, b) > max(s, a)]


def decode_mode(duration: float, settings: WhisperSettings) -> str:
    """How a clip of this length is decoded: ``packed`` with others, ``single`` alone, or ``vad`` (long)."""
    if duration > settings.vad_min_duration_s:
        return "vad"
    return "packed" if duration <= PACK_WINDOW_S else "single"


def low_confidence_problems(label: Mapping[str, Any], settings: WhisperSettings) -> list[str]:
    """The thresholds a label fails, each with its numbers (empty list = accepted)."""
    problems = []
    if not label.get("text"):
        return ["Whisper heard no words"]
    nsp, alp = label.get("no_speech_prob"), label.get("avg_logprob")
    conf, ratio = label.get("confidence"), label.get("compression_ratio")
    if nsp is not None and nsp > settings.max_no_speech_prob:
        problems.append(f"no_speech_prob {nsp:.2f} > max_no_speech_prob {settings.max_no_speech_prob:g}")
    if alp is not None and alp < settings.min_avg_logprob:
        problems.append(f"avg_logprob {alp:.2f} < min_avg_logprob {settings.min_avg_logprob:g}")
    if conf is not None and conf > 0 and math.log(conf) < settings.min_avg_logprob:
        problems.append(
            f"mean word log-probability {math.log(conf):.2f} < min_avg_logprob {settings.min_avg_logprob:g}"
        )
    if ratio is not None and ratio > settings.max_compression_ratio:
        problems.append(
            f"compression_ratio {ratio:.2f} > max_compression_ratio {settings.max_compression_ratio:g}"
        )
    return problems
