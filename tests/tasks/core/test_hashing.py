"""The one seeded hash hashes exactly the text the stages' f-strings did, so no rank moves."""

from __future__ import annotations

import hashlib

import numpy as np

from tasks.core.hashing import seeded_digest, seeded_hex


def test_seeded_hash_is_the_old_f_string() -> None:
    for seed, parts in [(13, ("utt-1",)), (0, ("babble", "spk 7")), (np.int64(42), ("default_noise", 2, "pink")),
                        (7, ("report-train", "a:b"))]:
        text = f"{seed}:" + ":".join(f"{p}" for p in parts)
        assert seeded_hex(seed, *parts) == hashlib.sha256(text.encode()).hexdigest()
        assert seeded_digest(seed, *parts) == hashlib.sha256(text.encode()).digest()
    assert seeded_hex(1, "x") != seeded_hex(2, "x") and seeded_hex(1, "x") != seeded_hex(1, "y")


def test_seeded_hex_many_is_seeded_hex_of_each_value() -> None:
    from tasks.core.hashing import seeded_hex_many

    values = ["src/utt-1", "é/日本", "", 7, 2.5, None, "a:b"]
    for seed in (0, 13, "s"):
        assert seeded_hex_many(seed, values) == [seeded_hex(seed, v) for v in values]
    assert seeded_hex_many(1, []) == []
