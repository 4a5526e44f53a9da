"""Label-cache segment files: sorted rows in small row groups (a lookup decodes only the groups that can
hold its keys), merged-segment names and coverage, and the size-tiered merge plan."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tasks.core import label_segments as seg


def _open(entries: dict[str, str], covers: tuple[str, ...] = (), name: str = "a.parquet") -> seg.Segment:
    return seg.open_segment(name, seg.buffer_source(seg.encode(entries, {"voicetone.labeler": "x"}, covers)))


def test_a_lookup_decodes_only_the_row_groups_that_can_hold_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {f"{i:06d}": json.dumps({"i": i}) for i in range(10 * seg.ROW_GROUP_ROWS)}
    segment = _open(entries)
    with segment.source() as src:
        assert segment.rows == len(entries) and pq.ParquetFile(src).num_row_groups == 10
    asked: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self: pq.ParquetFile, groups: list[int], **kw: object) -> object:
        asked.append(list(groups))
        return real(self, groups, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    wanted = sorted([f"{5:06d}", f"{3 * seg.ROW_GROUP_ROWS + 7:06d}", "zzz-absent"])
    table = segment.read(wanted)
    assert asked == [[0, 3]]  # two of ten row groups, by their key min/max
    assert dict(zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True)) == {
        k: entries[k] for k in wanted if k in entries
    }
    assert segment.read().num_rows == len(entries) and asked[-1] == list(range(10))


def test_merged_names_sort_after_their_earliest_member_and_name_what_they_hold() -> None:
    members = ["20260101T000000000000Z-b.parquet", "20250101T000000000000Z-a.parquet"]
    name = seg.merged_name(members)
    assert seg.is_merged(name) and not seg.is_merged(members[0])
    assert sorted([*members, name]) == [members[1], name, members[0]]
    assert seg.created(name) > "2026" and seg.created(members[0]) == members[0]
    merged = _open({"k": "{}"}, covers=tuple(members), name=name)
    plain = [_open({"k": "{}"}, name=m) for m in members]
    assert merged.covers == frozenset(members)
    assert [s.name for s in seg.live([*plain, merged])] == [name]


def test_merge_plan_takes_a_crowded_tier_only() -> None:
    small = [_open({f"k{i}": "{}"}, name=f"s{i}.parquet") for i in range(seg.MERGE_FANIN - 1)]
    big = _open({f"b{i}": "{}" for i in range(100)}, name="big.parquet")
    assert seg.merge_plan([*small, big]) == []  # seven small ones: not yet
    one_more = _open({"k99": "{}"}, name="s99.parquet")
    assert [s.name for s in seg.merge_plan([*small, big, one_more])] == [s.name for s in [*small, one_more]]
    assert seg.merged_entries([_open({"k": '{"v":2}'}, name="b.parquet"), _open({"k": '{"v":1}'})]) == {"k": '{"v":1}'}
