"""Checks the committed demo corpus (flows/demo) without regenerating it.

The demo is what `voicetone demo` builds from, and `intended_labels.csv` is the yardstick for labeller
agreement, so these tests pin the layout, the planted faults and the label mix that the rest of the
pipeline and its tests rely on.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from manifests.schema import REJECT_REASONS, SENTIMENTS
from tasks.preflight import check_spec_paths
from tasks.spec import load_spec

DEMO = Path(__file__).resolve().parents[2] / "flows" / "demo"
SOURCES = DEMO / "sources"
AUDIO_SUFFIXES = {".flac", ".wav"}
RAVDESS_NAME = re.compile(r"^03-01-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)\.wav$")
SIZE_CAP = 8_000_000


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


@pytest.fixture(scope="module")
def intended() -> list[dict[str, str]]:
    return _table(DEMO / "intended_labels.csv")


def test_spec_loads_with_four_sources_and_augmentation_pools() -> None:
    spec = load_spec(DEMO / "demo.yaml", output="/tmp/voicetone-demo-test")
    check_spec_paths(spec)
    assert spec.name == "voicetone-demo" and spec.seed == 13
    assert [(s.name, s.kind) for s in spec.sources] == [
        ("support_calls", "folder"), ("audiobooks", "folder"), ("acted", "ravdess"), ("field_recordings", "folder"),
    ]
    assert all(Path(s.path) == SOURCES / s.name for s in spec.sources)
    assert (spec.labelers.transcripts, spec.labelers.sentiment) == ("whisper", "text_classifier")
    assert spec.augment.noise_paths == [str(DEMO / "noise")]
    assert spec.augment.rir_paths == [str(DEMO / "rirs")]


def test_corpus_is_under_the_size_cap() -> None:
    files = [p for p in DEMO.rglob("*") if p.is_file() and "out" not in p.relative_to(DEMO).parts]
    assert sum(p.stat().st_size for p in files) < SIZE_CAP


@pytest.mark.parametrize(
    ("source", "table", "columns"),
    [
        ("support_calls", "metadata.csv", ["file_name", "transcript", "sentiment", "speaker_id", "gender", "age", "accent"]),
        ("audiobooks", "metadata.tsv", ["file_name", "transcript", "speaker_id", "gender"]),
    ],
)
def test_metadata_rows_name_paths_inside_their_source(source: str, table: str, columns: list[str]) -> None:
    root = SOURCES / source
    rows = _table(root / table)
    assert list(rows[0]) == columns
    assert len({r["speaker_id"] for r in rows}) >= 6
    for row in rows:
        rel = Path(row["file_name"])
        assert not rel.is_absolute() and ".." not in rel.parts, row["file_name"]
        assert (root / rel).resolve().is_relative_to(root.resolve())
        assert row["transcript"].strip() and row["gender"] in ("female", "male")
    listed = {r["file_name"] for r in rows}
    on_disk = {p.relative_to(root).as_posix() for p in _audio_files(root)}
    assert on_disk <= listed, "every audio file is described by the metadata"


def test_planted_faults_are_present() -> None:
    calls = SOURCES / "support_calls"
    rows = {r["file_name"]: r for r in _table(calls / "metadata.csv")}
    missing = [name for name in rows if not (calls / name).exists()]
    assert missing == ["2024-05-07/c0123.flac"]
    corrupt = calls / "2024-05-06/c0122.flac"
    assert corrupt.read_bytes()[:4] == b"fLaC" and corrupt.stat().st_size > 1000
    with pytest.raises(sf.LibsndfileError):
        sf.read(corrupt)
    bad_labels = {name: r["sentiment"] for name, r in rows.items() if r["sentiment"] not in SENTIMENTS}
    assert bad_labels == {"2024-05-07/c0124.flac": "ecstatic"}
    assert sf.info(calls / "2024-05-07/c0124.flac").frames > 0, "only its label is wrong"
    empty = SOURCES / "field_recordings" / "park/rec_009.wav"
    assert empty.is_file() and empty.stat().st_size == 0


def test_support_calls_are_16k_mono_flac_in_subfolders() -> None:
    files = [p for p in _audio_files(SOURCES / "support_calls") if p.name != "c0122.flac"]
    assert len(files) >= 20
    for path in files:
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1), path
        assert path.parent != SOURCES / "support_calls"


def test_audiobooks_include_utterances_longer_than_a_window() -> None:
    durations = [sf.info(p).duration for p in _audio_files(SOURCES / "audiobooks")]
    assert len(durations) >= 20
    assert sum(6.0 <= d <= 12.0 for d in durations) >= 3
    assert all(sf.info(p).samplerate == 16000 for p in _audio_files(SOURCES / "audiobooks"))


def test_ravdess_names_parse_and_one_file_is_stereo() -> None:
    root = SOURCES / "acted"
    files = _audio_files(root)
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix != ".wav"], "emotion labels only"
    emotions, channels, actors = Counter(), Counter(), set()
    for path in files:
        match = RAVDESS_NAME.match(path.name)
        assert match, path.name
        emotion, intensity, _, _, actor = match.groups()
        assert path.parent.name == f"Actor_{actor}"
        assert not (emotion == "01" and intensity == "02"), "neutral has no strong intensity"
        info = sf.info(path)
        assert (info.samplerate, info.subtype) == (48000, "PCM_16"), path
        emotions[emotion] += 1
        channels[info.channels] += 1
        actors.add(actor)
    assert len(actors) == 6 and len(files) >= 12
    assert channels == Counter({1: len(files) - 1, 2: 1})
    assert emotions["08"] >= 2 and len(emotions) == 8


def test_field_recordings_have_no_metadata_and_last_five_to_ten_seconds() -> None:
    root = SOURCES / "field_recordings"
    assert not [p for p in root.rglob("*") if p.suffix in (".csv", ".tsv", ".jsonl")]
    files = [p for p in _audio_files(root) if p.stat().st_size > 0]
    assert len(files) >= 6
    for path in files:
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1) and 5.0 <= info.duration <= 10.0, path


def test_noise_clips_and_rirs_fit_the_augmenter() -> None:
    noise = _audio_files(DEMO / "noise")
    assert 6 <= len(noise) <= 8
    for path in noise:
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1) and 4.0 <= info.duration <= 8.0, path
    rirs = _audio_files(DEMO / "rirs")
    assert len(rirs) == 6
    for path in rirs:
        h, rate = sf.read(path)
        assert rate == 16000 and h.ndim == 1 and 0.2 <= len(h) / rate <= 0.8, path
        onset_ms = 1000 * np.flatnonzero(np.abs(h) >= 0.5 * np.abs(h).max())[0] / rate
        assert 2.0 <= onset_ms <= 20.0, (path.name, onset_ms)
        tail = h[len(h) // 2 :]
        assert 0 < np.sqrt(np.mean(tail**2)) < 0.1 * np.sqrt(np.mean(h[: len(h) // 2] ** 2)), "reverb decays"


def test_readable_audio_is_never_digitally_silent() -> None:
    for path in _audio_files(SOURCES):
        if path.stat().st_size == 0 or path.name == "c0122.flac":
            continue
        x, _ = sf.read(path, frames=800)
        assert np.count_nonzero(x) > 0.5 * x.size, path


def test_intended_labels_cover_every_item(intended: list[dict[str, str]]) -> None:
    listed = {(r["source"], r["file_name"]) for r in intended}
    assert len(listed) == len(intended)
    for source in ("support_calls", "audiobooks", "acted", "field_recordings"):
        on_disk = {(source, p.relative_to(SOURCES / source).as_posix()) for p in _audio_files(SOURCES / source)}
        assert on_disk <= listed, on_disk - listed
    for row in intended:
        if row["expected"] == "accept":
            assert row["intended_sentiment"] in SENTIMENTS and row["text"], row
        else:
            assert row["expected"].removeprefix("reject:") in REJECT_REASONS and not row["intended_sentiment"], row
    rejects = Counter(r["expected"] for r in intended if r["expected"] != "accept")
    assert rejects == Counter({"reject:unmapped_label": 3, "reject:unreadable_audio": 1,
                               "reject:missing_audio": 1, "reject:empty_audio": 1})


def test_class_mix_is_near_60_25_15_and_differs_by_source(intended: list[dict[str, str]]) -> None:
    accepted = [r for r in intended if r["expected"] == "accept"]
    counts = Counter(r["intended_sentiment"] for r in accepted)
    for label, target in (("neutral", 60), ("negative", 25), ("positive", 15)):
        assert abs(100 * counts[label] / len(accepted) - target) <= 10, (label, counts)
    neutral_share = {
        src: np.mean([r["intended_sentiment"] == "neutral" for r in accepted if r["source"] == src])
        for src in {r["source"] for r in accepted}
    }
    assert max(neutral_share.values()) - min(neutral_share.values()) > 0.3, neutral_share


def test_vader_agrees_with_intended_sentiment_where_it_labels(intended: list[dict[str, str]]) -> None:
    vader = pytest.importorskip("vaderSentiment.vaderSentiment").SentimentIntensityAnalyzer()
    transcripts = {r["file_name"]: r["transcript"] for r in _table(SOURCES / "audiobooks" / "metadata.tsv")}
    rows = [r for r in intended if r["expected"] == "accept" and r["source"] in ("audiobooks", "field_recordings")]
    agree = 0
    for row in rows:
        text = transcripts.get(row["file_name"], row["text"]) if row["source"] == "audiobooks" else row["text"]
        compound = vader.polarity_scores(text)["compound"]
        label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
        agree += label == row["intended_sentiment"]
    assert agree >= 0.9 * len(rows), f"VADER agrees on {agree}/{len(rows)}"
