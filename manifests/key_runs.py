"""Keys seen more than once, and keys seen in more than one group, among millions of 64-bit key hashes.

Why: the card's leakage recount and the validator's cross-split check each hold one 64-bit hash per
utterance (80 MB at 10 million). Sorting per-group copies, concatenating and `np.unique`-ing them, or
grouping them in pandas, cost 5-10x that. Here each hash's low `bits` are replaced by its group's code,
one array is sorted in place, and equal neighbours are compared: about twice the hashes at the peak.
Two keys whose hashes differ only in those low bits count as one key: a collision chance of about
n^2 / 2^(65 - bits), 1e-5 at 10 million keys; callers that name keys re-check the strings.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def code_bits(n_groups: int) -> int:
    """Low bits that hold a group code for `n_groups` groups (at least 1)."""
    return max(1, (max(n_groups, 1) - 1).bit_length())


def pack(chunks: Iterable[tuple[np.ndarray, int | np.ndarray]], total: int, bits: int) -> np.ndarray:
    """One uint64 array of `total` hashes, each with its low `bits` replaced by its group code (one code
    per chunk, or one per hash)."""
    packed = np.empty(total, dtype=np.uint64)
    mask = ~np.uint64((1 << bits) - 1)
    at = 0
    for hashes, code in chunks:
        h = np.asarray(hashes, dtype=np.uint64)
        np.bitwise_or(h & mask, np.asarray(code).astype(np.uint64), out=packed[at:at + len(h)])
        at += len(h)
    if at != total:
        raise ValueError(f"packed {at} hashes, expected {total}")
    return packed


def repeated(packed: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort `packed` in place; return (keys, in_two) for every key seen more than once: its hash without
    the code bits, and whether it has two group codes."""
    if len(packed) < 2:
        return np.array([], np.uint64), np.array([], bool)
    packed.sort()
    key = packed >> np.uint64(bits)
    same = key[1:] == key[:-1]  # rows i and i + 1 hold one key
    before = np.concatenate(([False], same[:-1]))
    after = np.concatenate((same[1:], [False]))
    starts = np.flatnonzero(same & ~before)  # each repeated key's first row
    ends = np.flatnonzero(same & ~after) + 1  # ... and its last row
    # sorted by (key, code): a key in two groups has different codes on its first and last rows
    return key[starts], packed[starts] != packed[ends]
