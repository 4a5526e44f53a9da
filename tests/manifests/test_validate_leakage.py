"""Leakage by key hashes: the same findings and names as string pairs, 9 bytes a pair, collisions harmless."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manifests import validate_leakage as leakage
from manifests.schema import UTTERANCES
from manifests.validate import validate_release
from tests.manifests.release_factory import make_tables, write_release


def _problems(tmp_path, mutate) -> list[str]:
    tables = make_tables()
    mutate(tables)
    write_release(str(tmp_path), tables=tables)
    return validate_release(str(tmp_path)).problems


def test_a_leaked_speaker_and_segment_are_named(tmp_path) -> None:
    def leak(t):
        utt = t[UTTERANCES]
        utt.loc[4, "speaker_id"] = "s0"  # s0 is in train, u4 is dev
        utt.loc[4, "segment_key"] = utt.loc[0, "segment_key"]

    problems = _problems(tmp_path, leak)
    speakers = [p for p in problems if p.startswith("speakers in more than one split")]
    segments = [p for p in problems if p.startswith("segment_key in more than one split")]
    assert len(speakers) == 1 and "src/s0" in speakers[0]
    assert len(segments) == 1 and str(make_tables()[UTTERANCES].loc[0, "segment_key"]) in segments[0]


def test_pairs_are_hashes_and_split_codes_without_missing_keys_or_splits() -> None:
    keys = pd.Series(["a", "a", None, "b", "c"], dtype=object)
    splits = pd.Series(["train", "train", "dev", None, "mystery"], dtype=object)
    got = leakage.pairs(keys, splits)
    assert got["key"].dtype == np.uint64 and got["split"].dtype == np.int8
    assert len(got) == 2  # "a"/train once; None key and None split dropped; "c" keeps an "other" code
    assert leakage.key_hashes(np.array(["a"], dtype=object))[0] == leakage.key_hashes(["a"])[0]


def test_a_hash_collision_reports_nothing_but_a_real_leak_still_shows(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path) -> None:
    """With every key hashed alike, every key 'collides'; the naming pass keeps only real leaks."""
    monkeypatch.setattr(leakage, "key_hashes", lambda keys: np.zeros(len(np.asarray(keys, dtype=object)),
                                                                      dtype=np.uint64))
    assert not [p for p in _problems(tmp_path / "clean", lambda t: None) if "more than one split" in p]

    def leak(t):
        t[UTTERANCES].loc[4, "speaker_id"] = "s0"

    problems = [p for p in _problems(tmp_path / "leak", leak) if "more than one split" in p]
    assert len(problems) == 1 and problems[0].startswith("speakers") and "src/s0" in problems[0]


def _leaked_by_pandas(frames: list[pd.DataFrame]) -> set[int]:
    """The previous merge (concat, drop_duplicates, groupby nunique), kept as the oracle."""
    if not frames:
        return set()
    merged = pd.concat(frames, ignore_index=True).drop_duplicates()
    per_key = merged.groupby("key")["split"].nunique()
    return {int(h) for h in per_key.index[per_key > 1]}


@pytest.mark.parametrize("seed", range(5))
def test_leaked_hashes_equal_the_pandas_merge(seed: int) -> None:
    """Same keys found as the pandas merge, up to the code bits (the names pass compares the same way)."""
    rng = np.random.default_rng(seed)
    pool = [f"seg-{i}" for i in range(int(rng.integers(1, 300)))]
    frames = [leakage.pairs(pd.Series(rng.choice(pool, n), dtype=object),
                            pd.Series(rng.choice(["train", "dev", "test", "odd"], n, p=[0.85, 0.05, 0.05, 0.05]),
                                      dtype=object))
              for n in rng.integers(0, 80, size=int(rng.integers(1, 6)))]
    expected = {h >> leakage.CODE_BITS for h in _leaked_by_pandas(frames)}
    assert leakage.leaked_hashes(frames) == expected
    names = leakage.leaked_names([pd.DataFrame({"key": pool * 2, "split": ["train"] * len(pool) + ["dev"] * len(pool)})],
                                 expected)
    assert len(names) == len(expected)  # every pool key really is in two splits in these rows
