"""The seeded hash every stage ranks and draws by: `sha256(f"{seed}:{part}:...")`, written once.

Why one function: splits, balance, recipes, the quality sample, the noise pool and the report's
samples all rank by this hash; five hand-written copies could drift apart by a separator, and a
release is a pure function of its seed only while they agree. The text hashed is exactly
`":".join(str(p) for p in (seed, *parts))` (the f-string the stages used), so ranks are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _text(seed: object, parts: tuple[object, ...]) -> bytes:
    return ":".join(str(p) for p in (seed, *parts)).encode()


def seeded_hex(seed: object, *parts: object) -> str:
    """Hex sha256 of "seed:part1:part2..." (a stable rank: compare as strings)."""
    return hashlib.sha256(_text(seed, parts)).hexdigest()


def seeded_hex_many(seed: object, values: Iterable[object]) -> list[str]:
    """`seeded_hex(seed, v)` of every value (the same text hashed), without a generic join per value."""
    prefix, sha256 = f"{seed}:", hashlib.sha256
    return [sha256((prefix + str(v)).encode()).hexdigest() for v in values]


def seeded_digest(seed: object, *parts: object) -> bytes:
    """Raw sha256 of "seed:part1:part2..." (for integers and uniform draws)."""
    return hashlib.sha256(_text(seed, parts)).digest()
