"""Amazon Transcribe media: a pack's clips staged as one FLAC with its layout, and a job's words split back to the clips.

Why FLAC 16 kHz mono, the layout file and the midpoint split: see `tasks.label.transcripts.aws_transcribe`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from manifests.schema import REJECT_REASONS
from tasks.label.transcripts.aws_transcribe_packs import MEDIA_FORMAT, SAMPLE_RATE, Pack
from tasks.label.transcripts.common import nearest_span

MIN_MEDIA_S = 0.5  # service limits (docs: "Data input and output")
MAX_MEDIA_S = 4 * 3600.0
MAX_MEDIA_BYTES = 2 * 1024**3


@dataclass
class MediaClip:
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


def _read_clip(row: MediaClip) -> tuple[np.ndarray | None, dict[str, str] | None]:
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


def stage_pack(pack: Pack, rows: Mapping[str, MediaClip], staging_uri: str, silence_s: float) -> dict[str, Any]:
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
