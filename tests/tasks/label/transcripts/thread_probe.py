"""Transcribe demo field recordings with Whisper, identify their language with the multilingual Whisper,
and print every label as JSON (no cache).

Run as ``python -m tests.tasks.label.transcripts.thread_probe FILE...`` in a subprocess whose thread
environment the test chooses: the output must not depend on it (tasks/core/threads.py).
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from tasks.core.audio import probe, segment_key, sha256_uri
from tasks.label.transcripts import language, whisper
from tasks.spec_labelers import LanguageIdSettings, WhisperSettings


def _rows(paths: list[str], declared: str | None = "en") -> list[dict[str, object]]:
    rows = []
    for path in paths:
        duration, sha = probe(path).duration_s, sha256_uri(path)
        rows.append({"utterance_id": path, "source": "t", "audio_uri": path, "offset_s": 0.0,
                     "duration_s": duration, "audio_sha256": sha, "segment_key": segment_key(sha, 0.0, duration),
                     "language": declared, "transcript_raw": None})
    return rows


def labels(paths: list[str]) -> dict[str, list[object]]:
    result = whisper.fill_missing_transcripts(pd.DataFrame(_rows(paths)), WhisperSettings())
    out: dict[str, list[object]] = {
        r.utterance_id: [r.transcript_raw, repr(r.transcript_confidence), repr(r.avg_logprob),
                         repr(r.no_speech_prob), repr(r.compression_ratio)]
        for r in result.items.itertuples()
    }
    out.update({r.input_ref: ["rejected", r.reason, r.detail] for r in result.rejects.itertuples()})
    return out


def languages(paths: list[str]) -> dict[str, object]:
    """Language identification of the clips through ingest's `identify` (which pins the threads itself;
    run before `labels`, which pins them too): each row's language and probability, and every language's
    probability per clip (repr, all digits)."""
    detected: list[dict[str, str]] = []
    real = language.detect_audio

    def recording(audio, settings):
        probs = real(audio, settings)
        detected.append({lang: repr(p) for lang, p in probs.items()})
        return probs

    language.detect_audio = recording
    try:
        items, rejects, _ = language.identify(pd.DataFrame(_rows(paths, declared=None)), LanguageIdSettings(),
                                              WhisperSettings())
    finally:
        language.detect_audio = real
    return {"rows": {r.utterance_id: [r.language, repr(r.language_probability)] for r in items.itertuples()},
            "rejected": sorted(rejects["input_ref"]) if len(rejects) else [], "probabilities": detected}


if __name__ == "__main__":
    detected = languages(sys.argv[1:])  # first: nothing has pinned the threads before `identify` does
    json.dump({"languages": detected, "transcripts": labels(sys.argv[1:])}, sys.stdout, sort_keys=True)
