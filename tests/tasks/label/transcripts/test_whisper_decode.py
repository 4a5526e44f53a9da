"""Whisper's packed decode on real speech with the bundled tiny.en model: packing layout, validation of packed
windows (a window that fails is decoded clip by clip), thresholds, deterministic decodes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from tasks.label.transcripts import whisper_decode, whisper_model
from tasks.label.transcripts.common import nearest_span
from tasks.label.transcripts.normalize import normalize_transcript, wer
from tasks.spec_labelers import WhisperSettings
from tests.tasks.label.transcripts.whisper_audio import (
    DEMO,
    REGRESSION_CLIPS,
    SENTENCES,
    SETTINGS,
    demo_clip,
    intended,
    needs_espeak,
)

pytestmark = needs_espeak


@pytest.mark.parametrize("window_s", [whisper_decode.PACK_WINDOW_S, 6.0])
def test_packing_gives_the_same_words_as_one_clip_at_a_time(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, window_s: float
) -> None:
    """One shared window, and (6 s windows) one window per clip: words stay with their clip."""
    monkeypatch.setattr(whisper_decode, "PACK_WINDOW_S", window_s)
    model = whisper_model.get_model(SETTINGS)
    group = [whisper_decode.Clip(name, sf.read(clips[name], dtype="float32")[0], "en") for name in SENTENCES]
    assert len(whisper_decode._pack(group)[2]) == (1 if window_s > 10 else 3)
    packed = whisper_decode.decode_group(model, group, SETTINGS, "packed")
    for clip in group:
        alone = whisper_decode.decode_group(model, [clip], SETTINGS, "single")[clip.key]
        assert normalize_transcript(packed[clip.key]["text"]) == normalize_transcript(alone["text"])


def test_pack_layout_respects_window_and_gaps() -> None:
    group = [
        whisper_decode.Clip(str(i), np.ones(int(d * 16000), np.float32), "en")
        for i, d in enumerate([12, 12, 6, 25])
    ]
    audio, spans, windows = whisper_decode._pack(group)
    assert windows == [(0.0, 24.5), (25.0, 31.0), (31.0, 56.0)]  # windows start on whole seconds
    assert spans == [(0.0, 12.0), (12.5, 24.5), (25.0, 31.0), (31.0, 56.0)]
    assert len(audio) == 56 * 16000
    assert all(end - start <= whisper_decode.PACK_WINDOW_S for start, end in windows)
    assert nearest_span(spans, 12.3) == 1  # a word in a gap goes to the nearer clip
    assert nearest_span(spans, 12.1) == 0
    assert nearest_span(spans, 31.2, candidates=[2]) == 2  # only clips of the word's window


def test_thresholds_are_reported_with_numbers() -> None:
    strict = WhisperSettings(min_avg_logprob=-0.01, max_compression_ratio=0.5)
    label = {"text": "hello hello", "confidence": 0.9, "avg_logprob": -0.3, "no_speech_prob": 0.1,
             "compression_ratio": 0.6}  # fmt: skip
    problems = whisper_decode.low_confidence_problems(label, strict)
    assert "avg_logprob -0.30 < min_avg_logprob -0.01" in problems
    assert "compression_ratio 0.60 > max_compression_ratio 0.5" in problems
    assert whisper_decode.low_confidence_problems(label, SETTINGS) == []
    assert whisper_decode.low_confidence_problems({**label, "text": ""}, SETTINGS) == ["Whisper heard no words"]


def test_demo_clips_that_were_mixed_up_get_their_own_words(decode_calls: list[tuple[str, int]]) -> None:
    model = whisper_model.get_model(SETTINGS)
    group = [demo_clip(name) for name in REGRESSION_CLIPS]
    alone = {c.key: whisper_decode.decode_group(model, [c], SETTINGS, "single")[c.key]["text"] for c in group}
    decode_calls.clear()
    labels = whisper_decode.decode_group(model, group, SETTINGS, "packed")
    for name in REGRESSION_CLIPS:
        text = labels[name]["text"]
        assert wer(intended(name), text) < 0.35, (name, text)
        assert wer(alone[name], text) < 0.35, (name, text, alone[name])
        for other in REGRESSION_CLIPS.keys() - {name}:  # no clip holds another clip's words
            assert wer(intended(other), text) > 0.8, (name, text)
    # Whatever the packed decode got wrong, the validation must have caught it.
    audio, spans, windows = whisper_decode._pack(group)
    segments = whisper_decode._segments(model, audio, windows, SETTINGS, "en", "packed")
    raw, decoded = whisper_decode._decode(segments, spans, windows)
    raw_ok = all(
        wer(alone[c.key], whisper_decode._label(w)["text"] or "-") < 0.35 for c, w in zip(group, raw, strict=True)
    )
    speech = {
        i: [(spans[i][0] + s, spans[i][0] + e) for s, e in whisper_decode._speech(c.audio)]
        for i, c in enumerate(group)
    }
    problems = whisper_decode._window_problems(decoded[0], dict(enumerate(spans))) or whisper_decode._clip_problems(
        decoded[0], speech
    )
    if not raw_ok:
        assert problems, "the packed decode gave wrong words but passed validation"
        assert decode_calls[0] == ("packed", 3) and ("single", 1) in decode_calls
        assert all(
            "recheck" in labels[c.key]
            for c, w in zip(group, raw, strict=True)
            if wer(alone[c.key], whisper_decode._label(w)["text"] or "-") >= 0.35
        )


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
    assert whisper_decode._window_problems(good, spans) == []
    assert whisper_decode._clip_problems(good, speech) == {}
    outside = [*good[:3], (1, 8.4, 9.6)]  # past the window's audio
    assert "outside the clips' audio" in whisper_decode._window_problems(outside, spans)[0]
    between = [*good[:3], (1, 9.0, 9.2)]  # in the padding before the next window
    assert "outside the clips' audio" in whisper_decode._window_problems(between, {**spans, 2: (10.0, 12.0)})[0]
    collapsed = [(0, 0.2, 7.9), (1, 7.9, 7.9), (1, 7.9, 7.9), (1, 7.9, 7.9)]
    assert any("collapse" in p for p in whisper_decode._window_problems(collapsed, spans))
    reordered = [good[2], good[3], good[0], good[1]]  # the second clip's words came first
    assert any("out of order" in p for p in whisper_decode._window_problems(reordered, spans))
    stopped = good[:2]  # the decoder stopped after the first clip
    assert whisper_decode._window_problems(stopped, spans) == []
    assert whisper_decode._clip_problems(stopped, speech) == {1: "holds 3.8 s of speech but got no words"}
    cut = good[:3]  # clip 1's speech runs on 2 s past its last word (and the slack)
    assert whisper_decode._clip_problems(cut, speech) == {1: "2.0 s of its speech got no words"}
    assert whisper_decode._clip_problems(stopped, {0: speech[0], 1: []}) == {}  # a silent clip may be empty


def test_failed_window_is_decoded_clip_by_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crafted decoder output: words outside the clips' spans make the whole window decode alone."""
    group = [whisper_decode.Clip(name, np.zeros(n * 16000, np.float32), "en") for name, n in (("a", 2), ("b", 3))]
    alone = {2 * 16000: [("alpha", 0.1, 1.5)], 3 * 16000: [("bravo", 0.2, 2.5)]}
    packed: list[tuple[str, float, float]] = []
    calls: list[str] = []

    def segments(model: Any, audio: np.ndarray, windows: Any, settings: Any, language: str, mode: str) -> Any:
        calls.append(mode)
        return [_segment(0, packed if mode == "packed" else alone[len(audio)])]

    monkeypatch.setattr(whisper_decode, "_segments", segments)
    monkeypatch.setattr(whisper_decode, "_speech", lambda audio: [(0.1, len(audio) / 16000 - 0.1)])
    # spans: a = 0-2 s, b = 2.5-5.5 s. A plausible decode is kept as it is.
    packed[:] = [("one", 0.1, 1.8), ("two", 2.6, 5.3)]
    labels = whisper_decode.decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed"]
    assert {k: (v["text"], v["decode"]) for k, v in labels.items()} == {
        "a": ("one", "packed"),
        "b": ("two", "packed"),
    }
    # Both words timestamped past the audio (collapsed onto the end): both clips are decoded alone.
    calls.clear()
    packed[:] = [("one", 5.9, 6.4), ("two", 6.4, 6.4)]
    labels = whisper_decode.decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single", "single"]
    assert {k: (v["text"], v["decode"]) for k, v in labels.items()} == {
        "a": ("alpha", "single"),
        "b": ("bravo", "single"),
    }
    assert "outside the clips' audio" in labels["a"]["recheck"]
    # The decoder stopped after clip a: only b, whose speech got no words, is decoded alone.
    calls.clear()
    packed[:] = [("one", 0.1, 1.8)]
    labels = whisper_decode.decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single"]
    assert (labels["a"]["text"], labels["a"]["decode"], labels["b"]["text"]) == ("one", "packed", "bravo")
    assert labels["b"]["recheck"] == "packed decode lost words: clip holds 2.9 s of speech but got no words"
    # A clip left empty in a window that passed every check (no VAD speech in it) is still
    # decoded alone before its empty label can be cached.
    calls.clear()
    monkeypatch.setattr(whisper_decode, "_speech", lambda audio: [(0.1, 1.9)])  # speech in clip a only
    labels = whisper_decode.decode_group(None, group, SETTINGS, "packed")  # type: ignore[arg-type]
    assert calls == ["packed", "single"]
    assert labels["b"]["recheck"] == "packed decode gave no words"


def test_a_clip_decodes_to_the_same_words_every_time() -> None:
    """Equal specs give equal releases: no sampling fallback (faster-whisper's default temperatures
    0.2, 0.4, ... draw random tokens; this clip triggered it and came back with different words)."""
    from tasks.core.audio import read_audio

    settings = WhisperSettings()
    model = whisper_model.get_model(settings)
    audio = np.ascontiguousarray(
        read_audio(str(DEMO / "sources" / "audiobooks" / "5246" / "859" / "5246-859-0001.flac"),
                   target_sr=16000, mono=True), dtype=np.float32)
    runs = []
    for _ in range(4):
        segments = list(whisper_decode._segments(model, audio, [(0.0, len(audio) / 16000)], settings, "en", "single"))
        assert all(seg.temperature == 0.0 for seg in segments)
        runs.append(" ".join(seg.text for seg in segments))
    assert len(set(runs)) == 1, runs
