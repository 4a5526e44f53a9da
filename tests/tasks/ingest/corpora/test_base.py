"""The shared ingest step: probe/hash once per file, crop checks, audio problems as rejects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from manifests.schema import REJECTS_SCHEMA, UTTERANCES_SCHEMA
from tasks.core import audio
from tasks.ingest.corpora import base
from tasks.ingest.corpora.base import (
    Candidate,
    CorpusLayoutError,
    IngestResult,
    build_result,
    check_options,
    layout_error,
)
from tasks.spec import SourceSpec


def write_tone(
    path: Path, seconds: float, sample_rate: int = 16000, channels: int = 1, freq: float = 440.0, seed: int = 0
) -> Path:
    """A short sine + a little noise (distinct per seed, so hashes differ) in the suffix's format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    subtype = "PCM_16" if path.suffix.lower() in (".wav", ".flac") else None
    sf.write(path, data.astype(np.float32), sample_rate, subtype=subtype)
    return path


def _source(path: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="src", kind="folder", path=str(path), **kw)


def test_build_result_rows_rejects_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = write_tone(tmp_path / "good.wav", 2.0, seed=1)
    stereo = write_tone(tmp_path / "stereo.flac", 1.0, sample_rate=48000, channels=2, seed=2)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    calls: list[str] = []
    real = audio.probe_and_hash
    monkeypatch.setattr(audio, "probe_and_hash", lambda uri: calls.append(uri) or real(uri))

    cands = [
        Candidate("good", str(good), "r1", {"sentiment": "positive", "sentiment_origin": "human"}),
        Candidate("good@0.5", str(good), "r2", {}, offset_s=0.5, duration_s=1.0),
        Candidate("good@1.5", str(good), "r3", {}, offset_s=1.5),
        Candidate("good@1.8", str(good), "r4", {}, offset_s=1.8, duration_s=1.0),  # past the end
        Candidate("good@2", str(good), "r5", {}, offset_s=2.0, duration_s=0.5),  # starts at the end
        Candidate("good", str(good), "r6", {}),  # duplicate id
        Candidate("stereo", str(stereo), str(stereo), {"language": "en"}),
        Candidate("corrupt", str(corrupt), str(corrupt), {}),
        Candidate("empty", str(empty), str(empty), {}),
        Candidate("missing", str(tmp_path / "missing.wav"), "meta:9", {}),
    ]
    pre = [base.ingest_reject(_source(tmp_path), "meta:1", "malformed_metadata", "bad line")]
    result = build_result(_source(tmp_path), cands, pre)

    assert result.found == 11 == len(result.items) + len(result.rejects)
    assert list(result.items.columns) == UTTERANCES_SCHEMA.names
    assert list(result.rejects.columns) == REJECTS_SCHEMA.names
    assert sorted(calls) == sorted({c.uri for c in cands})  # each file probed + hashed once

    items = result.items.set_index("utterance_id")
    assert list(items.index) == ["src/good", "src/good@0.5", "src/good@1.5", "src/stereo"]
    assert items.loc["src/good", "duration_s"] == pytest.approx(2.0)
    assert items.loc["src/good", "offset_s"] == 0.0
    assert items.loc["src/good", "sentiment"] == "positive"
    assert items.loc["src/good@0.5", "duration_s"] == pytest.approx(1.0)
    assert items.loc["src/good@1.5", "duration_s"] == pytest.approx(0.5)  # to the end of the file
    assert items.loc["src/stereo", "num_channels"] == 2
    assert items.loc["src/stereo", "sample_rate"] == 48000
    sha = audio.sha256_uri(str(good))
    assert items.loc["src/good", "audio_sha256"] == sha
    assert items.loc["src/good@0.5", "segment_key"] == audio.segment_key(sha, 0.5, 1.0)
    assert set(items["corpus"]) == {"folder"} and set(items["source"]) == {"src"}
    assert items.loc["src/good", "transcript"] is None  # unset columns are None, not ""
    assert result.items["duration_s"].dtype == "float64"
    assert result.items["sample_rate"].dtype == "int32"

    rejects = result.rejects.set_index("input_ref")
    assert set(rejects["stage"]) == {"ingest"}
    assert rejects.loc["r4", "reason"] == "malformed_metadata" and "past the end" in rejects.loc["r4", "detail"]
    assert rejects.loc["r5", "reason"] == "malformed_metadata"
    assert rejects.loc["r6", "reason"] == "malformed_metadata" and "r1" in rejects.loc["r6", "detail"]
    assert rejects.loc[str(corrupt), "reason"] == "unreadable_audio"
    assert str(corrupt) in rejects.loc[str(corrupt), "detail"]
    assert rejects.loc[str(empty), "reason"] == "empty_audio"
    assert rejects.loc["meta:9", "reason"] == "missing_audio"
    assert "meta:9" in rejects.loc["meta:9", "detail"] and "missing.wav" in rejects.loc["meta:9", "detail"]


def test_empty_candidates_give_typed_empty_frames(tmp_path: Path) -> None:
    result = build_result(_source(tmp_path), [])
    assert result.found == 0 and result.items.empty and result.rejects.empty
    assert list(result.items.columns) == UTTERANCES_SCHEMA.names


def test_adapter_may_not_set_audio_columns(tmp_path: Path) -> None:
    good = write_tone(tmp_path / "a.wav", 0.5)
    with pytest.raises(ValueError, match="segment_key"):
        build_result(_source(tmp_path), [Candidate("a", str(good), "a", {"segment_key": "x"})])
    with pytest.raises(ValueError, match="mood"):
        build_result(_source(tmp_path), [Candidate("a", str(good), "a", {"mood": "x"})])


def test_ingest_result_checks_found() -> None:
    with pytest.raises(AssertionError, match="found 3"):
        IngestResult(items=pd.DataFrame({"a": [1]}), rejects=pd.DataFrame({"b": [1]}), found=3)


def test_layout_error_says_expected_and_found(tmp_path: Path) -> None:
    src = SourceSpec(name="acted", kind="ravdess", path="/x")
    files = [f"/x/f{i}.mp3" for i in range(12)]
    err = layout_error(src, "Actor_NN/ folders", "0 such files", files)
    assert isinstance(err, CorpusLayoutError) and isinstance(err, ValueError)
    text = str(err)
    assert text.startswith("ravdess source 'acted' at /x: expected Actor_NN/ folders, found 0 such files")
    assert "12 files: f0.mp3, f1.mp3" in text and "..." in text


def test_check_options(tmp_path: Path) -> None:
    src = SourceSpec(name="s", kind="folder", path=str(tmp_path), options={"shuffle": True})
    with pytest.raises(ValueError, match="unknown option"):
        check_options(src, {})
    with pytest.raises(ValueError, match="must be int"):
        check_options(src.model_copy(update={"options": {"n": "3"}}), {"n": int})
    assert check_options(src, {"shuffle": bool}) == {"shuffle": True}
