"""Fixtures of the Whisper tests (test_whisper.py, test_whisper_decode.py): real espeak-ng audio, decode counting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tasks.label.transcripts import whisper_decode
from tasks.spec_labelers import WhisperSettings
from tests.tasks.label.transcripts.whisper_audio import SENTENCES, speak


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """espeak-ng sentences plus silence, noise, a long clip and a broken file, all at 16 kHz."""
    root = tmp_path_factory.mktemp("whisper_audio")
    out = {name: speak(text, root / f"{name}.wav") for name, text in SENTENCES.items()}
    sf.write(root / "silence.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    noise = np.random.default_rng(0).normal(0, 0.05, 3 * 16000).astype(np.float32)
    sf.write(root / "noise.wav", noise, 16000)
    a, _ = sf.read(out["stella"], dtype="float32")
    b, _ = sf.read(out["thanks"], dtype="float32")
    sf.write(root / "long.wav", np.concatenate([a, np.zeros(3 * 16000, np.float32), b]), 16000)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return {**out, "silence": root / "silence.wav", "noise": root / "noise.wav", "long": root / "long.wav",
            "broken": root / "broken.wav", "missing": root / "missing.wav"}  # fmt: skip


@pytest.fixture()
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every model decode as (mode, number of clips)."""
    calls: list[tuple[str, int]] = []
    real = whisper_decode.decode_group

    def counting(model: Any, group: list[Any], settings: WhisperSettings, mode: str) -> dict[str, Any]:
        calls.append((mode, len(group)))
        return real(model, group, settings, mode)

    monkeypatch.setattr(whisper_decode, "decode_group", counting)
    return calls
