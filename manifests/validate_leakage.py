"""Leakage across parts in bounded memory: (key hash, split code) pairs per part, names only on failure.

Why: every utterance has a segment key (~80 characters), so keeping the release's (segment key,
split) pairs as strings costs ~150 bytes an utterance in the validating process (1.5 GB at 10
million). A part keeps 64-bit hashes of its keys and a one-byte split code instead (9 bytes a pair);
the merge finds the hashes seen in two splits (`manifests.key_runs`, one array sorted in place), and
only then are the parts' key columns read again to name the keys. A hash collision can only make a key look leaked; the naming pass finds no key
string in two splits then, and nothing is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from manifests import key_runs
from manifests.schema import SPLITS
from manifests.validate_report import examples

KINDS = {"segment_splits": "segment_key in more than one split (leakage)",
         "speaker_splits": "speakers in more than one split"}
_OTHER_SPLIT = len(SPLITS)  # any split name outside the contract's (reported by the value check)
CODE_BITS = key_runs.code_bits(_OTHER_SPLIT + 1)


def key_hashes(keys: np.ndarray | Sequence[object]) -> np.ndarray:
    """64-bit hashes of key strings: pandas' fixed-key SipHash, the same in every process and run."""
    return pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False).astype(np.uint64)


def split_codes(splits: pd.Series | np.ndarray) -> np.ndarray:
    """One byte per row: the split's position in the contract's SPLITS (another name: one code)."""
    codes = {name: i for i, name in enumerate(SPLITS)}
    return np.fromiter((codes.get(s, _OTHER_SPLIT) for s in np.asarray(splits, dtype=object)), dtype=np.int8,
                       count=len(splits))


def pairs(keys: pd.Series, splits: pd.Series) -> pd.DataFrame:
    """Distinct (hash, split code) of the rows whose key and split are present (as pandas' groupby drops
    missing keys and nunique missing splits)."""
    present = (keys.notna() & splits.notna()).to_numpy()
    keys, splits = keys[present], splits[present]
    return pd.DataFrame({"key": key_hashes(keys.to_numpy()), "split": split_codes(splits.to_numpy())}
                        ).drop_duplicates(ignore_index=True)


def leaked_hashes(frames: list[pd.DataFrame]) -> set[int]:
    """The keys seen with more than one split code across the parts' pair frames, as key hashes without
    their low `CODE_BITS` (`manifests.key_runs`: one array sorted in place, no pandas grouping)."""
    total = sum(len(f) for f in frames)
    packed = key_runs.pack(((f["key"].to_numpy(dtype=np.uint64), f["split"].to_numpy()) for f in frames), total,
                           CODE_BITS)
    keys, in_two = key_runs.repeated(packed, CODE_BITS)
    return {int(k) for k in keys[in_two]}


def leaked_names(rows: Iterable[pd.DataFrame], hashes: set[int]) -> list[str]:
    """The key strings behind `hashes` (from `leaked_hashes`) that really occur in two splits, from
    (key, split) rows."""
    if not hashes:
        return []
    seen: dict[str, set[str]] = {}
    wanted = np.array(sorted(hashes), dtype=np.uint64)
    for frame in rows:
        frame = frame[frame["key"].notna() & frame["split"].notna()]
        hit = np.isin(key_hashes(frame["key"].to_numpy()) >> np.uint64(CODE_BITS), wanted)
        for key, split in zip(frame["key"][hit].tolist(), frame["split"][hit].tolist(), strict=True):
            seen.setdefault(str(key), set()).add(str(split))
    return sorted(k for k, s in seen.items() if len(s) > 1)


def check(reductions: list[dict], key_rows: Callable[[str], Iterable[pd.DataFrame]]) -> list[str]:
    """Problems for keys in two splits; `key_rows(kind)` yields each part's (key, split) rows to name them."""
    problems = []
    for kind, what in KINDS.items():
        hashes = leaked_hashes([r[kind] for r in reductions])
        names = leaked_names(key_rows(kind), hashes) if hashes else []
        if names:
            problems.append(f"{what}: {examples(names)}")
    return problems
