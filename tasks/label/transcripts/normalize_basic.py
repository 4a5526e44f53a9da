"""The transcript normaliser for every language except English (version `basic-1`).

English has spoken-form rules (tasks/transcripts/normalize.py: numbers spelled out, the pronoun
"I"). Other languages get only rules that are right in every script, so a Persian or German
transcript is never rewritten by English number rules:

1. Unicode NFKC (Arabic presentation forms, full-width Latin and ligatures become their plain
   letters; Persian and Arabic Yeh/Kaf variants are left as they are: they are different code
   points in NFKC too).
2. Non-speech annotations in brackets are dropped (``[laughter]``, ``(inaudible)``), as in English.
3. Casefold (``Straße`` -> ``strasse``; scripts without case are unchanged).
4. Punctuation and symbols (Unicode categories P* and S*, e.g. ``،`` ``؟`` ``«»`` ``¿``) become
   spaces; letters, digits, combining marks (vowel signs) and the zero-width non-joiner that is part
   of Persian words are kept; whitespace collapses.

Idempotent, like the English one. Changing a rule must bump BASIC_VERSION.
"""

from __future__ import annotations

import re
import unicodedata

BASIC_NAME = "voicetone-basic"
BASIC_VERSION = "1"
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}")


def _keep(char: str) -> str:
    category = unicodedata.category(char)
    return " " if category[0] in "PS" else char


def normalize_basic(text: str) -> str:
    """NFKC, bracketed annotations dropped, casefold, punctuation/symbols removed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = _BRACKETED.sub(" ", text).casefold()
    text = "".join(_keep(c) for c in text)
    words = [w.strip("\u200c") for w in text.split()]
    return " ".join(w for w in words if w)
