"""Silero VAD speech presence on real espeak-ng speech: where the speech is, nothing in noise, the speech stage's
reads and rejects, and windows cut from VAD intervals."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tasks.label.speech import detect_speech, speech_intervals
from tasks.publish.windows import classifier_windows
from tasks.spec import SegmentSpec

SR = 16000
LEAD_S, TAIL_S = 2.0, 3.0


# --------------------------------------------------------------------------------- real speech
@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """16 kHz WAV: 2 s silence, espeak-ng speech, 3 s silence; returns (path, speech start, end)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    folder = tmp_path_factory.mktemp("speech")
    raw = folder / "raw.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(raw), "I am so happy to see all of you here today, thank you for coming."],
        check=True, capture_output=True,
    )
    audio, sr = sf.read(raw, dtype="float32")
    audio = resample_poly(audio, SR, sr).astype(np.float32)
    voiced = np.flatnonzero(np.abs(audio) > 0.02)
    start = LEAD_S + voiced[0] / SR
    end = LEAD_S + voiced[-1] / SR
    signal = np.concatenate([np.zeros(int(LEAD_S * SR)), audio, np.zeros(int(TAIL_S * SR))]).astype(np.float32)
    path = folder / "speech.wav"
    sf.write(path, signal, SR)
    return path, start, end


def test_vad_finds_speech_where_it_is(speech_file: tuple[Path, float, float]) -> None:
    path, start, end = speech_file
    audio, _ = sf.read(path, dtype="float32")
    intervals = speech_intervals(audio, SR)
    assert intervals, "no speech found"
    assert intervals[0][0] == pytest.approx(start, abs=0.3)
    assert intervals[-1][1] == pytest.approx(end, abs=0.3)
    # the same at another sample rate (resampled internally)
    at_8k = speech_intervals(resample_poly(audio, 1, 2).astype(np.float32), 8000)
    assert at_8k[0][0] == pytest.approx(start, abs=0.3)


def test_vad_finds_nothing_in_silence_or_noise() -> None:
    rng = np.random.default_rng(0)
    white = (0.05 * rng.standard_normal(5 * SR)).astype(np.float32)
    hum = (0.2 * np.sin(2 * np.pi * 50 * np.arange(5 * SR) / SR)).astype(np.float32)
    assert speech_intervals(np.zeros(5 * SR, dtype=np.float32)) == []
    assert speech_intervals(white) == []
    assert speech_intervals(hum) == []
    assert speech_intervals(np.zeros(0, dtype=np.float32)) == []


def test_detect_speech_reads_segments_and_rejects_unreadable(
    speech_file: tuple[Path, float, float], tmp_path: Path
) -> None:
    path, start, end = speech_file
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....not audio")
    items = pd.DataFrame(
        [
            {"utterance_id": "s/whole", "source": "s", "audio_uri": str(path), "offset_s": 0.0, "duration_s": None},
            {"utterance_id": "s/tail", "source": "s", "audio_uri": str(path), "offset_s": end + 0.6,
             "duration_s": 2.0},
            {"utterance_id": "s/shifted", "source": "s", "audio_uri": str(path), "offset_s": 1.0,
             "duration_s": end + 1.0},
            {"utterance_id": "s/missing", "source": "s", "audio_uri": str(tmp_path / "nope.wav"),
             "offset_s": 0.0, "duration_s": 1.0},
            {"utterance_id": "s/broken", "source": "s", "audio_uri": str(broken), "offset_s": 0.0,
             "duration_s": 1.0},
        ],
        index=[10, 11, 12, 13, 14],
    )
    speech, rejects = detect_speech(items, threshold=0.5)
    assert list(speech.index) == ["s/whole", "s/tail", "s/shifted"]
    assert speech["s/whole"][0][0] == pytest.approx(start, abs=0.3)
    assert speech["s/whole"][-1][1] == pytest.approx(end, abs=0.3)
    assert speech["s/tail"] == []  # trailing silence only
    assert speech["s/shifted"][0][0] == pytest.approx(start - 1.0, abs=0.3)  # relative to the offset
    assert sorted(rejects["input_ref"]) == ["s/broken", "s/missing"]
    assert set(rejects["stage"]) == {"segments"}
    assert set(rejects["reason"]) <= {"missing_audio", "unreadable_audio", "unsupported_audio"}
    assert all("nope.wav" in d or "broken.wav" in d for d in rejects["detail"])


def test_windows_from_vad_mark_silence_as_non_speech(speech_file: tuple[Path, float, float]) -> None:
    path, start, end = speech_file
    audio, _ = sf.read(path, dtype="float32")
    # 6 s of silence before the file's content: the first window has no speech
    padded = np.concatenate([np.zeros(6 * SR, dtype=np.float32), audio])
    intervals = speech_intervals(padded, SR)
    rows = pd.DataFrame([{
        "row_id": "s/u#0", "utterance_id": "s/u", "split": "train", "sentiment": "positive",
        "duration_s": len(padded) / SR, "speed": 1.0, "speech_intervals": intervals,
    }])
    windows = classifier_windows(rows, SegmentSpec())
    first = windows.iloc[0]
    assert first["start_s"] == 0.0 and not first["speech_present"] and pd.isna(first["sentiment"])
    speech_start = 6.0 + start
    covering = windows[(windows["start_s"] < speech_start - 0.5) & (windows["end_s"] > speech_start + 1.0)]
    assert not covering.empty and covering["speech_present"].all()
    assert (covering["sentiment"] == "positive").all()
