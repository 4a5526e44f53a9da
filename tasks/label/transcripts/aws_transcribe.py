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

This module is the stage (plan, cache, fill, Whisper fallback); `aws_transcribe_packs` holds the
packing, job names and cost, `aws_transcribe_media` the staged FLAC and the split of a job's words,
`aws_transcribe_jobs` the client and the attach/start/poll loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.core.label_cache import LabelCache, cacheable, clip_key
from tasks.core.rows import StageResult
from tasks.label.transcripts.aws_transcribe_jobs import JobRunner, Log, Outcome, make_client
from tasks.label.transcripts.aws_transcribe_media import MediaClip, stage_pack
from tasks.label.transcripts.aws_transcribe_packs import (
    MIN_BILLED_S,
    CostEstimate,
    Pack,
    TranscribeCostError,
    cache_settings,
    estimate_cost,
    plan_packs,
)
from tasks.label.transcripts.common import TranscriptStage, has_text
from tasks.label.transcripts.normalize import base_language, normalize_transcript
from tasks.spec_labelers import AwsTranscribeSettings, WhisperSettings

__all__ = ["CostEstimate", "TranscribeCostError", "cache_settings", "fill_missing_transcripts", "make_cache",
           "plan_cost"]  # fmt: skip

logger = logging.getLogger(__name__)

LABELER = "aws-transcribe"
ORIGIN = "aws_transcribe"
# Item language -> Transcribe code when `language_code` is null (the common batch languages).
LANGUAGE_CODES: dict[str, str] = {
    "en": "en-US", "es": "es-US", "fr": "fr-FR", "de": "de-DE", "it": "it-IT", "pt": "pt-BR",
    "nl": "nl-NL", "ja": "ja-JP", "ko": "ko-KR", "zh": "zh-CN", "hi": "hi-IN", "ar": "ar-SA",
    "ru": "ru-RU", "tr": "tr-TR", "sv": "sv-SE", "da": "da-DK", "pl": "pl-PL", "id": "id-ID",
}  # fmt: skip

ProgressCallback = Callable[[int, int], None]


def make_cache(root_uri: str, settings: AwsTranscribeSettings) -> LabelCache:
    """The LabelCache that `fill_missing_transcripts` expects for these settings."""
    return LabelCache.shared(root_uri, LABELER, cache_settings(settings))


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
    rows: dict[str, MediaClip] = {}
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


def _row(items: pd.DataFrame, i: int, key: str) -> MediaClip:
    offset = items.at[i, "offset_s"] if "offset_s" in items.columns else None
    duration = items.at[i, "duration_s"] if "duration_s" in items.columns else None
    segment = items.at[i, "segment_key"]
    return MediaClip(key=key, uri=str(items.at[i, "audio_uri"]),
                offset_s=0.0 if offset is None or pd.isna(offset) else float(offset),
                duration_s=None if duration is None or pd.isna(duration) else float(duration),
                segment_key=str(segment) if has_text(segment) else None)  # fmt: skip


def _run_jobs(
    todo: list[Pack],
    rows: Mapping[str, MediaClip],
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
    runner = JobRunner(client, settings, staging_uri, log)

    def on_done(pack: Pack, outcome: Outcome) -> None:
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
