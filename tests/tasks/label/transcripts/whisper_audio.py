"""Shared audio for the Whisper tests: espeak-ng sentences, demo clips that were once mixed up, item rows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tasks.core.audio import segment_key, sha256_uri
from tasks.label.transcripts import whisper_decode
from tasks.spec_labelers import WhisperSettings

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox"
)

SENTENCES = {
    "stella": "Please call Stella and ask her to bring these things with her from the store.",
    "report": "We need to finish this report before Friday afternoon.",
    "thanks": "Thank you very much for your help with the project.",
}
SETTINGS = WhisperSettings()

DEMO = Path(__file__).resolve().parents[4] / "flows" / "demo"
# The demo clips that exposed the bug, in the packing order that did: the batched decoder
# returned one segment, "Hi, I'm calling about the invoice ...", with timestamps collapsed onto
# the last clip, so rec_001 got c0101's words and c0101 and rec_003 got none.
REGRESSION_CLIPS = {
    "c0101": ("support_calls/2024-05-02/c0101.flac", "I am calling about the invoice I received on Monday."),
    "rec_003": ("field_recordings/market/rec_003.wav",
                "What a beautiful morning at the market! The fruit is wonderful and everyone is happy."),
    "rec_001": ("field_recordings/station/rec_001.wav",
                "We are standing by the north entrance of the station. The next train departs at ten past four."),
}  # fmt: skip


def speak(text: str, path: Path) -> Path:
    """espeak-ng `text` into a 16 kHz mono WAV at `path`."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


def item_row(path: Path, name: str, transcript: str | None = None, language: str = "en") -> dict[str, Any]:
    """An item row of `path` without a human transcript (unless given); unreadable files get a made-up key."""
    if path.exists() and path.name != "broken.wav":
        duration = sf.info(path).duration
        sha = sha256_uri(str(path))
    else:
        duration, sha = 3.0, "0" * 64
    return {
        "utterance_id": f"test/{name}",
        "source": "test",
        "audio_uri": str(path),
        "offset_s": 0.0,
        "duration_s": duration,
        "audio_sha256": sha,
        "segment_key": segment_key(sha + name if sha == "0" * 64 else sha, 0.0, duration),
        "language": language,
        "transcript_raw": transcript,
    }


def demo_clip(name: str) -> whisper_decode.Clip:
    """One of the regression clips, read as the labeler reads it."""
    from tasks.core.audio import read_audio

    audio = read_audio(str(DEMO / "sources" / REGRESSION_CLIPS[name][0]), target_sr=16000, mono=True)
    return whisper_decode.Clip(name, np.ascontiguousarray(audio, dtype=np.float32), "en")


def intended(name: str) -> str:
    """What the regression clip really says (the demo's intended labels)."""
    labels = pd.read_csv(DEMO / "intended_labels.csv")
    path = REGRESSION_CLIPS[name][0].split("/", 1)[1]
    (text,) = labels.loc[labels.file_name == path, "text"]
    return str(text)
