"""Training-side reader regressions: moved releases, broken manifests, split names, export paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.audio_io import read_audio
from manifests.dataset import ClassifierDataset
from manifests.export import export_nemo
from manifests.hf import to_hf_dataset
from manifests.io import ManifestError, resolve_release
from manifests.release import open_release, write_pool_index
from tests.manifests.conftest import tone_wav
from tests.manifests.release_factory import make_tables, write_release


def _materialised_release(base: Path) -> Path:
    """A release whose classifier rows read materialised audio under `<release>/audio/`, as the pipeline writes."""
    tables = make_tables()
    root = base / "out" / "releases" / "r1"
    clf = tables["classifier_stage"]
    (root / "audio").mkdir(parents=True)
    uris = [str(tone_wav(root / "audio" / f"w{i}.wav", seed=i)) for i in range(len(clf))]
    clf["audio_uri"] = uris
    clf["recipe_applied"] = True
    clf["offset_s"] = 0.0
    write_release(str(base / "out"), tables)
    return base / "out"


def test_a_moved_release_reads_its_own_materialised_audio(tmp_path: Path) -> None:
    out = _materialised_release(tmp_path / "a")
    moved = tmp_path / "b" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(out)  # the build folder is gone: only the copy exists
    release = open_release(str(moved))
    root = resolve_release(str(moved)).root
    assert all(u.startswith(root + "/audio/") for u in release.classifier["audio_uri"])
    assert release.arrow("classifier")["audio_uri"].to_pylist() == release.classifier["audio_uri"].tolist()
    data = ClassifierDataset(release, split=None)
    assert data[0]["waveform"].shape == (80000,)


def test_missing_audio_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        read_audio(str(tmp_path / "gone.wav"))


def test_manifest_without_contract_columns_fails_at_open(small_release: Path) -> None:
    path = resolve_release(str(small_release)).manifest("classifier_stage")
    table = pq.read_table(path)
    pq.write_table(table.drop(["class_weight"]), path)  # keeps voicetone.schema_version = 1
    with pytest.raises(ManifestError, match="class_weight"):
        open_release(str(small_release))


def test_unreadable_manifest_names_the_file(small_release: Path) -> None:
    path = resolve_release(str(small_release)).manifest("asr_stage")
    Path(path).write_bytes(b"not parquet")
    with pytest.raises(ManifestError, match="asr_stage.parquet"):
        open_release(str(small_release))


@pytest.mark.parametrize("reader", ["torch", "hf", "nemo"])
def test_unknown_split_is_refused(small_release: Path, tmp_path: Path, reader: str) -> None:
    with pytest.raises(ValueError, match="validation"):
        if reader == "torch":
            ClassifierDataset(str(small_release), split="validation")
        elif reader == "hf":
            to_hf_dataset(str(small_release), "classifier", split="validation")
        else:
            export_nemo(str(small_release), "classifier", str(tmp_path / "x.jsonl"), split="validation")


def test_rendered_export_paths_are_absolute(small_release: Path, tmp_path: Path, monkeypatch) -> None:
    release = open_release(str(small_release))
    root = release.root
    noise = tone_wav(tmp_path / "noise.wav", seed=9)
    write_pool_index(root, {}, {"n.wav": str(noise)})
    frame = pq.read_table(Path(root) / "manifests" / "classifier_stage.parquet")
    meta = frame.schema.metadata
    df = frame.to_pandas()
    df["recipe_applied"] = False
    df["noise_id"], df["snr_db"], df["noise_offset_s"], df["gain"] = "n.wav", 10.0, 0.0, None
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(meta),
                   Path(root) / "manifests" / "classifier_stage.parquet")
    monkeypatch.chdir(tmp_path)
    export_nemo(str(small_release), "classifier", str(tmp_path / "m.jsonl"), render_dir="rendered")
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines and all(Path(x["audio_filepath"]).is_absolute() for x in lines)
    assert all(Path(x["audio_filepath"]).exists() for x in lines)
