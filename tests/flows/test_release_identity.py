"""The release identity: the same spec, inputs and label cache give the same `content_sha256`,
whatever the output folder or the thread environment (docs/architecture.md, "What content_sha256 covers")."""

from __future__ import annotations

import shutil
from pathlib import Path

from flows.build_dataset import build_dataset
from manifests.io import read_release, table_digest
from manifests.schema import ASR_STAGE, ID_COLUMNS, MANIFEST_NAMES
from tasks.spec import parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone

SENTIMENTS = ("positive", "negative", "neutral")


def _corpus(folder: Path) -> Path:
    rows = ["file_name,transcript,sentiment"]
    for i in range(12):
        write_tone(folder / f"c{i:02d}.wav", 1.0 + 0.1 * i, freq=220.0 + 40 * i, seed=i)
        rows.append(f"c{i:02d}.wav,clip number {i},{SENTIMENTS[i % 3]}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_output_folder_does_not_change_the_release(prefect_harness, tmp_path):
    """Simulated rooms are written under <output>/work: two output folders, one content_sha256. The second
    build starts from a copy of the first one's label cache (same spec, inputs and label cache), so it does
    not identify the languages of the clips again; everything else it builds in its own folder."""
    corpus = _corpus(tmp_path / "corpus")
    results = []
    first, second = tmp_path / "a" / "out", tmp_path / "somewhere" / "else" / "out"
    for output in (first, second):
        if output == second:
            shutil.copytree(first / "cache", second / "cache")
        spec = parse_spec({"name": "identity", "output": str(output),
                           "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}],
                           "labelers": {"transcripts": "none", "sentiment": "none"},
                           "augment": {"simulate_rirs": 2, "p_reverb": 1.0, "p_noise": 0.0}})
        results.append(build_dataset(spec))
        asr = read_release(spec.output)[ASR_STAGE]
        assert asr["rir_id"].str.startswith("sim/").any() and asr["recipe_applied"].any()
    assert results[0]["content_sha256"] == results[1]["content_sha256"]


def test_single_thread_environment_gives_the_same_release(small_shard_reference, demo_release):
    """A Dask worker process runs with OMP_NUM_THREADS=1 (and MKL/OpenBLAS at 1): the demo built so, in a
    `voicetone build` process with 8-utterance shards (the shared reference of the Dask and resume tests,
    tests/flows/conftest.py), equals the default demo build (in-process, default shard size and threads)."""
    spec, default = demo_release
    single = read_release(small_shard_reference["release_root"])
    threads = read_release(default["release_uri"])
    for name in MANIFEST_NAMES:  # same rows, every column; the parts differ (8-utterance shards)
        keys = list(ID_COLUMNS[name])
        a = single[name].sort_values(keys).reset_index(drop=True)
        b = threads[name].sort_values(keys).reset_index(drop=True)
        assert table_digest(a, name) == table_digest(b, name), name
    assert small_shard_reference["content_sha256"] != default["content_sha256"]  # identity follows the part layout
