"""Several work files read as one frame (`read_frames`): the same rows and dtypes as one file holding them all.

A plan shard concatenates the items files of several labelling shards; a column that is all null in one
labelling shard is stored with Arrow's null type there, and must not change the merged frame's dtypes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.core.shards import WorkFileError, read_frame, read_frames, write_frame


def _files(tmp_path: Path, frames: list[pd.DataFrame]) -> list[str]:
    uris = []
    for i, frame in enumerate(frames):
        uris.append(str(tmp_path / f"f{i}.parquet"))
        write_frame(uris[-1], frame)
    return uris


def _shard_a() -> pd.DataFrame:  # written alone, its null columns have no type (Arrow null)
    return pd.DataFrame({"utterance_id": ["a1", "a2"], "origin": pd.Series([None, None], dtype=object),
                         "count": pd.Series([None, None], dtype=object), "score": [0.5, float("nan")],
                         "intervals": [[[0.0, 1.0]], []]})


def _shard_b() -> pd.DataFrame:
    return pd.DataFrame({"utterance_id": ["b1", "b2"], "origin": ["human", None],
                         "count": pd.array([3, None], dtype="Int64"), "score": [float("nan"), 2.0],
                         "intervals": [None, [[0.5, 0.75], [1.0, 2.0]]]})


def _whole() -> pd.DataFrame:
    return pd.DataFrame({"utterance_id": ["a1", "a2", "b1", "b2"], "origin": [None, None, "human", None],
                         "count": pd.array([None, None, 3, None], dtype="Int64"),
                         "score": [0.5, float("nan"), float("nan"), 2.0],
                         "intervals": [[[0.0, 1.0]], [], None, [[0.5, 0.75], [1.0, 2.0]]]})


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_concatenated_files_read_like_one_file_of_all_their_rows(tmp_path: Path, order: tuple[int, int]) -> None:
    shards = [_shard_a(), _shard_b()]
    uris = _files(tmp_path, [shards[i] for i in order])
    whole = _whole()
    whole = pd.concat([whole.iloc[0:2], whole.iloc[2:4]] if order == (0, 1) else [whole.iloc[2:4], whole.iloc[0:2]],
                      ignore_index=True)
    one = str(tmp_path / "whole.parquet")
    write_frame(one, whole)
    got, want = read_frames(uris), read_frame(one)
    pd.testing.assert_frame_equal(got, want)  # dtypes included: Int64 stays Int64, strings stay strings
    assert got["count"].dtype == "Int64" and pd.isna(got["origin"]).sum() == 3


def test_one_file_reads_exactly_as_read_frame(tmp_path: Path) -> None:
    [uri] = _files(tmp_path, [_shard_a()])
    pd.testing.assert_frame_equal(read_frames([uri]), read_frame(uri))


def test_empty_files_keep_or_skip(tmp_path: Path) -> None:
    uris = _files(tmp_path, [_shard_b().iloc[0:0], pd.DataFrame(), _shard_b()])
    both = read_frames(uris)
    assert list(both["utterance_id"]) == ["b1", "b2"] and both["count"].dtype == "Int64"
    assert read_frames(uris[:2], skip_empty=True).empty and read_frames([]).empty
    pd.testing.assert_frame_equal(read_frames(uris, skip_empty=True), read_frame(uris[2]))


def test_only_the_columns_asked_for_and_present(tmp_path: Path) -> None:
    uris = _files(tmp_path, [_shard_a(), _shard_b()])
    got = read_frames(uris, ["utterance_id", "origin", "not_there"])
    assert list(got.columns) == ["utterance_id", "origin"]
    assert got["origin"].tolist()[2] == "human" and len(got) == 4


def test_columns_typed_differently_fall_back_to_pandas_concat(tmp_path: Path) -> None:
    uris = _files(tmp_path, [pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": ["a", "b"]})])
    assert read_frames(uris)["x"].tolist() == [1, 2, "a", "b"]


def test_an_unreadable_or_missing_file_is_named(tmp_path: Path) -> None:
    uris = _files(tmp_path, [_shard_a(), _shard_b()])
    Path(uris[1]).write_bytes(Path(uris[1]).read_bytes()[:40])
    with pytest.raises(WorkFileError, match="f1.parquet"):
        read_frames(uris)
    with pytest.raises(WorkFileError, match="f1.parquet"):
        read_frames(uris, ["utterance_id"])
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_frames([str(tmp_path / "nope.parquet")])


def test_one_open_reads_what_pyarrow_read_table_reads(tmp_path: Path) -> None:
    """`read_table` opens each file once (`ParquetFile`): same table, metadata included, as `pq.read_table`."""
    import pyarrow.parquet as pq

    from tasks.core.shards import read_table

    [uri] = _files(tmp_path, [_shard_b()])
    assert read_table(uri).equals(pq.read_table(uri), check_metadata=True)
    got = read_table(uri, ["count", "utterance_id", "not_there"])
    assert got.equals(pq.read_table(uri, columns=["count", "utterance_id"]), check_metadata=True)
    assert got.column_names == ["count", "utterance_id"]  # the order asked for, as before
