"""The Whisper labeler: fills missing transcripts of a shard with offline pseudo-transcripts, through the label cache.

Rows with a human transcript keep it; the others (in a language the model knows) are decoded by
faster-whisper (model: tasks/label/transcripts/whisper_model.py; packed decode and its checks:
tasks/label/transcripts/whisper_decode.py). Nothing is ever downloaded.

Cache identity: labeler ``whisper-<model id>`` (the cache allows no ':' in names) and the decode
settings of `cache_settings`; English-only models key by segment key, multilingual ones by
``<segment key>|<language>``.
Packing means a clip's words could depend on its neighbours, so the neighbours are fixed by the
build's packing plan (tasks/label/transcripts/packing.py: groups over all items, not per shard; clips are
decoded group by group, in segment-key order), never by the shard size; the label cache (keyed by
the segment key) keeps a labelled clip's text fixed across re-runs. Native thread counts are pinned
(tasks/core/threads.py) so the thread environment cannot change a label either.

Per-clip numbers written to the utterance row: ``transcript_confidence``, ``avg_logprob``,
``no_speech_prob`` and ``compression_ratio`` (defined in whisper_decode.py).
A clip is rejected as ``low_confidence_transcript`` (numbers in the detail) when its text is
empty, ``no_speech_prob > max_no_speech_prob``, ``avg_logprob < min_avg_logprob``,
``log(transcript_confidence) < min_avg_logprob`` (the clip's own words must clear the same
log-probability bar, which catches a hallucinated clip packed between confident ones), or
``compression_ratio > max_compression_ratio``. The cache stores the raw numbers, so changing a
threshold needs no re-transcription.
"""

from __future__ import annotations

import importlib.metadata
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from manifests.schema import REJECT_REASONS
from tasks.core.label_cache import cacheable, clip_key
from tasks.core.rows import StageResult
from tasks.core.threads import pin_native_threads
from tasks.label.transcripts import whisper_decode
from tasks.label.transcripts.common import TranscriptStage
from tasks.label.transcripts.normalize import normalize_transcript
from tasks.label.transcripts.whisper_decode import (
    DECODER_VERSION,
    PACK_GAP_S,
    PACK_WINDOW_S,
    SAMPLE_RATE,
    Clip,
    decode_mode,
    low_confidence_problems,
)
from tasks.label.transcripts.whisper_model import (
    ASSEMBLED_MODELS,
    BUNDLED_MODELS,
    get_model,
    is_english_only,
    model_fingerprint,
    model_id,
    resolve_model_path,
)
from tasks.spec_labelers import WhisperSettings

if TYPE_CHECKING:
    from tasks.core.label_cache import LabelCache


ProgressCallback = Callable[[int, int], None]

# One lock per packing group: two shard tasks of one process that share a group decode it once.
_GROUP_LOCKS: dict[str, threading.Lock] = {}
_GROUP_LOCKS_LOCK = threading.Lock()


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


def _whisper_knows(language: str) -> bool:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return language in _LANGUAGE_CODES


def _read_clips(
    rows: pd.DataFrame, keys: list[str], languages: list[str]
) -> Iterator[tuple[int, Clip | None, dict[str, str] | None]]:
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
        yield pos, Clip(keys[pos], np.ascontiguousarray(audio, dtype=np.float32), languages[pos]), None


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
    pending: dict[str, list[Clip]] = {}  # language -> clips waiting to be packed
    pending_s: dict[str, float] = {}
    total, done = len(rows), 0
    flush_s = settings.batch_size * PACK_WINDOW_S

    def run(clips: list[Clip], mode: str) -> None:
        nonlocal done
        try:
            new = whisper_decode.decode_group(model, clips, settings, mode)
        except Exception as err:  # a model failure on one group must not end the run
            for clip in clips:
                failures[clip.key] = {
                    "reason": "labeler_failed",
                    "detail": f"Whisper failed on this segment ({type(err).__name__}: {err}); re-run to retry",
                }
            new = {}
        labels.update(new)
        if cache is not None:
            cache.put_many({k: new[k] for k in cacheable(new)})
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
        mode = decode_mode(clip.duration, settings)
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
        with _GROUP_LOCKS_LOCK:
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
            language = None if english_only else self.languages[i]
            keys[i] = (clip_key(self.items.at[i, "segment_key"], self.utt(i), language), self.languages[i])
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
        found = cache.get_many(cacheable(keys.values())) if cache is not None else {}
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
        problems = low_confidence_problems(label, settings)
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
