"""The second opinion on speech presence: never calls noise, hum, tones or silence speech; hears the
strong acted speech Silero VAD misses, so its human label reaches the classifier stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tasks.core.audio import read_audio
from tasks.core.shards import read_frame, write_frame
from tasks.label import speech, speech_check, speech_presence
from tasks.publish.windows import classifier_windows
from tasks.spec import DatasetSpec, SegmentSpec, SourceSpec

SR = 16000
REPO = Path(__file__).resolve().parents[3]
DEMO_ACTED = REPO / "flows" / "demo" / "sources" / "acted"
RAVDESS_STRONG = REPO.parent / "shared" / "data" / "real" / "ravdess_strong"
ACTOR_06 = ("03-01-03-02-01-01-06.wav", "03-01-05-02-01-01-06.wav", "03-01-06-02-01-01-06.wav")


def _coloured(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    freqs[0] = freqs[1]
    x = np.fft.irfft(spectrum / freqs ** (alpha / 2), n)
    return 0.2 * x / np.std(x)


def _non_speech() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    t = np.arange(4 * SR) / SR
    hum = {f: sum(0.3 / k * np.sin(2 * np.pi * f * k * t) for k in range(1, 6)) for f in (50, 60)}
    return {
        "silence": np.zeros(len(t)),
        "white": _coloured(rng, len(t), 0.0),
        "pink": _coloured(rng, len(t), 1.0),
        "brown": _coloured(rng, len(t), 2.0),
        "hum_50": hum[50],
        "hum_60": hum[60],
        "hum_and_white": hum[50] + 0.3 * _coloured(rng, len(t), 0.0),
        "tone_440": 0.3 * np.sin(2 * np.pi * 440 * t),
        "tone_1k": 0.3 * np.sin(2 * np.pi * 1000 * t),
        "beeps": 0.3 * np.sin(2 * np.pi * 800 * t) * ((t * 2) % 1 < 0.5),
        "faint_white": 1e-4 * _coloured(rng, len(t), 0.0),
    }


@pytest.mark.parametrize("name", sorted(_non_speech()))
def test_second_opinion_never_calls_noise_hum_tones_or_silence_speech(name: str) -> None:
    audio = _non_speech()[name].astype(np.float32)
    assert speech_check.second_opinion(audio, SR) == []
    assert speech_check.analyse(audio, SR)["speech"] is False


def test_second_opinion_hears_speech_and_places_it() -> None:
    clips = sorted(DEMO_ACTED.rglob("*.wav"))[:6]
    assert clips, "the demo corpus ships acted speech"
    for clip in clips:
        audio = read_audio(str(clip), 0.0, None, target_sr=SR, mono=True)
        found = speech_check.second_opinion(audio, SR)
        assert found, clip.name
        assert all(0.0 <= a < b <= len(audio) / SR + 1e-6 for a, b in found)
        # Speech with 1.5 s of silence before it and brown noise after: the intervals stay on the speech.
        pad = np.zeros(int(1.5 * SR), dtype=np.float32)
        shifted = speech_check.second_opinion(np.concatenate([pad, audio]), SR)
        assert shifted and shifted[0][0] >= 1.3


def _items(tmp_path: Path) -> pd.DataFrame:
    speech = sorted(DEMO_ACTED.rglob("*.wav"))[0]
    noise_path = tmp_path / "hum.wav"
    sf.write(noise_path, _non_speech()["hum_and_white"].astype(np.float32), SR)
    rows = []
    for uid, path, emotion in (("s", speech, "happy"), ("n", noise_path, "angry"), ("v", tmp_path / "absent.wav", "sad")):
        duration = sf.info(path).duration if path.exists() else 4.0
        rows.append({"utterance_id": uid, "source": "acted", "audio_uri": str(path), "offset_s": 0.0,
                     "duration_s": duration, "segment_key": f"key-{uid}", "emotion": emotion,
                     "sentiment": "positive", "sentiment_origin": "mapped_emotion"})
    return pd.DataFrame(rows)


def test_decide_asks_only_when_vad_hears_little_and_records_the_detector(tmp_path: Path) -> None:
    items = _items(tmp_path)
    vad = [[], [], [(0.0, 3.9)]]  # VAD heard nothing in speech and noise; plenty in "v" (never read again)
    intervals, detectors = speech_presence.decide(items, vad, str(tmp_path / "cache"))
    assert detectors == ["second_opinion", "none", "vad"]
    assert intervals[0] and intervals[1] == [] and intervals[2] == [[0.0, 3.9]]
    # Cached by segment key: the same answer without the audio.
    moved = items.assign(audio_uri=str(tmp_path / "gone.wav"))
    assert speech_presence.decide(moved, vad, str(tmp_path / "cache")) == (intervals, detectors)
    # Switched off (segments.second_opinion: false): VAD alone decides.
    assert speech_presence.decide(items, vad, str(tmp_path / "cache"), enabled=False)[1] == ["none", "none", "vad"]


def test_a_dropped_human_label_is_a_guard_and_counted(tmp_path: Path) -> None:
    items = _items(tmp_path).assign(split="train", speech_detector=["second_opinion", "none", "vad"])
    classifier = pd.DataFrame({"utterance_id": ["s", "n", "n", "v"], "speech_present": [True, False, False, True]})
    records = speech_presence.label_guards(items, classifier)
    by_name = {r["guard"]: r for r in records}
    assert by_name["speech_label_dropped"]["level"] == "warning"
    assert by_name["speech_label_dropped"]["detail"]["counts"] == {"acted": {"angry": 1}}
    assert by_name["speech_second_opinion"]["detail"]["counts"] == {"acted": {"happy": 1}}
    section = speech_presence.speech_section(items, classifier)
    assert section["detector_by_source"] == {"acted": {"none": 1, "second_opinion": 1, "vad": 1}}
    assert section["human_labels_without_speech_by_source_emotion"] == {"acted": {"angry": 1}}
    assert speech_presence.label_guards(items, classifier.assign(speech_present=True)) == [
        r for r in records if r["guard"] != "speech_label_dropped"]


@pytest.mark.realdata
def test_strong_acted_speech_reaches_the_classifier_stage(tmp_path: Path) -> None:
    """The three actor-06 RAVDESS clips VAD misses end speech_present, with their label, in the classifier windows."""
    if not all((RAVDESS_STRONG / name).is_file() for name in ACTOR_06):
        pytest.skip(f"real RAVDESS sample not found at {RAVDESS_STRONG}")
    from tasks.ingest.corpora.ravdess import ingest_ravdess
    from tasks.label import steps as label_steps
    from tasks.plan.stage_rows import classifier_input_rows

    corpus = tmp_path / "ravdess" / "Actor_06"
    corpus.mkdir(parents=True)
    for name in ACTOR_06:
        shutil.copyfile(RAVDESS_STRONG / name, corpus / name)
    source = SourceSpec(name="ravdess", kind="ravdess", path=str(corpus.parent))
    items = ingest_ravdess(source, "en").items
    assert len(items) == 3
    vad = [speech.speech_intervals(read_audio(u, 0.0, None, target_sr=SR, mono=True), SR, 0.5)
           for u in items["audio_uri"]]
    assert vad == [[], [], []]  # the defect: Silero VAD hears none of them

    spec = DatasetSpec(name="t", output=str(tmp_path / "out"), sources=[source])
    shard_uri = str(tmp_path / "shard.parquet")
    write_frame(shard_uri, items)
    done = read_frame(label_steps.speech_shard(spec, shard_uri)["items_uri"])
    assert list(done["speech_detector"]) == ["second_opinion"] * 3
    rows = done.assign(row_id=done["utterance_id"] + "#0", speed=1.0, recipe_applied=False)
    windows = classifier_windows(
        classifier_input_rows(rows, done.set_index("utterance_id")["speech_intervals"]), SegmentSpec())
    for uid, group in windows.groupby("utterance_id"):
        assert group["speech_present"].any(), uid
        assert group.loc[group["speech_present"], "sentiment"].notna().all(), uid
