"""#15.7: a read-only corpus with its own labels elsewhere, and absolute audio paths in metadata.

A `folder` source names its metadata file anywhere (`metadata:`), audio paths relative to `path`.
Absolute paths in `folder` and `hf_dataset` metadata are allowed below the source's `path` or a
declared `options.audio_roots` folder, and refused (`unsafe_path`) elsewhere, as docs/corpora.md says.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.corpora.folder import ingest_folder
from tasks.ingest.corpora.hf_dataset import ingest_hf_dataset
from tasks.preflight import check_spec_paths
from tasks.spec import SourceSpec, load_spec
from tests.tasks.ingest.corpora.test_base import write_tone


def _read_only_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    write_tone(corpus / "spk1" / "a.wav", 0.4, seed=1)
    write_tone(corpus / "spk2" / "b.wav", 0.4, seed=2)
    return corpus


def test_folder_reads_a_metadata_file_named_in_the_spec(tmp_path: Path) -> None:
    corpus = _read_only_corpus(tmp_path)
    labels = tmp_path / "labels" / "mine.csv"
    labels.parent.mkdir()
    labels.write_text("file_name,transcript,sentiment,speaker_id\nspk1/a.wav,I love it,positive,s1\n"
                      f"{corpus / 'spk2' / 'b.wav'},I hate it,negative,s2\n")  # absolute but inside path: fine
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("name: d\noutput: out\nsources:\n  - {name: ro, kind: folder, path: corpus, "
                         "metadata: labels/mine.csv}\n")
    spec = load_spec(spec_file)
    assert spec.sources[0].metadata == str(labels)  # resolved against the spec's folder like `path`
    os.chmod(corpus, 0o555)  # read-only: nothing is written there
    try:
        check_spec_paths(spec)
        result = ingest_folder(spec.sources[0], "en")
    finally:
        os.chmod(corpus, 0o755)
    assert result.rejects.empty and result.found == 2
    items = result.items.set_index("utterance_id")
    assert items.loc["ro/spk1/a", "sentiment"] == "positive" and items.loc["ro/spk2/b", "transcript_raw"] == "I hate it"
    assert list(result.rejects["input_ref"]) == []


def test_a_metadata_file_in_the_folder_yields_to_the_named_one(tmp_path: Path) -> None:
    corpus = _read_only_corpus(tmp_path)
    (corpus / "metadata.csv").write_text("file_name,sentiment\nspk1/a.wav,negative\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"file_name": "spk1/a.wav", "sentiment": "positive"}\n')
    result = ingest_folder(SourceSpec(name="ro", kind="folder", path=str(corpus), metadata=str(labels)), "en")
    items = result.items.set_index("utterance_id")
    assert items.loc["ro/spk1/a", "sentiment"] == "positive"
    (reject,) = result.rejects.itertuples()
    assert reject.reason == "malformed_metadata" and f"{labels} takes precedence" in reject.detail


def test_folder_absolute_paths_below_path_or_a_declared_root(tmp_path: Path) -> None:
    corpus = _read_only_corpus(tmp_path)
    shared = tmp_path / "shared"
    other = write_tone(shared / "x.wav", 0.4, seed=3)
    private = write_tone(tmp_path / "private" / "y.wav", 0.4, seed=4)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file_name,sentiment\n{corpus / 'spk1' / 'a.wav'},positive\n{other},neutral\n"
                      f"{private},negative\n")
    refused = ingest_folder(SourceSpec(name="ro", kind="folder", path=str(corpus), metadata=str(labels)), "en")
    reasons = dict(zip(refused.rejects["input_ref"], refused.rejects["reason"], strict=True))
    assert reasons == {"labels.csv:3": "unsafe_path", "labels.csv:4": "unsafe_path"}
    detail = refused.rejects.set_index("input_ref").loc["labels.csv:3", "detail"]
    assert "is absolute and outside the source folder" in detail and "options.audio_roots" in detail

    declared = SourceSpec(name="ro", kind="folder", path=str(corpus), metadata=str(labels),
                          options={"audio_roots": [str(shared)]})
    result = ingest_folder(declared, "en")
    assert list(result.rejects["input_ref"]) == ["labels.csv:4"]  # the undeclared folder stays refused
    uris = dict(zip(result.items["utterance_id"], result.items["audio_uri"], strict=True))
    assert uris["ro/spk1/a"] == str(corpus / "spk1" / "a.wav")
    assert uris[f"ro/{str(shared / 'x').lstrip('/')}"] == str(other)
    with pytest.raises(ValueError, match="audio_roots entries must be absolute local folders"):
        ingest_folder(SourceSpec(name="ro", kind="folder", path=str(corpus), options={"audio_roots": ["rel"]}), "en")


def test_hf_dataset_absolute_paths_below_a_declared_root(tmp_path: Path) -> None:
    root = tmp_path / "hf"
    root.mkdir()
    shared = write_tone(tmp_path / "shared" / "x.wav", 0.3, seed=1)
    private = write_tone(tmp_path / "private" / "y.wav", 0.3, seed=2)
    cells = [{"path": str(shared), "bytes": None}, {"path": str(private), "bytes": None}]
    table = pa.table({"audio": pa.array(cells, type=pa.struct([("path", pa.string()), ("bytes", pa.binary())])),
                      "text": ["a", "b"]})
    pq.write_table(table, root / "train.parquet")
    options = {"columns": {"audio": "audio", "transcript": "text"}}
    source = SourceSpec(name="h", kind="hf_dataset", path=str(root), options=options)
    assert sorted(ingest_hf_dataset(source, "en").rejects["reason"]) == ["unsafe_path", "unsafe_path"]
    declared = source.model_copy(update={"options": {**options, "audio_roots": [str(tmp_path / "shared")]}})
    result = ingest_hf_dataset(declared, "en")
    assert list(result.items["audio_uri"]) == [str(shared)]
    assert list(result.rejects["reason"]) == ["unsafe_path"] and "options.audio_roots" in result.rejects["detail"][0]
