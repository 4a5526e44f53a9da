"""Manifest parts follow plan shards (`run.part_rows`), not labelling shards: same rows, other part layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from manifests.io import read_card, read_release, resolve_release
from manifests.schema import MANIFEST_NAMES
from manifests.validate import validate_release
from tests.tasks.releasebuild import build, tone_corpus, tone_spec

ROWS = "".join(f"t{i}.wav,line number {i},{('positive', 'neutral', 'negative')[i % 3]},spk{i}\n" for i in range(6))


def _corpus(folder: Path) -> Path:
    from tests.tasks.ingest.corpora.test_base import write_tone

    for i in range(6):
        write_tone(folder / f"t{i}.wav", 1.0, seed=10 + i)
    return tone_corpus(folder, ROWS)


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """Every row as text, in sorted order (audio URIs are relative to the release, so comparable)."""
    cols = [frame[c].map(lambda v: repr(v.tolist() if hasattr(v, "tolist") else v)) for c in sorted(frame.columns)]
    return sorted(zip(*cols, strict=True)) if cols else []


def test_part_rows_groups_labelling_shards_into_parts_with_the_same_rows(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c")
    cards, tables = {}, {}
    # shard_size 1: 5 labelling shards holding 8 items (1, 2, 2, 1, 2; hash collisions), a mean of 1.6
    # rows, so part_rows 2, 4 and 8 put 1, 2 and 5 labelling shards in a plan shard
    for part_rows in (2, 4, 8):
        out = tmp_path / f"out{part_rows}"
        if part_rows != 2:  # the first build's label cache: the same labels, not identified again
            shutil.copytree(tmp_path / "out2" / "cache", out / "cache")
        build(tone_spec(corpus, out, run={"shard_size": 1, "part_rows": part_rows}))
        assert validate_release(str(out)).ok
        cards[part_rows] = read_card(resolve_release(str(out)))
        tables[part_rows] = read_release(str(out))
    # part j = plan shard j = labelling shards j*per .. (j+1)*per-1, per = part_rows * 5 // 8
    assert [len(cards[k]["manifests"]["utterances"]["parts"]) for k in (2, 4, 8)] == [5, 3, 1]
    for name in MANIFEST_NAMES:
        assert len({len(cards[k]["manifests"][name]["parts"]) for k in (2, 4, 8)}) == 3
        want = _rows(tables[2][name])
        assert want or name != "utterances"
        for k in (4, 8):
            assert _rows(tables[k][name]) == want, (name, k)
    assert len({cards[k]["content_sha256"] for k in (2, 4, 8)}) == 3  # the identity follows the part layout
    assert len(tables[8]["utterances"]) == 6
