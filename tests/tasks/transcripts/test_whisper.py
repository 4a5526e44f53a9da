"""Whisper pseudo-transcripts on real espeak-ng speech with the bundled tiny.en model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tasks.audio import segment_key, sha256_uri
from tasks.label_cache import LabelCache
from tasks.spec import WhisperSettings
from tasks.transcripts import whisper
from tasks.transcripts.normalize import normalize_transcript, wer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox"
)

SENTENCES = {
    "stella": "Please call Stella and ask her to bring these things with her from the store.",
    "report": "We need to finish this report before Friday afternoon.",
    "thanks": "Thank you very much for your help with the project.",
}
SETTINGS = WhisperSettings()


def _speak(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """espeak-ng sentences plus silence, noise, a long clip and a broken file, all at 16 kHz."""
    root = tmp_path_factory.mktemp("whisper_audio")
    out = {name: _speak(text, root / f"{name}.wav") for name, text in SENTENCES.items()}
    sf.write(root / "silence.wav", np.zeros(3 * 16000, dtype=np.float32), 16000)
    noise = np.random.default_rng(0).normal(0, 0.05, 3 * 16000).astype(np.float32)
    sf.write(root / "noise.wav", noise, 16000)
    a, _ = sf.read(out["stella"], dtype="float32")
    b, _ = sf.read(out["thanks"], dtype="float32")
    sf.write(root / "long.wav", np.concatenate([a, np.zeros(3 * 16000, np.float32), b]), 16000)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    return {**out, "silence": root / "silence.wav", "noise": root / "noise.wav", "long": root / "long.wav",
            "broken": root / "broken.wav", "missing": root / "missing.wav"}  # fmt: skip


def _row(path: Path, name: str, transcript: str | None = None, language: str = "en") -> dict[str, Any]:
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


@pytest.fixture()
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every model decode as (mode, number of clips)."""
    calls: list[tuple[str, int]] = []
    real = whisper._decode_group

    def counting(model: Any, group: list[Any], settings: WhisperSettings, mode: str) -> dict[str, Any]:
        calls.append((mode, len(group)))
        return real(model, group, settings, mode)

    monkeypatch.setattr(whisper, "_decode_group", counting)
    return calls


def test_transcribes_known_sentences(clips: dict[str, Path], decode_calls: list[tuple[str, int]]) -> None:
    items = pd.DataFrame([_row(clips[name], name) for name in SENTENCES])
    progress: list[tuple[int, int]] = []
    result = whisper.fill_missing_transcripts(
        items, SETTINGS, None, progress=lambda d, t: progress.append((d, t))
    )
    assert result.rejects.empty, result.rejects.to_dict("records")
    assert decode_calls == [("packed", 3)]  # three short clips share one window
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)
    for row in result.items.itertuples():
        name = row.utterance_id.split("/")[1]
        assert wer(SENTENCES[name], row.transcript_raw) < 0.35, row.transcript_raw
        assert row.transcript_origin == "whisper"
        assert row.transcript == normalize_transcript(row.transcript_raw)
        assert 0.3 < row.transcript_confidence <= 1.0
        assert row.avg_logprob > SETTINGS.min_avg_logprob
        assert 0.0 <= row.no_speech_prob < SETTINGS.max_no_speech_prob
        assert 0.0 < row.compression_ratio < SETTINGS.max_compression_ratio


@pytest.mark.parametrize("window_s", [whisper.PACK_WINDOW_S, 6.0])
def test_packing_gives_the_same_words_as_one_clip_at_a_time(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, window_s: float
) -> None:
    """One shared window, and (6 s windows) one window per clip: words stay with their clip."""
    monkeypatch.setattr(whisper, "PACK_WINDOW_S", window_s)
    model = whisper.get_model(SETTINGS)
    group = [whisper._Clip(name, sf.read(clips[name], dtype="float32")[0], "en") for name in SENTENCES]
    assert len(whisper._pack(group)[2]) == (1 if window_s > 10 else 3)
    packed = whisper._decode_group(model, group, SETTINGS, "packed")
    for clip in group:
        alone = whisper._decode_group(model, [clip], SETTINGS, "single")[clip.key]
        assert normalize_transcript(packed[clip.key]["text"]) == normalize_transcript(alone["text"])


def test_pack_layout_respects_window_and_gaps() -> None:
    group = [
        whisper._Clip(str(i), np.ones(int(d * 16000), np.float32), "en")
        for i, d in enumerate([12, 12, 6, 25])
    ]
    audio, spans, windows = whisper._pack(group)
    assert windows == [(0.0, 24.5), (25.0, 31.0), (31.0, 56.0)]  # windows start on whole seconds
    assert spans == [(0.0, 12.0), (12.5, 24.5), (25.0, 31.0), (31.0, 56.0)]
    assert len(audio) == 56 * 16000
    assert all(end - start <= whisper.PACK_WINDOW_S for start, end in windows)
    assert whisper._nearest_span(spans, 12.3) == 1  # a word in a gap goes to the nearer clip
    assert whisper._nearest_span(spans, 12.1) == 0
    assert whisper._nearest_span(spans, 31.2, candidates=[2]) == 2  # only clips of the word's window


def test_second_run_with_cache_transcribes_nothing(
    clips: dict[str, Path], tmp_path: Path, decode_calls: list[tuple[str, int]]
) -> None:
    items = pd.DataFrame([_row(clips[name], name) for name in ("stella", "thanks")])
    first = whisper.fill_missing_transcripts(items, SETTINGS, whisper.make_cache(str(tmp_path), SETTINGS))
    assert len(decode_calls) == 1
    # A fresh process opens the cache from disk (make_cache would hand back this process's instance).
    cache = LabelCache(str(tmp_path), whisper.labeler_name(SETTINGS), whisper.cache_settings(SETTINGS))
    second = whisper.fill_missing_transcripts(items, SETTINGS, cache)
    assert len(decode_calls) == 1, "the second run must not decode"
    assert cache.stats["hits"] == 2
    pd.testing.assert_frame_equal(first.items, second.items)
    assert whisper.labeler_name(SETTINGS) == "whisper-tiny.en"


def test_cache_for_other_settings_is_refused(tmp_path: Path) -> None:
    cache = whisper.make_cache(str(tmp_path), WhisperSettings(beam_size=5))
    with pytest.raises(ValueError, match="does not match"):
        whisper.fill_missing_transcripts(pd.DataFrame([]), SETTINGS, cache)


def test_non_english_row_is_rejected(clips: dict[str, Path], decode_calls: list[tuple[str, int]]) -> None:
    items = pd.DataFrame([_row(clips["thanks"], "fa1", language="fa")])
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert result.items.empty and decode_calls == []
    reject = result.rejects.iloc[0]
    assert (reject.reason, reject.input_ref, reject.stage) == (
        "unsupported_language",
        "test/fa1",
        "transcripts",
    )
    assert "language 'fa' needs a multilingual Whisper model" in reject.detail
    assert "labelers.whisper.model" in reject.detail


def test_unreadable_and_missing_files_are_rejected_with_their_reason(clips: dict[str, Path]) -> None:
    items = pd.DataFrame(
        [_row(clips["broken"], "broken"), _row(clips["missing"], "missing"), _row(clips["thanks"], "ok")]
    )
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert list(result.items.utterance_id) == ["test/ok"]
    reasons = dict(zip(result.rejects.input_ref, result.rejects.reason, strict=True))
    assert reasons == {"test/broken": "unreadable_audio", "test/missing": "missing_audio"}
    assert all("broken.wav" in d or "missing.wav" in d for d in result.rejects.detail)


def test_silence_and_noise_are_low_confidence(clips: dict[str, Path]) -> None:
    items = pd.DataFrame(
        [_row(clips["silence"], "silence"), _row(clips["noise"], "noise"), _row(clips["report"], "ok")]
    )
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert list(result.items.utterance_id) == ["test/ok"]
    assert set(result.rejects.input_ref) == {"test/silence", "test/noise"}
    assert set(result.rejects.reason) == {"low_confidence_transcript"}
    assert all(d.startswith("test/") and "Whisper" in d for d in result.rejects.detail)


def test_thresholds_are_reported_with_numbers() -> None:
    strict = WhisperSettings(min_avg_logprob=-0.01, max_compression_ratio=0.5)
    label = {"text": "hello hello", "confidence": 0.9, "avg_logprob": -0.3, "no_speech_prob": 0.1,
             "compression_ratio": 0.6}  # fmt: skip
    problems = whisper._low_confidence_problems(label, strict)
    assert "avg_logprob -0.30 < min_avg_logprob -0.01" in problems
    assert "compression_ratio 0.60 > max_compression_ratio 0.5" in problems
    assert whisper._low_confidence_problems(label, SETTINGS) == []
    assert whisper._low_confidence_problems({**label, "text": ""}, SETTINGS) == ["Whisper heard no words"]


def test_human_transcript_is_kept_and_normalised(
    clips: dict[str, Path], decode_calls: list[tuple[str, int]]
) -> None:
    raw = "THANK YOU VERY MUCH FOR YOUR HELP WITH THE 2ND PROJECT"
    items = pd.DataFrame(
        [
            _row(clips["thanks"], "human", transcript=raw),
            _row(clips["thanks"], "noise", transcript="[LAUGHTER]"),
        ]
    )
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert decode_calls == []
    row = result.items.iloc[0]
    assert row.transcript_raw == raw
    assert row.transcript == "thank you very much for your help with the second project"
    assert row.transcript_origin == "human"
    assert np.isnan(row.transcript_confidence)
    assert list(result.rejects.reason) == ["missing_label"]
    assert "'[LAUGHTER]' has no words" in result.rejects.detail[0]


def test_row_without_segment_key_is_transcribed_but_not_cached(
    clips: dict[str, Path], tmp_path: Path, decode_calls: list[tuple[str, int]]
) -> None:
    items = pd.DataFrame([{**_row(clips["report"], "nokey"), "segment_key": None}])
    cache = whisper.make_cache(str(tmp_path), SETTINGS)
    result = whisper.fill_missing_transcripts(items, SETTINGS, cache)
    assert wer(SENTENCES["report"], result.items.iloc[0].transcript_raw) < 0.35
    assert len(cache) == 0 and decode_calls == [("packed", 1)]


def test_long_clip_uses_vad(clips: dict[str, Path], decode_calls: list[tuple[str, int]]) -> None:
    settings = WhisperSettings(vad_min_duration_s=5.0)
    items = pd.DataFrame([_row(clips["long"], "long")])
    result = whisper.fill_missing_transcripts(items, settings, None)
    assert decode_calls == [("vad", 1)]
    expected = SENTENCES["stella"] + " " + SENTENCES["thanks"]
    assert wer(expected, result.items.iloc[0].transcript_raw) < 0.35


def test_model_resolution(tmp_path: Path) -> None:
    assert (whisper.resolve_model_path("tiny.en") / "model.bin").is_file()
    assert whisper.is_english_only(SETTINGS)
    with pytest.raises(whisper.WhisperModelError, match="neither a bundled model"):
        whisper.resolve_model_path(str(tmp_path / "nope"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(whisper.WhisperModelError, match="lacks model.bin, tokenizer.json"):
        whisper.resolve_model_path(str(tmp_path))
    assert whisper.get_model(SETTINGS) is whisper.get_model(SETTINGS.model_copy(update={"beam_size": 3}))
