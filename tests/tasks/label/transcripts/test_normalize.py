"""The transcript normaliser makes corpora indistinguishable and is stable under re-application."""

from __future__ import annotations

import pytest

from tasks.label.transcripts.normalize import (
    NORMALIZER_NAME,
    NORMALIZER_VERSION,
    base_language,
    normalize_transcript,
    number_to_words,
    ordinal_to_words,
    wer,
    word_errors,
)

SAMPLES = [
    "HE HAD NEVER SEEN SUCH A THING BEFORE",
    "I\u2019m so happy, aren\u2019t you?",
    "\u201cOh my God!\u201d she said \u2014 twice.",
    "On the 21st of May 1999 we paid $5.50 for 3.5 kg: 50% off!",
    "At 10:05 [laughter] (inaudible) it was -3 degrees",
    "Population: 1,234,567 people; code 007",
    "rock & roll, 'quoted' words and the dogs' bowls",
    "caf\u00e9 \uff21\uff22 na\u00efve",
]


def test_identity_is_versioned() -> None:
    assert NORMALIZER_NAME == "voicetone-en"
    assert NORMALIZER_VERSION == "1"


def test_librispeech_caps_and_whisper_style_become_the_same_text() -> None:
    libri = "I AM SO HAPPY I DON'T KNOW WHAT TO SAY"
    whisper = "I am so happy, I don't know what to say."
    meld = "I am so happy\u2026 I don\u2019t know what to say!"
    expected = "I am so happy I don't know what to say"
    assert normalize_transcript(libri) == expected
    assert normalize_transcript(whisper) == expected
    assert normalize_transcript(meld) == expected


def test_curly_quotes_and_apostrophes() -> None:
    assert normalize_transcript("\u201cIt\u2019s fine,\u201d he said") == "it's fine he said"
    assert normalize_transcript("\u2018Hello\u2019 \u2018em dogs\u2019") == "hello em dogs"
    assert (
        normalize_transcript("I'd say i'll go; i've gone, I'm here") == "I'd say I'll go I've gone I'm here"
    )
    assert normalize_transcript("iPhone, i.") == "iphone I"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", "seven"),
        ("42", "forty two"),
        ("100", "one hundred"),
        ("1,000,000", "one million"),
        ("2,000,000,017", "two billion seventeen"),
        ("1999", "nineteen ninety nine"),
        ("1905", "nineteen oh five"),
        ("1500", "fifteen hundred"),
        ("2024", "two thousand twenty four"),
        (
            "1st 2nd 3rd 4th 11th 12th 21st 40th 100th",
            "first second third fourth eleventh twelfth twenty first fortieth one hundredth",
        ),
        ("3.14", "three point one four"),
        ("50%", "fifty percent"),
        ("12.5%", "twelve point five percent"),
        ("$5", "five dollars"),
        ("$1.01", "one dollar one cent"),
        ("10:30", "ten thirty"),
        ("9:00", "nine o'clock"),
        ("-4", "minus four"),
        ("007", "zero zero seven"),
        ("covid19", "covid nineteen"),
    ],
)
def test_numbers_are_spelled_out(text: str, expected: str) -> None:
    assert normalize_transcript(text) == expected


def test_number_words() -> None:
    assert number_to_words(0) == "zero"
    assert number_to_words(999_999_999_999) == (
        "nine hundred ninety nine billion nine hundred ninety nine million "
        "nine hundred ninety nine thousand nine hundred ninety nine"
    )
    assert ordinal_to_words(23) == "twenty third"
    assert ordinal_to_words(90) == "ninetieth"


def test_non_english_keeps_script_and_digits() -> None:
    assert normalize_transcript("\u0645\u0646 \u062e\u0648\u0634\u062d\u0627\u0644\u0645!", "fa") == (
        "\u0645\u0646 \u062e\u0648\u0634\u062d\u0627\u0644\u0645"
    )
    assert normalize_transcript("Hola, tengo 3 GATOS.", "es") == "hola tengo 3 gatos"
    assert normalize_transcript("Hello 3", "en-US") == "hello three"
    assert normalize_transcript("Hello 3", "eng") == "hello three"
    assert [base_language(x) for x in ("en_GB", "EN", None, float("nan"), "", "fa-IR")] == [
        "en", "en", "en", "en", "en", "fa"
    ]  # fmt: skip


@pytest.mark.parametrize("text", SAMPLES)
def test_idempotent(text: str) -> None:
    once = normalize_transcript(text)
    assert once
    assert normalize_transcript(once) == once


def test_bracketed_annotations_are_dropped() -> None:
    assert normalize_transcript("[LAUGHTER] Yeah (laughs) <noise> right") == "yeah right"
    assert normalize_transcript("[BREATHING]") == ""


def test_wer_values() -> None:
    assert wer("the cat sat", "The cat sat.") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)  # one substitution, one deletion
    assert wer("a b", "a b c d") == pytest.approx(1.0)  # two insertions over two words
    assert wer("I AM 21", "i am twenty one") == 0.0  # numbers and case are normalised first
    assert wer("", "") == 0.0
    assert wer("", "hello") == 1.0
    assert word_errors("one two three", "one three") == (1, 3)
