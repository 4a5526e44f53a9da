"""The PII shortcuts are exact: `detect_local` (the `may_hold_pii` shortcut) and `detect_all` (its
per-detector gates) equal every detector run on every text.

Why: the shortcuts skip detectors for most transcripts, so a gap in them would silently let PII into
the ASR stage. The oracle is the detectors themselves (`detect_all(text, gates=False)`), on real
labelled text and on seeded random texts built from the pieces the detectors look for (and look-alikes).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tasks.plan import pii

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"

NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                "hundred thousand").split()
PIECES = [
    *NUMBER_WORDS, *(w.upper() for w in NUMBER_WORDS[:6]), "Seven", "oh", "o", "double", "triple",
    "someone", "often", "tone", "weight", "sixty-five", "twentieth", "ones", "dotted", "dot", "DOT", "at",
    "com", "net", "gmail", "jane", "street", "St", "way", "Ave", "road", "Main", "oak", "the", "I", "am",
    "happy", "call", "me", "card", "GB82", "WEST", "1234", "5698", "7654", "32", "4111", "1111", "415",
    "555", "0123", "078-05-1120", "10.0.12.254", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "a@b.co",
    "@", ":", "x:y", "42", "7", "0", "café", "\u017fix", "\u0663\u0664\u0665", "\u212aey", "naïve",
]
SEPARATORS = [" ", " ", " ", "  ", "-", ".", ", ", "\n", "_", "", "/", "'"]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = [rng.choice(PIECES) for _ in range(rng.randint(1, 12))]
        texts.append("".join(w + rng.choice(SEPARATORS) for w in words).strip())
    return texts


def _real_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted((REAL / "text_sentiment").glob("*_labelled.txt")):
        texts += [line.rsplit("\t", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    meld = REAL / "meld" / "test_sent_emo.csv"
    if meld.is_file():
        with meld.open(encoding="utf-8") as f:
            texts += [row["Utterance"] for row in csv.DictReader(f)]
    return texts


def test_shortcut_matches_the_detectors_on_random_texts() -> None:
    texts = _random_texts(20_000, seed=7)
    skipped = fired = 0
    for text in texts:
        full = pii.detect_all(text, gates=False)
        assert pii.detect_local(text) == full, text
        assert pii.detect_all(text) == full, text
        skipped += not pii.may_hold_pii(text)
        fired += bool(full)
    assert skipped > 500 and fired > 1_000  # both sides of the shortcut are exercised


def test_shortcut_matches_the_detectors_on_real_text() -> None:
    texts = _real_texts()
    if not texts:
        pytest.skip(f"real labelled text not found under {REAL}")
    for text in texts:
        full = pii.detect_all(text, gates=False)
        assert pii.detect_local(text) == full and pii.detect_all(text) == full, text
    skipped = sum(not pii.may_hold_pii(t) for t in texts)
    assert skipped > len(texts) / 2, f"the shortcut skipped only {skipped} of {len(texts)} real texts"


@pytest.mark.parametrize("text", ["\u017fix \u017fix \u017fix one two three four five",  # long s folds to "s"
                                  "call \u0664\u0661\u0665-\u0665\u0665\u0665-\u0660\u0661\u0662\u0663",
                                  "FOUR ONE FIVE FIVE FIVE FIVE ZERO ONE TWO THREE",
                                  "pay to GB82 WEST 1234 5698 7654 32"])
def test_texts_the_shortcut_must_not_skip(text: str) -> None:
    assert pii.may_hold_pii(text)
    assert pii.detect_local(text) == pii.detect_all(text) == pii.detect_all(text, gates=False)


@pytest.mark.parametrize(("text", "types"), [
    ("send it to jane dot doe at gmail dot com", ["EMAIL"]),
    ("I live at one hundred oak Street", ["ADDRESS"]),
    ("ping 2001:0db8:85a3:0000:0000:8a2e:0370:7334 now", ["IP_ADDRESS"]),
    ("four one five five five five zero one two three", ["SPOKEN_NUMBER"]),
    ("call 415 555 0123 or mail a@b.co", ["EMAIL", "PHONE"]),
    ("one two three and a straight road", ["ADDRESS"]),
    ("it costs one two three, on the high st", []),
])
def test_gates_keep_what_each_detector_finds(text: str, types: list[str]) -> None:
    assert pii.detect_all(text) == pii.detect_all(text, gates=False) == types


@pytest.mark.parametrize("text", ["I am so happy with the service today", "Someone often sets the tone.",
                                  "Wow... Loved this place."])
def test_ordinary_speech_is_skipped(text: str) -> None:
    assert not pii.may_hold_pii(text) and pii.detect_local(text) == []


def test_the_column_shortcut_equals_the_text_shortcut() -> None:
    """`may_hold_pii_many` (Arrow's RE2, no lookaround) says what `may_hold_pii` says, text by text."""
    texts = [*_random_texts(20_000, seed=11), *_real_texts(), "", " ", "one", "oneself", "xone", "dot.", "a:b",
             "Dot", "ONE-TWO", "\u017fix", "naïve one", "tone\ndot", "dotdot", "twenty1", "_one_"]
    assert pii.may_hold_pii_many(texts) == [pii.may_hold_pii(t) for t in texts]
    assert pii.may_hold_pii_many([]) == []
