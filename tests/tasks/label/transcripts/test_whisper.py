"""The Whisper labeler on real espeak-ng speech with the bundled tiny.en model: fills, rejects, the label cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.label_cache import LabelCache
from tasks.label.transcripts import whisper
from tasks.label.transcripts.normalize import normalize_transcript, wer
from tasks.spec_labelers import WhisperSettings
from tests.tasks.label.transcripts.whisper_audio import (
    DEMO,
    REGRESSION_CLIPS,
    SENTENCES,
    SETTINGS,
    intended,
    item_row,
    needs_espeak,
)

pytestmark = needs_espeak


def test_transcribes_known_sentences(clips: dict[str, Path], decode_calls: list[tuple[str, int]]) -> None:
    items = pd.DataFrame([item_row(clips[name], name) for name in SENTENCES])
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


def test_second_run_with_cache_transcribes_nothing(
    clips: dict[str, Path], tmp_path: Path, decode_calls: list[tuple[str, int]]
) -> None:
    items = pd.DataFrame([item_row(clips[name], name) for name in ("stella", "thanks")])
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
    items = pd.DataFrame([item_row(clips["thanks"], "fa1", language="fa")])
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
        [item_row(clips["broken"], "broken"), item_row(clips["missing"], "missing"), item_row(clips["thanks"], "ok")]
    )
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert list(result.items.utterance_id) == ["test/ok"]
    reasons = dict(zip(result.rejects.input_ref, result.rejects.reason, strict=True))
    assert reasons == {"test/broken": "unreadable_audio", "test/missing": "missing_audio"}
    assert all("broken.wav" in d or "missing.wav" in d for d in result.rejects.detail)


def test_silence_and_noise_are_low_confidence(clips: dict[str, Path]) -> None:
    items = pd.DataFrame(
        [item_row(clips["silence"], "silence"), item_row(clips["noise"], "noise"), item_row(clips["report"], "ok")]
    )
    result = whisper.fill_missing_transcripts(items, SETTINGS, None)
    assert list(result.items.utterance_id) == ["test/ok"]
    assert set(result.rejects.input_ref) == {"test/silence", "test/noise"}
    assert set(result.rejects.reason) == {"low_confidence_transcript"}
    assert all(d.startswith("test/") and "Whisper" in d for d in result.rejects.detail)


def test_human_transcript_is_kept_and_normalised(
    clips: dict[str, Path], decode_calls: list[tuple[str, int]]
) -> None:
    raw = "THANK YOU VERY MUCH FOR YOUR HELP WITH THE 2ND PROJECT"
    items = pd.DataFrame(
        [
            item_row(clips["thanks"], "human", transcript=raw),
            item_row(clips["thanks"], "noise", transcript="[LAUGHTER]"),
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
    items = pd.DataFrame([{**item_row(clips["report"], "nokey"), "segment_key": None}])
    cache = whisper.make_cache(str(tmp_path), SETTINGS)
    result = whisper.fill_missing_transcripts(items, SETTINGS, cache)
    assert wer(SENTENCES["report"], result.items.iloc[0].transcript_raw) < 0.35
    assert len(cache) == 0 and decode_calls == [("packed", 1)]


def test_long_clip_uses_vad(clips: dict[str, Path], decode_calls: list[tuple[str, int]]) -> None:
    settings = WhisperSettings(vad_min_duration_s=5.0)
    items = pd.DataFrame([item_row(clips["long"], "long")])
    result = whisper.fill_missing_transcripts(items, settings, None)
    assert decode_calls == [("vad", 1)]
    expected = SENTENCES["stella"] + " " + SENTENCES["thanks"]
    assert wer(expected, result.items.iloc[0].transcript_raw) < 0.35


def test_pipeline_caches_only_verified_transcripts(tmp_path: Path) -> None:
    rows = []
    for n, name in enumerate(REGRESSION_CLIPS):  # segment keys that keep the bug's packing order
        path = DEMO / "sources" / REGRESSION_CLIPS[name][0]
        row = item_row(path, name)
        rows.append({**row, "segment_key": f"{n}-{row['segment_key']}"})
    items = pd.DataFrame(rows)
    cache = whisper.make_cache(str(tmp_path), SETTINGS)
    result = whisper.fill_missing_transcripts(items, SETTINGS, cache)
    assert result.rejects.empty, result.rejects.to_dict("records")
    for row in result.items.itertuples():
        name = row.utterance_id.split("/")[1]
        assert wer(intended(name), row.transcript_raw) < 0.35, (name, row.transcript_raw)
    stored = LabelCache(str(tmp_path), whisper.labeler_name(SETTINGS), whisper.cache_settings(SETTINGS))
    cached = stored.get_many(list(items.segment_key))
    assert {k: v["text"] for k, v in cached.items()} == dict(
        zip(items.segment_key, result.items.transcript_raw, strict=True)
    )
    assert whisper.cache_settings(SETTINGS)["decoder"] == "packed-v3"  # v1, v2 labels are never reused


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def test_thread_environment_does_not_change_transcripts_scores_or_languages() -> None:
    """`OMP_NUM_THREADS=1` (a Dask worker's environment) gave other scores than the default: numpy's
    BLAS computes the mel spectrogram and split its sums by thread. Labels are pinned (tasks/core/threads.py).
    Language identification (Whisper base's encoder on the same mel features) is checked here too, every
    language's probability to the last digit: the end-to-end single-thread build (tests/flows/conftest.py
    `small_shard_reference`) starts from the demo build's language cache and no longer detects languages."""
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
    transcripts, languages = runs[0]["transcripts"], runs[0]["languages"]
    assert len(transcripts) == len(clips) and any(v[0] != "rejected" for v in transcripts.values())
    assert len(languages["rows"]) == len(clips) and not languages["rejected"]
    assert len(languages["probabilities"]) == len(clips) and all(len(p) > 50 for p in languages["probabilities"])
    assert runs[0] == runs[1]
