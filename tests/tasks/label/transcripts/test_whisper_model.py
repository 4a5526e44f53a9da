"""Whisper model lookup: bundled aliases, local CTranslate2 folders, clear errors, one loaded model per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.label.transcripts import whisper_model
from tasks.spec_labelers import WhisperSettings

SETTINGS = WhisperSettings()


def test_model_resolution(tmp_path: Path) -> None:
    assert (whisper_model.resolve_model_path("tiny.en") / "model.bin").is_file()
    assert whisper_model.is_english_only(SETTINGS)
    with pytest.raises(whisper_model.WhisperModelError, match="neither a bundled model"):
        whisper_model.resolve_model_path(str(tmp_path / "nope"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(whisper_model.WhisperModelError, match="lacks model.bin, tokenizer.json"):
        whisper_model.resolve_model_path(str(tmp_path))
    assert whisper_model.get_model(SETTINGS) is whisper_model.get_model(SETTINGS.model_copy(update={"beam_size": 3}))
