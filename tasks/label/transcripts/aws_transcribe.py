"""Amazon Transcribe batch pseudo-transcripts for utterances that have no human transcript.

Why it looks the way it does (docs/labelers.md has the user-facing version):

- **Packing.** Transcribe bills per second with a 15 s minimum per job, so a 3 s clip alone costs
  15 s. Clips are sorted by cache key, grouped by language and packed greedily into jobs of at
  most ``pack_target_s`` audio, ``silence_s`` of silence between clips; the job's words go back
  to the clip holding each word's midpoint (the nearest clip when it falls in a gap). A clip longer
  than ``pack_target_s`` gets a job of its own. Packs are planned over *every* clip that needs an
  ASR label, cached or not, so a restarted run re-derives the same packs (and job names) however
  many of them finished before; a pack whose clips are all cached is skipped.
- **Staging.** A pack's audio is FLAC, 16 kHz, mono, 16-bit (so the service's format, channel
  and rate limits hold by construction) at ``<staging_uri>/media/<pack key>.flac`` with a small
  ``.layout.json`` beside it listing each clip's start/end in the packed audio. The pack key is a
  hash of the clip keys and the output-changing settings, so staged media is found again without
  reading any audio.
- **Jobs.** Names are ``voicetone-<pack key>-a<attempt>``: deterministic, so a restarted run
  first asks GetTranscriptionJob for each name and re-attaches instead of paying again (a
  ConflictException on start also means "attach"); a FAILED job is retried under the next
  attempt's name (names cannot be reused) up to ``max_attempts``, then its clips become
  ``labeler_failed`` rejects or go to Whisper (``on_failed``). OutputBucketName/OutputKey are
  always set (the service's default output URL expires after 15 minutes).
- **Limits.** Jobs QUEUED/IN_PROGRESS are bounded process-wide by ``max_concurrent_jobs`` (the
  service quota counts running jobs, not start calls); Start/Get calls go through process-wide
  token buckets below the 25/30 TPS quotas; polling backs off exponentially. Clips shorter than
  0.5 s or longer than 4 h are ``unsupported_audio`` rejects; a staged file over 2 GB is refused.
- **Cost.** Before any job starts the billed minutes of the jobs this call may start
  (max(15 s, pack seconds) each, including jobs a killed run already started) times
  ``price_per_minute_usd`` is logged; above ``max_cost_usd`` the call raises `TranscribeCostError`
  before staging or starting anything. The cap applies per call (per shard in the pipeline).
- **Cache.** Labels are cached by ``<segment key>|<language code>`` (`label_cache.clip_key`) under
  labeler ``aws-transcribe`` with `cache_settings`, so a second run starts zero jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import REJECT_REASONS
from tasks.core import limits
from tasks.core.label_cache import LabelCache, cacheable, clip_key
from tasks.core.rows import StageResult
from tasks.label.transcripts.common import TranscriptStage, has_text, nearest_span
from tasks.label.transcripts.normalize import base_language, normalize_transcript
from tasks.spec_labelers import AwsTranscribeSettings, WhisperSettings

logger = logging.getLogger(__name__)

LABELER = "aws-transcribe"
ORIGIN = "aws_transcribe"
SAMPLE_RATE = 16000
MEDIA_FORMAT = "flac"
SPLITTER_VERSION = "midpoint-v1"  # bump when packing or splitting changes a clip's text
MIN_MEDIA_S = 0.5  # service limits (docs: "Data input and output")
MAX_MEDIA_S = 4 * 3600.0
MAX_MEDIA_BYTES = 2 * 1024**3
MIN_BILLED_S = 15.0
_JOB_NAME = re.compile(r"^[0-9a-zA-Z._-]{1,200}$")
# Item language -> Transcribe code when `language_code` is null (the common batch languages).
LANGUAGE_CODES: dict[str, str] = {
    "en": "en-US", "es": "es-US", "fr": "fr-FR", "de": "de-DE", "it": "it-IT", "pt": "pt-BR",
    "nl": "nl-NL", "ja": "ja-JP", "ko": "ko-KR", "zh": "zh-CN", "hi": "hi-IN", "ar": "ar-SA",
    "ru": "ru-RU", "tr": "tr-TR", "sv": "sv-SE", "da": "da-DK", "pl": "pl-PL", "id": "id-ID",
}  # fmt: skip

ProgressCallback = Callable[[int, int], None]
Log = Callable[..., None]


class TranscribeCostError(RuntimeError):
    """The estimated cost exceeds ``labelers.aws_transcribe.max_cost_usd``; nothing was started."""


# ---------------------------------------------------------------------------------------------
# Cache identity, packing, names, cost


def cache_settings(settings: AwsTranscribeSettings) -> dict[str, Any]:
    """What changes Transcribe's text for a clip: the media we send and how packs are cut."""
    return {
        "media": f"{MEDIA_FORMAT}-{SAMPLE_RATE}-mono-pcm16",
        "pack_target_s": settings.pack_target_s,
        "silence_s": settings.silence_s,
        "splitter": SPLITTER_VERSION,
    }


def make_cache(root_uri: str, settings: AwsTranscribeSettings) -> LabelCache:
    """The LabelCache that `fill_missing_transcripts` expects for these settings."""
    return LabelCache.shared(root_uri, LABELER, cache_settings(settings))


@dataclass(frozen=True)
class Pack:
    """Clips transcribed together by one job (one language)."""

    key: str
    language_code: str
    clip_keys: tuple[str, ...]
    audio_s: float  # planned seconds, silences included

    @property
    def billed_s(self) -> float:
        return max(MIN_BILLED_S, self.audio_s)


def plan_packs(
    clips: list[tuple[str, str, float]], settings: AwsTranscribeSettings, staging_uri: str
) -> list[Pack]:
    """Greedy packs of (key, language code, seconds) in key order; long clips get a job alone."""
    by_language: dict[str, list[tuple[str, float]]] = {}
    for key, code, seconds in sorted(clips):
        by_language.setdefault(code, []).append((key, seconds))
    packs: list[Pack] = []
    for code, members in sorted(by_language.items()):
        current: list[tuple[str, float]] = []
        for key, seconds in members:
            total = sum(s for _, s in current) + settings.silence_s * len(current) + seconds
            if current and total > settings.pack_target_s:
                packs.append(_pack(current, code, settings, staging_uri))
                current = []
            current.append((key, seconds))
        if current:
            packs.append(_pack(current, code, settings, staging_uri))
    return packs


def _pack(members: list[tuple[str, float]], code: str, settings: AwsTranscribeSettings, staging: str) -> Pack:
    keys = tuple(k for k, _ in members)
    identity = json.dumps({"clips": keys, "language": code, "settings": cache_settings(settings),
                           "staging": staging.rstrip("/")}, sort_keys=True)  # fmt: skip
    seconds = sum(s for _, s in members) + settings.silence_s * (len(members) - 1)
    return Pack(hashlib.sha256(identity.encode()).hexdigest()[:32], code, keys, seconds)


def job_name(pack_key: str, attempt: int) -> str:
    """``voicetone-<pack key>-a<attempt>``: stable across runs, new for each retry."""
    name = f"voicetone-{pack_key}-a{attempt}"
    if not _JOB_NAME.match(name):
        raise ValueError(f"invalid Transcribe job name {name!r}")
    return name


@dataclass(frozen=True)
class CostEstimate:
    jobs: int
    audio_s: float
    billed_s: float
    usd: float

    def __str__(self) -> str:
        return (f"{self.jobs} Amazon Transcribe job(s), {self.audio_s / 60:.1f} min of audio, "
                f"{self.billed_s / 60:.1f} billed min, about ${self.usd:.2f}")  # fmt: skip


def estimate_cost(packs: list[Pack], settings: AwsTranscribeSettings) -> CostEstimate:
    """Billed minutes (15 s minimum per job) times the configured price."""
    billed = sum(p.billed_s for p in packs)
    return CostEstimate(len(packs), sum(p.audio_s for p in packs), billed,
                        billed / 60 * settings.price_per_minute_usd)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Process-wide request rate and job slots


# RateLimiter, the shared-per-process registry and the job slots live in tasks/core/limits.py, which also
# takes slots of Prefect global limits when a server is configured (so Dask workers share one rate).


def make_client(region: str | None) -> Any:
    """A Transcribe client from the standard boto3 chain (AWS_ENDPOINT_URL works), adaptive retries."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "max_attempts": 10})
    return boto3.session.Session().client("transcribe", region_name=region, config=config)


# ---------------------------------------------------------------------------------------------
# Staging


@dataclass
class _Row:
    """One distinct clip to label: where its audio is."""

    key: str
    uri: str
    offset_s: float
    duration_s: float | None
    segment_key: str | None


def _media_uris(staging_uri: str, pack: Pack) -> tuple[str, str]:
    from tasks.core import storage
    base = storage.join(staging_uri, "media", pack.key)
    return base + f".{MEDIA_FORMAT}", base + ".layout.json"


def _read_clip(row: _Row) -> tuple[np.ndarray | None, dict[str, str] | None]:
    from tasks.core.audio import AudioError, read_audio

    try:
        audio = read_audio(row.uri, offset_s=row.offset_s, duration_s=row.duration_s,
                           target_sr=SAMPLE_RATE, mono=True)  # fmt: skip
    except AudioError as err:
        reason = err.reason if err.reason in REJECT_REASONS else "unreadable_audio"
        return None, {"reason": reason, "detail": f"no Amazon Transcribe transcript: {err.detail}"}
    except ValueError as err:
        return None, {"reason": "malformed_metadata", "detail": f"segment of {row.uri}: {err}"}
    seconds = audio.size / SAMPLE_RATE
    if seconds < MIN_MEDIA_S or seconds > MAX_MEDIA_S:
        return None, {"reason": "unsupported_audio", "detail": f"{row.uri} at {row.offset_s:g} s lasts "
                      f"{seconds:.2f} s; Amazon Transcribe takes {MIN_MEDIA_S:g} s to {MAX_MEDIA_S / 3600:g} h"}  # fmt: skip
    return np.ascontiguousarray(audio, dtype=np.float32), None


def stage_pack(pack: Pack, rows: Mapping[str, _Row], staging_uri: str, silence_s: float) -> dict[str, Any]:
    """Upload the pack's FLAC and layout unless already staged; returns the layout.

    Layout: ``{"media_uri", "duration_s", "bytes", "clips": [{"key", "segment_key", "start_s",
    "end_s"}], "failed": {key: {"reason", "detail"}}}`` (clips that could not be read or break a
    service limit are left out of the audio and listed under ``failed``).
    """
    from tasks.core import storage
    from tasks.core.audio import write_flac

    media_uri, layout_uri = _media_uris(staging_uri, pack)
    if storage.exists(layout_uri):  # written after the media, so the media is there too
        return json.loads(storage.read_text(layout_uri))
    gap = np.zeros(int(round(silence_s * SAMPLE_RATE)), dtype=np.float32)
    parts: list[np.ndarray] = []
    clips: list[dict[str, Any]] = []
    failed: dict[str, dict[str, str]] = {}
    position = 0
    for key in pack.clip_keys:
        audio, failure = _read_clip(rows[key])
        if audio is None:
            failed[key] = failure or {}
            continue
        if parts:
            parts.append(gap)
            position += gap.size
        clips.append({"key": key, "segment_key": rows[key].segment_key, "start_s": position / SAMPLE_RATE,
                      "end_s": (position + audio.size) / SAMPLE_RATE})  # fmt: skip
        parts.append(audio)
        position += audio.size
    layout: dict[str, Any] = {"media_uri": media_uri, "duration_s": position / SAMPLE_RATE, "bytes": 0,
                              "clips": clips, "failed": failed, "language_code": pack.language_code}  # fmt: skip
    if not clips:
        return layout  # nothing to transcribe; not staged, so a fixed file is picked up next run
    if layout["duration_s"] > MAX_MEDIA_S:
        raise ValueError(f"pack {pack.key} lasts {layout['duration_s']:.0f} s, over Transcribe's 4 h")
    fd, tmp = tempfile.mkstemp(prefix="voicetone-transcribe-", suffix=".flac")
    os.close(fd)
    try:
        write_flac(tmp, np.concatenate(parts), SAMPLE_RATE)
        layout["bytes"] = os.path.getsize(tmp)
        if layout["bytes"] > MAX_MEDIA_BYTES:
            for clip in clips:
                failed[clip["key"]] = {"reason": "unsupported_audio", "detail": f"its Transcribe media is "
                                       f"{layout['bytes']} bytes, over the 2 GB limit"}  # fmt: skip
            layout["clips"] = []
            return layout
        storage.copy_file(tmp, media_uri)
    finally:
        os.remove(tmp)
    storage.write_text(layout_uri, json.dumps(layout, sort_keys=True))
    return layout


# ---------------------------------------------------------------------------------------------
# Output parsing


def split_transcript(output: Mapping[str, Any], clips: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A Transcribe output JSON split into per-clip labels by word midpoint.

    Punctuation items (no times) stick to the word before them. A single-clip job with no items
    falls back to ``results.transcripts[0].transcript``.
    """
    results = output.get("results") or {}
    spans = [(float(c["start_s"]), float(c["end_s"])) for c in clips]
    tokens: list[list[str]] = [[] for _ in clips]
    confidences: list[list[float]] = [[] for _ in clips]
    last = None
    for item in results.get("items") or []:
        alternative = (item.get("alternatives") or [{}])[0]
        content = str(alternative.get("content") or "")
        if item.get("type") == "punctuation":
            if last is not None and tokens[last]:
                tokens[last][-1] += content
            continue
        if "start_time" not in item or "end_time" not in item or not content:
            continue
        mid = (float(item["start_time"]) + float(item["end_time"])) / 2
        last = nearest_span(spans, mid)
        tokens[last].append(content)
        if alternative.get("confidence") is not None:
            confidences[last].append(float(alternative["confidence"]))
    labels = {}
    for i, clip in enumerate(clips):
        text = " ".join(tokens[i])
        if not text and len(clips) == 1:
            text = str(((results.get("transcripts") or [{}])[0]).get("transcript") or "")
        conf = float(np.mean(confidences[i])) if confidences[i] else None
        labels[clip["key"]] = {"text": text, "confidence": conf, "num_words": len(tokens[i])}
    return labels


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass
class _Outcome:
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None  # reason text when every attempt FAILED


def _error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _is_not_found(err: Exception) -> bool:
    code = _error_code(err)
    message = str(getattr(err, "response", {}).get("Error", {}).get("Message", "")).lower()
    return code == "NotFoundException" or (
        code == "BadRequestException" and ("couldn't be found" in message or "not found" in message)
    )


class _JobRunner:
    """Attach-or-start, poll and collect the jobs of one call."""

    def __init__(self, client: Any, settings: AwsTranscribeSettings, staging_uri: str, log: Log) -> None:
        from tasks.core import storage
        self.client = client
        self.settings = settings
        self.bucket, prefix = storage.split_s3(staging_uri.rstrip("/"))
        self.output_prefix = "/".join(p for p in (prefix, settings.output_prefix.strip("/")) if p)
        self.log = log
        self.start_limit = limits.shared_rate_limiter("transcribe-start", settings.start_rate_per_s)
        self.get_limit = limits.shared_rate_limiter("transcribe-get", settings.get_rate_per_s)
        self.slots: limits.ActiveJobSlots = limits.shared(
            "transcribe-slots", settings.max_concurrent_jobs,
            lambda: limits.ActiveJobSlots(settings.max_concurrent_jobs, client, list_limiter=self.get_limit.local),
        )
        self.started: list[str] = []
        self.attached: list[str] = []

    def output_key(self, name: str) -> str:
        return f"{self.output_prefix}/{name}.json" if self.output_prefix else f"{name}.json"

    def _get(self, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        self.get_limit.acquire()
        try:
            return self.client.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
        except ClientError as err:
            if _is_not_found(err):
                return None
            raise

    def _start(self, name: str, pack: Pack, layout: Mapping[str, Any]) -> dict[str, Any] | None:
        """Start the job; None when it already exists (a ConflictException: attach to it)."""
        from botocore.exceptions import ClientError

        self.start_limit.acquire()
        try:
            self.client.start_transcription_job(
                TranscriptionJobName=name,
                LanguageCode=pack.language_code,
                MediaFormat=MEDIA_FORMAT,
                MediaSampleRateHertz=SAMPLE_RATE,
                Media={"MediaFileUri": layout["media_uri"]},
                OutputBucketName=self.bucket,
                OutputKey=self.output_key(name),
            )
        except ClientError as err:
            if _error_code(err) == "ConflictException":
                return None
            if _error_code(err) == "BadRequestException":  # this pack's request, not the service: fail it
                message = err.response.get("Error", {}).get("Message", "")
                return {"TranscriptionJobStatus": "FAILED", "FailureReason": f"start refused: {message}"}
            raise
        self.started.append(name)
        return {"TranscriptionJobName": name, "TranscriptionJobStatus": "QUEUED"}

    def attach_or_start(self, pack: Pack, layout: Mapping[str, Any], first: int, reason: str) -> tuple[str, Any]:
        """('done', name) | ('running', (name, attempt)) | ('failed', reason), trying attempts in order."""
        for attempt in range(first, self.settings.max_attempts + 1):
            name = job_name(pack.key, attempt)
            job = self._get(name)
            if job is None:
                job = self._start(name, pack, layout)
                if job is None:
                    job = self._get(name) or {}
            else:
                self.attached.append(name)
            status = job.get("TranscriptionJobStatus")
            if status == "COMPLETED":
                return "done", name
            if status == "FAILED":
                reason = str(job.get("FailureReason") or "no reason given")
                self.log("Amazon Transcribe job %s FAILED: %s", name, reason)
                continue
            return "running", (name, attempt)
        return "failed", f"{self.settings.max_attempts} attempt(s) FAILED; last: {reason}"

    def read_output(self, name: str) -> dict[str, Any]:
        from tasks.core import storage
        uri = f"s3://{self.bucket}/{self.output_key(name)}"
        for wait in (0.0, 1.0, 2.0, 4.0):
            time.sleep(wait)
            try:
                return json.loads(storage.read_bytes(uri))
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"Amazon Transcribe job {name} is COMPLETED but {uri} does not exist")

    def run(self, work: list[tuple[Pack, dict[str, Any]]], on_done: Callable[[Pack, _Outcome], None]) -> None:
        """Drive every pack to COMPLETED or final failure, never above the slot limit."""
        pending: deque[tuple[Pack, dict[str, Any], int, str]] = deque((p, lay, 1, "") for p, lay in work)
        inflight: dict[str, tuple[Pack, dict[str, Any], int]] = {}
        interval = self.settings.poll_min_s
        try:
            while pending or inflight:
                while pending and self.slots.try_acquire():
                    pack, layout, first, reason = pending.popleft()
                    try:
                        state, value = self.attach_or_start(pack, layout, first, reason)
                    except BaseException:
                        self.slots.release()
                        raise
                    if state == "running":
                        inflight[value[0]] = (pack, layout, value[1])
                        continue
                    self.slots.release()
                    on_done(pack, self._finish(state, value, layout))
                if not inflight and not pending:
                    break
                time.sleep(interval)
                progressed = False
                for name, (pack, layout, attempt) in list(inflight.items()):
                    job = self._get(name) or {"TranscriptionJobStatus": "FAILED", "FailureReason": "job vanished"}
                    status = job.get("TranscriptionJobStatus")
                    if status not in ("COMPLETED", "FAILED"):
                        continue
                    del inflight[name]
                    self.slots.release()
                    progressed = True
                    if status == "COMPLETED":
                        on_done(pack, self._finish("done", name, layout))
                    else:
                        reason = str(job.get("FailureReason") or "no reason given")
                        self.log("Amazon Transcribe job %s FAILED: %s", name, reason)
                        pending.appendleft((pack, layout, attempt + 1, reason))
                interval = self.settings.poll_min_s if progressed else min(interval * 2, self.settings.poll_max_s)
        finally:
            for _ in inflight:
                self.slots.release()

    def _finish(self, state: str, value: Any, layout: Mapping[str, Any]) -> _Outcome:
        if state == "failed":
            return _Outcome(failure=str(value))
        labels = split_transcript(self.read_output(value), list(layout["clips"]))
        for label in labels.values():
            label["job"] = value
        return _Outcome(labels=labels)


# ---------------------------------------------------------------------------------------------
# The stage


def _language_code(language: Any, settings: AwsTranscribeSettings) -> str | None:
    base = base_language(language)
    if settings.language_code:
        return settings.language_code if base_language(settings.language_code) == base else None
    return LANGUAGE_CODES.get(base)


@dataclass
class _Plan:
    """What one call must do: rows needing a label, their keys, cached labels and the uncached packs."""

    stage: Any
    keys: dict[int, str]
    rows: dict[str, Any]
    found: dict[str, Any]
    todo: list[Pack]


def _plan(items: pd.DataFrame, settings: AwsTranscribeSettings, cache: LabelCache | None,
          staging_uri: str) -> _Plan:
    stage = _Stage(items)
    need = stage.keep_human_transcripts()
    keys: dict[int, str] = {}
    codes: dict[str, str] = {}
    for i in need:
        code = _language_code(stage.items.at[i, "language"], settings)
        if code is None:
            stage.reject(i, "unsupported_language", f"{stage.utt(i)}: language {stage.items.at[i, 'language']!r} "
                         f"does not match labelers.aws_transcribe.language_code {settings.language_code!r}; set "
                         "it to null to use each item's language")  # fmt: skip
            continue
        keys[i] = clip_key(stage.items.at[i, "segment_key"], stage.utt(i), code)
        codes[keys[i]] = code
    if not keys:
        return _Plan(stage, keys, {}, {}, [])
    found = cache.get_many(cacheable(keys.values())) if cache is not None else {}
    rows: dict[str, _Row] = {}
    for i, key in keys.items():
        if key not in rows:
            rows[key] = _row(stage.items, i, key)
    durations = {k: (r.duration_s if r.duration_s is not None else MIN_BILLED_S) for k, r in rows.items()}
    packs = plan_packs([(k, codes[k], durations[k]) for k in rows], settings, staging_uri)
    todo = [p for p in packs if any(k not in found for k in p.clip_keys)]
    return _Plan(stage, keys, rows, found, todo)


def plan_cost(items: pd.DataFrame, settings: AwsTranscribeSettings, cache: LabelCache | None,
              staging_uri: str) -> CostEstimate:
    """The cost of labelling `items` (uncached packs only), without calling AWS: for run-level caps."""
    return estimate_cost(_plan(items, settings, cache, staging_uri).todo, settings)


def fill_missing_transcripts(
    items: pd.DataFrame,
    settings: AwsTranscribeSettings,
    cache: LabelCache | None = None,
    progress: ProgressCallback | None = None,
    *,
    staging_uri: str,
    region: str | None = None,
    client: Any = None,
    whisper_settings: WhisperSettings | None = None,
    whisper_cache: LabelCache | None = None,
    log: Log | None = None,
) -> StageResult:
    """Keep human transcripts, label the rest with Amazon Transcribe, normalise all.

    `cache` must come from `make_cache(root, settings)`. `client` is a boto3 Transcribe client
    (built from `region` and the standard chain when None). `progress(done, total)` counts the
    clips that needed a job. Raises `TranscribeCostError` before any job when over the cap.
    """
    log = log or logger.info
    if not staging_uri or not staging_uri.startswith("s3://"):
        raise ValueError(f"aws.staging_uri must be an s3://bucket/prefix (got {staging_uri!r})")
    if cache is not None and not cache.belongs_to(LABELER, cache_settings(settings)):
        raise ValueError(f"label cache {cache.labeler!r} does not match the Amazon Transcribe settings; "
                         "create it with tasks.label.transcripts.aws_transcribe.make_cache(root, settings)")  # fmt: skip
    plan = _plan(items, settings, cache, staging_uri)
    stage, keys, rows, found, todo = plan.stage, plan.keys, plan.rows, plan.found, plan.todo
    if not keys:
        return stage.result()
    failures: dict[str, dict[str, str]] = {}
    if todo:
        estimate = estimate_cost(todo, settings)
        log("Amazon Transcribe: %s (price $%g/min)", estimate, settings.price_per_minute_usd)
        if settings.max_cost_usd is not None and estimate.usd > settings.max_cost_usd:
            raise TranscribeCostError(
                f"Amazon Transcribe would cost about ${estimate.usd:.2f} ({estimate}), over "
                f"labelers.aws_transcribe.max_cost_usd ${settings.max_cost_usd:.2f}; nothing was started"
            )
        labels, failures = _run_jobs(todo, rows, found, settings, cache, progress, staging_uri,
                                     client or make_client(region), log)  # fmt: skip
        found.update({k: v for k, v in labels.items() if k not in found})  # cached text stays fixed
    fallback = [i for i, k in keys.items() if k in failures and failures[k]["reason"] == "labeler_failed"]
    whisper_rows = set(fallback) if settings.on_failed == "whisper" else set()
    for i, key in keys.items():
        if i in whisper_rows:
            continue
        if key in failures:
            stage.reject(i, failures[key]["reason"], f"{stage.utt(i)}: {failures[key]['detail']}")
        else:
            stage.apply_label(i, found[key])
    if whisper_rows:
        stage.fill_with_whisper(sorted(whisper_rows), whisper_settings or WhisperSettings(), whisper_cache)
    return stage.result()


def _row(items: pd.DataFrame, i: int, key: str) -> _Row:
    offset = items.at[i, "offset_s"] if "offset_s" in items.columns else None
    duration = items.at[i, "duration_s"] if "duration_s" in items.columns else None
    segment = items.at[i, "segment_key"]
    return _Row(key=key, uri=str(items.at[i, "audio_uri"]),
                offset_s=0.0 if offset is None or pd.isna(offset) else float(offset),
                duration_s=None if duration is None or pd.isna(duration) else float(duration),
                segment_key=str(segment) if has_text(segment) else None)  # fmt: skip


def _run_jobs(
    todo: list[Pack],
    rows: Mapping[str, _Row],
    cached: Mapping[str, Any],
    settings: AwsTranscribeSettings,
    cache: LabelCache | None,
    progress: ProgressCallback | None,
    staging_uri: str,
    client: Any,
    log: Log,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """Stage and transcribe the packs; labels and failures by clip key."""
    total = sum(len(p.clip_keys) for p in todo)
    done = 0
    labels: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, str]] = {}

    def count(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    work = []
    for pack in todo:
        layout = stage_pack(pack, rows, staging_uri, settings.silence_s)
        failures.update(layout["failed"])
        if layout["clips"]:
            work.append((pack, layout))
        count(len(layout["failed"]))
    layouts = {pack.key: layout for pack, layout in work}
    runner = _JobRunner(client, settings, staging_uri, log)

    def on_done(pack: Pack, outcome: _Outcome) -> None:
        clip_keys = [c["key"] for c in layouts[pack.key]["clips"]]
        if outcome.failure is not None:
            for key in clip_keys:
                failures[key] = {"reason": "labeler_failed", "detail": f"Amazon Transcribe failed on this "
                                 f"segment ({outcome.failure}); re-run to retry or set on_failed: whisper"}  # fmt: skip
        else:
            labels.update(outcome.labels)
            if cache is not None:
                cache.put_many({k: outcome.labels[k] for k in cacheable(outcome.labels)})
        count(len(layouts[pack.key]["clips"]))

    runner.run(work, on_done)
    log("Amazon Transcribe: %d job(s) started, %d re-attached", len(runner.started), len(runner.attached))
    return labels, failures


class _Stage(TranscriptStage):
    """The shared transcript stage (same column handling as the Whisper labeler) plus Transcribe's labels."""

    def apply_label(self, i: int, label: Mapping[str, Any]) -> None:
        text = str(label.get("text") or "")
        transcript = normalize_transcript(text, self.languages[i])
        if not transcript:
            self.reject(i, "low_confidence_transcript", f"{self.utt(i)}: Amazon Transcribe heard no words in "
                        f"this segment (job {label.get('job')}); check that it holds speech or give a "
                        "human transcript")  # fmt: skip
            return
        conf = label.get("confidence")
        self.items.at[i, "transcript_raw"] = text
        self.items.at[i, "transcript"] = transcript
        self.items.at[i, "transcript_origin"] = ORIGIN
        self.items.at[i, "transcript_confidence"] = math.nan if conf is None else float(conf)

    def fill_with_whisper(self, rows: list[int], settings: WhisperSettings, cache: LabelCache | None) -> None:
        """on_failed: whisper — the rows Transcribe could not do go through the offline labeler."""
        from tasks.label.transcripts import whisper

        result = whisper.fill_missing_transcripts(self.items.iloc[rows], settings, cache)
        by_id = result.items.set_index("utterance_id")
        for i in rows:
            utt = self.utt(i)
            if utt in by_id.index:
                for column in ("transcript", "transcript_raw", "transcript_origin", "transcript_confidence",
                               "avg_logprob", "no_speech_prob", "compression_ratio"):  # fmt: skip
                    self.items.at[i, column] = by_id.at[utt, column]
            else:
                self.rejected.add(i)
        self.rejects.extend(result.rejects.to_dict("records"))
