"""Whisper pseudo-transcripts on real espeak-ng speech with the bundled tiny.en model."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tasks.core.audio import segment_key, sha256_uri
from tasks.core.label_cache import LabelCache
from tasks.label.transcripts import whisper
from tasks.label.transcripts.common import nearest_span
from tasks.label.transcripts.normalize import normalize_transcript, wer
from tasks.spec_labelers import WhisperSettings

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
    assert nearest_span(spans, 12.3) == 1  # a word in a gap goes to the nearer clip
    assert nearest_span(spans, 12.1) == 0
    assert nearest_span(spans, 31.2, candidates=[2]) == 2  # only clips of the word's window


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


# ---------------------------------------------------------------------------------------------
# Packed decodes are validated; a window that fails is decoded clip by clip

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


def _demo_clip(name: str) -> whisper._Clip:
    from tasks.core.audio import read_audio

    audio = read_audio(str(DEMO / "sources" / REGRESSION_CLIPS[name][0]), target_sr=16000, mono=True)
    return whisper._Clip(name, np.ascontiguousarray(audio, dtype=np.float32), "en")


def _intended(name: str) -> str:
    labels = pd.read_csv(DEMO / "intended_labels.csv")
    path = REGRESSION_CLIPS[name][0].split("/", 1)[1]
    (text,) = labels.loc[labels.file_name == path, "text"]
    return str(text)


def test_demo_clips_that_were_mixed_up_get_their_own_words(decode_calls: list[tuple[str, int]]) -> None:
    model = whisper.get_model(SETTINGS)
    group = [_demo_clip(name) for name in REGRESSION_CLIPS]
    alone = {c.key: whisper._decode_group(model, [c], SETTINGS, "single")[c.key]["text"] for c in group}
    decode_calls.clear()
    labels = whisper._decode_group(model, group, SETTINGS, "packed")
    for name in REGRESSION_CLIPS:
        text = labels[name]["text"]
        assert wer(_intended(name), text) < 0.35, (name, text)
        assert wer(alone[name], text) < 0.35, (name, text, alone[name])
        for other in REGRESSION_CLIPS.keys() - {name}:  # no clip holds another clip's words
            assert wer(_intended(other), text) > 0.8, (name, text)
    # Whatever the packed decode got wrong, the validation must have caught it.
    audio, spans, windows = whisper._pack(group)
    segments = whisper._segments(model, audio, windows, SETTINGS, "en", "packed")
    raw, decoded = whisper._decode(segments, spans, windows)
    raw_ok = all(
        wer(alone[c.key], whisper._label(w)["text"] or "-") < 0.35 for c, w in zip(group, raw, strict=True)
    )
    speech = {
        i: [(spans[i][0] + s, spans[i][0] + e) for s, e in whisper._speech(c.audio)]
        for i, c in enumerate(group)
    }
    problems = whisper._window_problems(decoded[0], dict(enumerate(spans))) or whisper._clip_problems(
        decoded[0], speech
    )
    if not raw_ok:
        assert problems, "the packed decode gave wrong words but passed validation"
        assert decode_calls[0] == ("packed", 3) and ("single", 1) in decode_calls
        assert all(
            "recheck" in labels[c.key]
            for c, w in zip(group, raw, strict=True)
            if wer(alone[c.key], whisper._label(w)["text"] or "-") >= 0.35
        )


def test_pipeline_caches_only_verified_transcripts(tmp_path: Path) -> None:
    rows = []
    for n, name in enumerate(REGRESSION_CLIPS):  # segment keys that keep the bug's packing order
        path = DEMO / "sources" / REGRESSION_CLIPS[name][0]
        row = _row(path, name)
        rows.append({**row, "segment_key": f"{n}-{row['segment_key']}"})
    items = pd.DataFrame(rows)
    cache = whisper.make_cache(str(tmp_path), SETTINGS)
    result = whisper.fill_missing_transcripts(items, SETTINGS, cache)
    assert result.rejects.empty, result.rejects.to_dict("records")
    for row in result.items.itertuples():
        name = row.utterance_id.split("/")[1]
        assert wer(_intended(name), row.transcript_raw) < 0.35, (name, row.transcript_raw)
    stored = LabelCache(str(tmp_path), whisper.labeler_name(SETTINGS), whisper.cache_settings(SETTINGS))
    cached = stored.get_many(list(items.segment_key))
    assert {k: v["text"] for k, v in cached.items()} == dict(
        zip(items.segment_key, result.items.transcript_raw, strict=True)
    )
    assert whisper.cache_settings(SETTINGS)["decoder"] == "packed-v3"  # v1, v2 labels are never reused


def _segment(seek: int, words: list[tuple[str, float, float]]) -> SimpleNamespace:
    return SimpleNamespace(
        seek=seek, start=words[0][1] if words else seek / 100, end=words[-1][2] if words else seek / 100,
        avg_logprob=-0.2, no_speech_prob=0.05,
        words=[SimpleNamespace(word=w, start=s, end=e, probability=0.9) for w, s, e in words],
    )  # fmt: skip


def test_window_and_clip_problems_flag_implausible_decodes() -> None:
    spans = {0: (0.0, 3.0), 1: (3.5, 8.0)}
    speech = {0: [(0.2, 2.8)], 1: [(3.7, 7.5)]}
    good = [(0, 0.2, 0.9), (0, 1.0, 2.6), (1, 3.8, 5.0), (1, 5.2, 7.4)]
    assert whisper._window_problems(good, spans) == []
    assert whisper._clip_problems(good, speech) == {}
    outside = [*good[:3], (1, 8.4, 9.6)]  # past the window's audio
    assert "outside the clips' audio" in whisper._window_problems(outside, spans)[0]
    between = [*good[:3], (1, 9.0, 9.2)]  # in the padding before the next window
    assert "outside the clips' audio" in whisper._window_problems(between, {**spans, 2: (10.0, 12.0)})[0]
    collapsed = [(0, 0.2, 7.9), (1, 7.9, 7.9), (1, 7.9, 7.9), (1, 7.9, 7.9)]
    assert any("collapse" in p for p in whisper._window_problems(collapsed, spans))
    reordered = [good[2], good[3], good[0], good[1]]  # the second clip's words came first
    assert any("out of order" in p for p in whisper._window_problems(reordered, spans))
    stopped = good[:2]  # the decoder stopped after the first clip
    assert whisper._window_problems(stopped, spans) == []
    assert whisper._clip_problems(stopped, speech) == {1: "holds 3.8 s of speech but got no words"}
    cut = good[:3]  # clip 1's speech runs on 2 s past its last word (and the slack)
    assert whisper._clip_problems(cut, speech) == {1: "2.0 s of its speech got no words"}
    assert whisper._clip_problems(stopped, {0: speech[0], 1: []}) == {}  # a silent clip may be empty


def test_failed_window_is_decoded_clip_by_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crafted decoder output: words outside the clips' spans make the whole window decode alone."""
    group = [whisper._Clip(name, np.zeros(n * 16000, np.float32), "en") for name, n in (("a", 2), ("b", 3))]
    alone = {2 * 16000: [("alpha", 0.1, 1.5)], 3 * 16000: [("bravo", 0.2, 2.5)]}
    packed: list[tuple[str, float, float]] = []
    calls: list[str] = []

    def segments(model: Any, audio: np.ndarray, windows: Any, settings: Any, language: str, mode: str) -> Any:
        calls.append(mode)
        return [_segment(0, packed if mode == "packed" else alone[len(audio)])]

    monkeypatch.setattr(whisper, "_segments", segments)
    monkeypatch.setattr(whisper, "_speech", lambda audio: [(0.1, len(audio) / 16000 - 0.1)])
    # spans: a = 0-2 s, b = 2.5-5.5 s. A plausible decode is kept as it is.
    packed[:] = [("one", 0.1, 1.8), ("two", 2.6, 5.3)]
    labels = whisper._decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed"]
    assert {k: (v["text"], v["decode"]) for k, v in labels.items()} == {
        "a": ("one", "packed"),
        "b": ("two", "packed"),
    }
    # Both words timestamped past the audio (collapsed onto the end): both clips are decoded alone.
    calls.clear()
    packed[:] = [("one", 5.9, 6.4), ("two", 6.4, 6.4)]
    labels = whisper._decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single", "single"]
    assert {k: (v["text"], v["decode"]) for k, v in labels.items()} == {
        "a": ("alpha", "single"),
        "b": ("bravo", "single"),
    }
    assert "outside the clips' audio" in labels["a"]["recheck"]
    # The decoder stopped after clip a: only b, whose speech got no words, is decoded alone.
    calls.clear()
    packed[:] = [("one", 0.1, 1.8)]
    labels = whisper._decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single"]
    assert (labels["a"]["text"], labels["a"]["decode"], labels["b"]["text"]) == ("one", "packed", "bravo")
    assert labels["b"]["recheck"] == "packed decode lost words: clip holds 2.9 s of speech but got no words"
    # A clip left empty in a window that passed every check (no VAD speech in it) is still
    # decoded alone before its empty label can be cached.
    calls.clear()
    monkeypatch.setattr(whisper, "_speech", lambda audio: [(0.1, 1.9)])  # speech in clip a only
    labels = whisper._decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single"]
    assert labels["b"]["recheck"] == "packed decode gave no words"


def test_a_clip_decodes_to_the_same_words_every_time() -> None:
    """Equal specs give equal releases: no sampling fallback (faster-whisper's default temperatures
    0.2, 0.4, ... draw random tokens; this clip triggered it and came back with different words)."""
    from tasks.core.audio import read_audio

    settings = WhisperSettings()
    model = whisper.get_model(settings)
    audio = np.ascontiguousarray(
        read_audio(str(DEMO / "sources" / "audiobooks" / "5246" / "859" / "5246-859-0001.flac"),
                   target_sr=16000, mono=True), dtype=np.float32)
    runs = []
    for _ in range(4):
        segments = list(whisper._segments(model, audio, [(0.0, len(audio) / 16000)], settings, "en", "single"))
        assert all(seg.temperature == 0.0 for seg in segments)
        runs.append(" ".join(seg.text for seg in segments))
    assert len(set(runs)) == 1, runs


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def test_thread_environment_does_not_change_transcripts_or_scores() -> None:
    """`OMP_NUM_THREADS=1` (a Dask worker's environment) gave other scores than the default: numpy's
    BLAS computes the mel spectrogram and split its sums by thread. Labels are pinned (tasks/core/threads.py)."""
    import json
    import os
    import sys

    clips = sorted(str(p) for p in (DEMO / "sources" / "field_recordings").rglob("*.wav") if p.stat().st_size > 1000)
    clips = clips[:5]
    default = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    if (os.cpu_count() or 1) < 2:  # the libraries' default would be one thread: compare with several
        default.update(dict.fromkeys(_THREAD_VARS, "3"))
    runs = []
    for env in (default, {**default, **dict.fromkeys(_THREAD_VARS, "1")}):
        proc = subprocess.run([sys.executable, "-m", "tests.tasks.label.transcripts.thread_probe", *clips],
                              cwd=Path(__file__).resolve().parents[4], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout))
    assert len(runs[0]) == len(clips) and any(v[0] != "rejected" for v in runs[0].values())
    assert runs[0] == runs[1]
