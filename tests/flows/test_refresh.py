"""Incremental refresh: new audio is labelled, deleted audio disappears, everything else is reused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import yaml

from flows.refresh import refresh_dataset
from manifests.io import read_card, read_release, resolve_release
from manifests.schema import UTTERANCES
from manifests.validate import validate_release

DEMO = Path(__file__).resolve().parents[2] / "flows" / "demo"


def _whisper_keys(output: Path) -> list[str]:
    keys: list[str] = []
    for seg in output.glob("cache/whisper*/*/parts/*/*.parquet"):
        if "~m-" not in seg.name:  # a merged segment repeats rows already written (docs/labelers.md)
            keys += pq.read_table(seg).column("key").to_pylist()
    return keys


def test_refresh_labels_only_what_changed(prefect_harness, tmp_path):
    corpus = tmp_path / "field"
    shutil.copytree(DEMO / "sources" / "field_recordings", corpus)
    spec = {
        "name": "refresh-test",
        "output": str(tmp_path / "out"),
        "sources": [{"name": "field", "kind": "folder", "path": str(corpus)}],
        "augment": {"noise_paths": [str(DEMO / "noise")], "rir_paths": [str(DEMO / "rirs")]},
        "run": {"keep_releases": 2},
    }
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    first = refresh_dataset(str(spec_path))
    labelled_once = _whisper_keys(tmp_path / "out")
    assert first["changes"]["previous_release"] is None and len(labelled_once) >= 6
    assert first["changes"]["added"] == first["counts"]["utterances"] > 0  # a first release: every row is new

    # A new recording arrives (louder copy: new bytes, new segment key) and one is deleted.
    wavs = sorted(p for p in corpus.rglob("*.wav") if p.stat().st_size > 0)
    audio, sr = sf.read(wavs[0])
    sf.write(corpus / "new_recording.wav", np.clip(audio * 1.5, -1, 1), sr)
    removed = wavs[1]
    removed.unlink()

    second = refresh_dataset(str(spec_path))
    changes = second["changes"]
    assert changes["previous_release"] == first["release"]
    assert changes["added"] == 1 and changes["removed"] == 1
    assert changes["examples"]["added"] == ["field/new_recording"]
    keys = _whisper_keys(tmp_path / "out")
    assert len(keys) == len(set(keys)) == len(labelled_once) + 1  # only the new recording was transcribed
    utts = read_release(str(tmp_path / "out"))[UTTERANCES]
    assert "field/new_recording" in set(utts["utterance_id"])
    assert not any(removed.stem in u for u in utts["utterance_id"])
    assert validate_release(str(tmp_path / "out")).ok
    card = read_card(resolve_release(str(tmp_path / "out")))
    assert card["changes"]["added"] == 1

    # Nothing changed: no third release (a copy would push real ones out of keep_releases).
    same = refresh_dataset(str(spec_path))
    assert same["published"] is False and same["release"] == second["release"]
    assert sorted(p.name for p in (tmp_path / "out" / "releases").iterdir()) == sorted(
        [first["release"], second["release"]])

    sf.write(corpus / "newer_recording.wav", np.clip(audio * 1.2, -1, 1), sr)
    third = refresh_dataset(str(spec_path))  # a third release: only keep_releases=2 remain
    assert third["published"] is True
    assert sorted(p.name for p in (tmp_path / "out" / "releases").iterdir()) == sorted(
        [second["release"], third["release"]])
