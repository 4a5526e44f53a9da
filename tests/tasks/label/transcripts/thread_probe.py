"""Transcribe demo field recordings with Whisper and print every label as JSON (no cache).

Run as ``python -m tests.tasks.label.transcripts.thread_probe FILE...`` in a subprocess whose thread
environment the test chooses: the output must not depend on it (tasks/core/threads.py).
"""

from __future__ import annotations

import json
import sys

import pandas as pd

from tasks.core.audio import probe, segment_key, sha256_uri
from tasks.label.transcripts import whisper
from tasks.spec_labelers import WhisperSettings


def labels(paths: list[str]) -> dict[str, list[object]]:
    rows = []
    for path in paths:
        duration, sha = probe(path).duration_s, sha256_uri(path)
        rows.append({"utterance_id": path, "source": "t", "audio_uri": path, "offset_s": 0.0,
                     "duration_s": duration, "audio_sha256": sha, "segment_key": segment_key(sha, 0.0, duration),
                     "language": "en", "transcript_raw": None})
    result = whisper.fill_missing_transcripts(pd.DataFrame(rows), WhisperSettings())
    out: dict[str, list[object]] = {
        r.utterance_id: [r.transcript_raw, repr(r.transcript_confidence), repr(r.avg_logprob),
                         repr(r.no_speech_prob), repr(r.compression_ratio)]
        for r in result.items.itertuples()
    }
    out.update({r.input_ref: ["rejected", r.reason, r.detail] for r in result.rejects.itertuples()})
    return out


if __name__ == "__main__":
    json.dump(labels(sys.argv[1:]), sys.stdout, sort_keys=True)
