"""Unreadable work files (0 bytes, truncated) are treated as absent: redone and logged (issue 14, item 11)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.core.shards import WorkFileError, read_frame, run_shard
from tasks.ingest import step as ingest_step
from tasks.ingest.corpora.base import utterances_frame
from tasks.label import steps as label_steps
from tasks.spec import parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone


def _shard() -> pd.DataFrame:
    return pd.DataFrame({"utterance_id": ["s/a", "s/b"], "segment_key": ["k1", "k2"], "x": [1.0, 2.0]})


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize("which", ["items", "rejects"])
def test_run_shard_redoes_an_unreadable_result_and_names_it(tmp_path: Path, how: str, which: str) -> None:
    calls: list[int] = []

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        calls.append(len(items))
        return items.assign(y=items["x"] * 2), pd.DataFrame({"source": ["s"], "reason": ["r"]})

    items_uri, rejects_uri, reused, rows = run_shard(str(tmp_path), "stage", _shard(), {"a": 1}, fn)
    assert not reused and calls == [2] and rows == 2
    damaged = items_uri if which == "items" else rejects_uri
    _damage(Path(damaged), how)
    with pytest.raises(WorkFileError, match=str(damaged)):
        read_frame(damaged)  # the error names the file (it used to say only "Parquet file size is 0 bytes")

    logged: list[str] = []
    again = run_shard(str(tmp_path), "stage", _shard(), {"a": 1}, fn, log=lambda m, *a: logged.append(m % a))
    assert again == (items_uri, rejects_uri, False, 2) and calls == [2, 2]
    assert len(logged) == 1 and damaged in logged[0] and "redoing" in logged[0]
    assert read_frame(items_uri)["y"].tolist() == [2.0, 4.0]
    assert run_shard(str(tmp_path), "stage", _shard(), {"a": 1}, fn)[2:] == (True, 2)  # readable again: reused


def test_a_zero_byte_transcripts_file_is_redone_on_rerun(tmp_path: Path) -> None:
    """The reported case: a 0-byte work/transcripts/*.items.parquet failed every re-run."""
    corpus = tmp_path / "c"
    write_tone(corpus / "a.wav", 1.0)
    (corpus / "metadata.csv").write_text("file_name,transcript,sentiment\na.wav,I am so happy,positive\n")
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"), "labelers": {"transcripts": "none"},
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}]})
    shards = ingest_step.make_shards(spec, [ingest_step.ingest_source(spec, 0)])
    first = label_steps.transcripts_shard(spec, shards[0])
    Path(first["items_uri"]).write_bytes(b"")
    logged: list[str] = []
    second = label_steps.transcripts_shard(spec, shards[0], log=lambda m, *a: logged.append(m % a))
    assert second["items_uri"] == first["items_uri"] and second["reused"] is False
    assert any(first["items_uri"] in line for line in logged)
    assert read_frame(second["items_uri"])["transcript"].tolist() == ["I am so happy"]
    sentiment = label_steps.sentiment_shard(spec, second["items_uri"])
    assert read_frame(sentiment["items_uri"])["sentiment"].tolist() == ["positive"]


def test_an_unreadable_shard_file_is_rewritten(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    write_tone(corpus / "a.wav", 1.0)
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"),
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}]})
    ingest = [ingest_step.ingest_source(spec, 0)]
    [shard] = ingest_step.make_shards(spec, ingest)
    Path(shard).write_bytes(b"PAR1")
    logged: list[str] = []
    assert ingest_step.make_shards(spec, ingest, log=lambda m, *a: logged.append(m % a)) == [shard]
    assert read_frame(shard)["utterance_id"].tolist() == ["s/a"]
    assert any(shard in line for line in logged)


def test_keep_columns_only_fills_empty_results() -> None:
    from tasks.core.shards import keep_columns

    source = utterances_frame([])
    assert list(keep_columns(pd.DataFrame(), source).columns) == list(source.columns)
    partial = keep_columns(pd.DataFrame({"utterance_id": pd.Series(dtype=object)}), source)
    assert set(partial.columns) == set(source.columns) and partial.empty
    full = pd.DataFrame({"utterance_id": ["a"]})
    assert keep_columns(full, source) is full
