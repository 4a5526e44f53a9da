"""The basic normaliser for languages other than English (tasks/transcripts/normalize_basic.py)."""

from __future__ import annotations

from tasks.label.transcripts.normalize import normalize_transcript
from tasks.label.transcripts.normalize_basic import normalize_basic


def test_persian_punctuation_goes_and_zwnj_stays() -> None:
    text = "«سلام»، حال\u200cتان چطور است؟ [خنده]"
    assert normalize_basic(text) == "سلام حال\u200cتان چطور است"
    assert normalize_transcript(text, "fa") == normalize_basic(text)


def test_no_english_number_rules_and_casefold() -> None:
    assert normalize_transcript("Die Straße Nr. 21, 50%!", "de") == "die strasse nr 21 50"
    assert normalize_transcript("21st", "en") == "twenty first"  # English keeps its rules


def test_nfkc_and_idempotent() -> None:
    text = "ﻻ Ｆｏｏ ﬁn"  # Arabic presentation form, full-width Latin, ligature
    once = normalize_basic(text)
    assert once == "لا foo fin"
    assert normalize_basic(once) == once
