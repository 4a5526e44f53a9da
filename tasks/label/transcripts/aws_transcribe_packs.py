"""Amazon Transcribe packs: clips grouped into jobs by language, the jobs' stable names, and their billed cost.

Why packs, why these names and why the cost is checked first: see `tasks.label.transcripts.aws_transcribe`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tasks.spec_labelers import AwsTranscribeSettings

SAMPLE_RATE = 16000
MEDIA_FORMAT = "flac"
SPLITTER_VERSION = "midpoint-v1"  # bump when packing or splitting changes a clip's text
MIN_BILLED_S = 15.0
_JOB_NAME = re.compile(r"^[0-9a-zA-Z._-]{1,200}$")


class TranscribeCostError(RuntimeError):
    """The estimated cost exceeds ``labelers.aws_transcribe.max_cost_usd``; nothing was started."""


def cache_settings(settings: AwsTranscribeSettings) -> dict[str, Any]:
    """What changes Transcribe's text for a clip: the media we send and how packs are cut."""
    return {
        "media": f"{MEDIA_FORMAT}-{SAMPLE_RATE}-mono-pcm16",
        "pack_target_s": settings.pack_target_s,
        "silence_s": settings.silence_s,
        "splitter": SPLITTER_VERSION,
    }


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
