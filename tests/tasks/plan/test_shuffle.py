"""Hash partitions under work/: the repeated-key read that the duplicate-segment step uses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.core.shards import write_frame
from tasks.plan import shuffle


def _write(root: Path, shard: int, frame: pd.DataFrame) -> None:
    write_frame(str(root / "p-00000" / f"s-{shard:05d}.parquet"), frame)


def _want(root: Path) -> pd.DataFrame:
    rows = shuffle.read_part(str(root), 0)
    return rows[rows["segment_key"].duplicated(keep=False)].reset_index(drop=True)


def test_repeated_keys_are_the_whole_partitions_duplicated_rows_in_its_order(tmp_path: Path) -> None:
    _write(tmp_path, 0, pd.DataFrame({"utterance_id": ["a", "b", "c"], "segment_key": ["k1", "k2", "k3"],
                                      "sentiment_origin": ["human", None, "human"], "shard": [0, 0, 0]}))
    _write(tmp_path, 1, pd.DataFrame({"utterance_id": ["d", "e"], "segment_key": ["k2", "k4"],
                                      "sentiment_origin": [None, None], "shard": [1, 1]}))  # an all-null column
    _write(tmp_path, 2, pd.DataFrame({"utterance_id": pd.Series([], dtype=object),
                                      "segment_key": pd.Series([], dtype=object)}))  # no rows, fewer columns
    _write(tmp_path, 3, pd.DataFrame({"utterance_id": ["f", "g"], "segment_key": ["k1", "k2"],
                                      "sentiment_origin": ["text_classifier", "human"], "shard": [3, 3]}))

    got = shuffle.read_repeated(str(tmp_path), 0, "segment_key")

    pd.testing.assert_frame_equal(got, _want(tmp_path))
    assert sorted(got["utterance_id"]) == ["a", "b", "d", "f", "g"]


def test_no_repeated_key_and_no_file_give_empty_frames(tmp_path: Path) -> None:
    _write(tmp_path, 0, pd.DataFrame({"utterance_id": ["a", "b"], "segment_key": ["k1", "k2"], "shard": [0, 0]}))
    assert shuffle.read_repeated(str(tmp_path), 0, "segment_key").empty
    assert shuffle.read_repeated(str(tmp_path / "none"), 0, "segment_key").empty


def test_files_typing_a_column_differently_fall_back_to_pandas_rules(tmp_path: Path) -> None:
    _write(tmp_path, 0, pd.DataFrame({"utterance_id": ["a"], "segment_key": ["k1"], "shard": [0]}))
    _write(tmp_path, 1, pd.DataFrame({"utterance_id": ["b"], "segment_key": ["k1"], "shard": ["1"]}))
    got = shuffle.read_repeated(str(tmp_path), 0, "segment_key")
    assert list(got["utterance_id"]) == ["a", "b"] and list(got["shard"]) == [0, "1"]


def test_distinct_groups_per_source_count_each_group_once_across_shards(tmp_path: Path) -> None:
    _write(tmp_path, 0, pd.DataFrame({"source": ["cv", "cv", "ls"], "group": ["spk1", "spk2", "spk1"]}))
    _write(tmp_path, 1, pd.DataFrame({"source": ["cv", "ls", "ls"], "group": ["spk1", "spk3", "spk1"]}))
    _write(tmp_path, 2, pd.DataFrame({"source": pd.Series([], dtype=object), "group": pd.Series([], dtype=object)}))
    got = shuffle.distinct_per(str(tmp_path), 0, "source")
    want = shuffle.read_part(str(tmp_path), 0).drop_duplicates().groupby("source").size()
    assert got == {str(k): int(v) for k, v in want.items()} == {"cv": 2, "ls": 2}
    assert list(got) == ["cv", "ls"]
    assert shuffle.distinct_per(str(tmp_path / "none"), 0, "source") == {}
    _write(tmp_path, 3, pd.DataFrame({"source": ["cv"], "group": [7]}))  # typed differently: pandas' rules
    assert shuffle.distinct_per(str(tmp_path), 0, "source") == {"cv": 3, "ls": 2}
