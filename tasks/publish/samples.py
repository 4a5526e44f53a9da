"""What the HTML report lets a person hear: a few samples per group, and the disagreements.

Samples: per (source, class, sentiment origin), the first few ASR-stage rows by a seeded hash of
their row id (the same picks every time). Each gets two short WAV clips written next to the report
(`report_audio/`): the clean utterance and the version the ASR model trains on. The augmented one
goes through `manifests.audio_io.RowReader`, so a lazy recipe (not materialised) is applied here
exactly as a training job would; a materialised one is read as is. Clips are 16 kHz PCM WAV that
every browser plays, cut to `MAX_CLIP_S`, and live inside the release so the folder can be served
or copied as is.

Disagreements: pseudo-label vs human label, worst first. Sentiment from the card's
`sentiment_agreement.labelers.<name>.disagreements` (held-out rows re-labelled at publish);
transcripts from the per-row WER of `asr_hypothesis` against the human transcript.

Both read the manifests part by part (`tasks.publish.report_scan`), never a whole table.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manifests import uri as fs
from manifests.audio_io import RowReader, read_audio
from manifests.release import Release
from tasks.core.hashing import seeded_hex

AUDIO_DIR = "report_audio"
SAMPLE_RATE = 16000
MAX_CLIP_S = 8.0
DEFAULT_SAMPLES_PER_GROUP = 2
MAX_DISAGREEMENTS = 20
_RECIPE_FIELDS = ("recipe_applied", "speed", "rir_id", "noise_id", "snr_db", "gain", "aug_seed")


@dataclass
class Clip:
    """One WAV next to the report: `rel` is its path relative to the release root."""

    rel: str
    uri: str
    seconds: float
    error: str | None = None


@dataclass
class Sample:
    source: str
    sentiment: str
    origin: str
    row: dict[str, Any]
    clips: dict[str, Clip] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _rank(seed: int, key: str) -> str:
    return seeded_hex(seed, key)


def pick_samples(release: Release, per_group: int = DEFAULT_SAMPLES_PER_GROUP, seed: int = 13) -> list[Sample]:
    """`per_group` rows per (source, sentiment, sentiment_origin), ASR-stage rows joined to their utterance.

    A release without ASR rows falls back to utterances (clean audio only). Reads the release part by
    part (`tasks.publish.report_scan.SamplePicker`; `write_report` does it in its one pass).
    """
    from manifests.schema import ASR_STAGE, UTTERANCES
    from tasks.publish.report_scan import SamplePicker

    picker = SamplePicker(per_group, seed)
    for utt_t, asr_t in zip(release.iter_arrow(UTTERANCES), release.iter_arrow(ASR_STAGE), strict=True):
        picker.add(utt_t, asr_t, utt_t.to_pandas(), asr_t.to_pandas())
    return picker.result()


def _wav_bytes(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf

    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 1.0:
        audio = audio / peak  # a hot augmented clip must not wrap around in PCM16
    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _clip_name(row_id: str, kind: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in row_id)[:60]
    return f"{AUDIO_DIR}/{safe}-{hashlib.sha256(row_id.encode()).hexdigest()[:8]}-{kind}.wav"


def _write_clip(release: Release, rel: str, audio: np.ndarray) -> Clip:
    audio = audio[: int(MAX_CLIP_S * SAMPLE_RATE)]
    uri = fs.join(release.root, rel)
    fs.write_bytes(uri, _wav_bytes(audio))
    return Clip(rel, uri, len(audio) / SAMPLE_RATE)


def clean_clip(release: Release, row: Mapping[str, Any], key: str) -> Clip:
    """The clean utterance (its source audio range), as a short WAV."""
    rel = _clip_name(key, "clean")
    try:
        duration = row.get("clean_duration_s") or row.get("duration_s")
        duration = min(float(duration), MAX_CLIP_S) if duration else MAX_CLIP_S
        audio = read_audio(str(row.get("clean_uri") or row["audio_uri"]),
                           float(row.get("clean_offset_s") or row.get("offset_s") or 0.0), duration, SAMPLE_RATE)
    except (OSError, ValueError, RuntimeError) as err:
        return Clip(rel, "", 0.0, f"clean audio unreadable: {err}")
    return _write_clip(release, rel, audio)


def augmented_clip(release: Release, reader: RowReader, row: Mapping[str, Any], key: str) -> Clip:
    """What the ASR model hears for this row: materialised audio, or the lazy recipe applied here."""
    rel = _clip_name(key, "augmented")
    try:
        audio = reader.utterance(row)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        return Clip(rel, "", 0.0, f"augmented audio unavailable: {err}")
    return _write_clip(release, rel, audio)


def is_augmented(row: Mapping[str, Any]) -> bool:
    """True when the stage row's audio differs from the clean utterance (a recipe, applied or lazy)."""
    if row.get("recipe_applied"):
        return True
    speed, gain = row.get("speed"), row.get("gain")
    return bool(row.get("rir_id") or row.get("noise_id") or (speed not in (None, 1.0))
                or (gain not in (None, 1.0)))


def recipe(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in _RECIPE_FIELDS if row.get(k) is not None}


def render_sample_audio(release: Release, samples: list[Sample]) -> None:
    """Write the clean and augmented clips of every sample (into `report_audio/` of the release)."""
    reader = RowReader(release.pools)
    for sample in samples:
        key = str(sample.row.get("row_id") or sample.row.get("utterance_id"))
        sample.clips["clean"] = clean_clip(release, sample.row, key)
        if "recipe_applied" in sample.row and is_augmented(sample.row):
            sample.clips["augmented"] = augmented_clip(release, reader, sample.row, key)


def disagreements(release: Release, limit: int = MAX_DISAGREEMENTS) -> list[dict[str, Any]]:
    """Pseudo vs human disagreements, worst first: opposite-pole sentiment, then other sentiment misses
    and transcripts by WER (a WER of 1 weighs like a sentiment miss). Reads the utterances part by part
    (`tasks.publish.report_scan.Disagreements`)."""
    from manifests.schema import UTTERANCES
    from tasks.publish.report_scan import Disagreements

    worst = Disagreements(release.card, limit)
    for index, utt_t in enumerate(release.iter_arrow(UTTERANCES)):
        worst.add(index, utt_t.to_pandas())
    return worst.result()


def _utt_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(r.get(k)) for k in ("utterance_id", "source", "split", "transcript", "sentiment",
                                           "sentiment_origin", "audio_uri", "offset_s", "duration_s")}


def render_disagreement_audio(release: Release, items: list[dict[str, Any]]) -> None:
    """A clean clip per disagreement (same file when an utterance appears twice)."""
    for d in items:
        row = {"clean_uri": d["audio_uri"], "clean_offset_s": d["offset_s"], "clean_duration_s": d["duration_s"]}
        d["clip"] = clean_clip(release, row, str(d["utterance_id"]))


def clip_sources(clips: list[Clip], presign_s: int | None = None, embed: int = 0) -> dict[str, str]:
    """The `src` of each clip: relative path, presigned URL (S3 with `presign_s`) or, for the first
    `embed` clips, a data URI (for mailing the page alone)."""
    import base64

    out: dict[str, str] = {}
    signer = _presigner() if presign_s else None
    for i, clip in enumerate(c for c in clips if not c.error):
        if clip.rel in out:
            continue
        if i < embed:
            out[clip.rel] = "data:audio/wav;base64," + base64.b64encode(fs.read_bytes(clip.uri)).decode()
        elif presign_s and fs.is_s3(clip.uri):
            bucket, key = fs.split_s3(clip.uri)
            out[clip.rel] = signer.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=int(presign_s))
        else:
            out[clip.rel] = clip.rel
    return out


MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4's limit


def _presigner() -> Any:
    """An S3 client that signs with SigV4 (X-Amz-Expires; SigV2 URLs are deprecated and region-blind)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))
