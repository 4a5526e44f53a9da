"""One versioned transcript normaliser for human and pseudo transcripts alike.

Why one rule for everything: the ASR stage mixes corpora whose transcripts look different for
the same speech (LibriSpeech is ALL CAPS without punctuation, Whisper writes sentence case with
punctuation and digits, MELD has curly quotes). If each kept its style, the model would learn to
guess the *corpus* from the audio instead of the words. So every transcript is mapped to one
spoken-form text:

1. Unicode NFKC; curly quotes, primes and backticks -> straight apostrophe; dashes -> space.
2. Non-speech annotations in brackets are dropped: ``[laughter]``, ``(inaudible)``, ``<noise>``.
3. English only: digits are spelled out as spoken ("21st" -> "twenty first", "3.5" -> "three point
   five", "50%" -> "fifty percent", "$5" -> "five dollars", "1999" -> "nineteen ninety nine",
   "10:30" -> "ten thirty"); "&" -> "and".
4. Lowercase; every character that is not a letter, a digit, or an apostrophe *inside* a word is
   removed (so "don't" and "o'clock" keep theirs, quoted 'words' lose them); whitespace collapses.
5. English only: the pronoun "I" and its contractions (I'm, I'll, I've, I'd) are capitalised.

Casing: LibriSpeech cannot tell us where sentences start or which words are names, so the only
casing every corpus can share is a deterministic function of the words. Lowercase plus a capital
pronoun "I" is that function; it keeps the contract's example readable (``Positive I am so happy``)
and adds nothing the model has to guess. There is no sentence-initial capital because in the
ASR target the transcript follows the sentiment word, mid-sentence. Punctuation is dropped for
the same reason: LibriSpeech has none, so keeping it elsewhere would mark the corpus.

The result is idempotent (normalising twice changes nothing). Changing any rule here must bump
NORMALIZER_VERSION: the card records name and version so releases stay comparable.
"""

from __future__ import annotations

import re
import unicodedata

NORMALIZER_NAME = "voicetone-en"
NORMALIZER_VERSION = "1"

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

_QUOTES = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
        "\u00b4": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2010": " ", "\u2011": " ", "\u2012": " ", "\u2013": " ", "\u2014": " ", "\u2015": " ",
    }
)  # fmt: skip

_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}")
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"(?<![\d.])(\d[\d,]*)\.(\d+)(?![\d.])")
_NEGATIVE = re.compile(r"(?<![\w\d])-(?=\d)")
_INTEGER = re.compile(r"\d+(?:,\d{3})+(?!\d)|\d+")
_WORD_OR_APOSTROPHE = re.compile(r"[^\w']+|_")
_PRONOUN_I = re.compile(r"(?<![\w'])i(?='(?:m|ll|ve|d)\b|(?![\w']))")
_CURRENCY_NAMES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
                   "€": ("euro", "euros", "cent", "cents")}  # fmt: skip


def number_to_words(n: int) -> str:
    """Cardinal English words without "and" or hyphens (1234 -> "one thousand two hundred thirty four").

    Numbers of a quadrillion or more are read digit by digit, as people read long codes.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + (" " + number_to_words(rest) if rest else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return number_to_words(head) + " " + name + (" " + number_to_words(rest) if rest else "")
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """Ordinal English words (21 -> "twenty first", 100 -> "one hundredth")."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year_or_number(digits: str) -> str:
    """Spell an integer token; 1100-1999 read as years/hundreds ("nineteen oh five")."""
    n = int(digits.replace(",", ""))
    if "," not in digits and len(digits) == 4 and 1100 <= n <= 1999:
        head, tail = divmod(n, 100)
        if tail == 0:
            return number_to_words(head) + " hundred"
        if tail < 10:
            return number_to_words(head) + " oh " + _ONES[tail]
        return number_to_words(head) + " " + number_to_words(tail)
    if len(digits) > 1 and digits.startswith("0"):
        return " ".join(_ONES[int(d)] for d in digits)  # "007", zip codes: read digit by digit
    return number_to_words(n)


def _digits_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def _money(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCY_NAMES[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    text = f"{number_to_words(whole)} {one if whole == 1 else many}"
    if m.group(3):
        sub = int(m.group(3).ljust(2, "0"))
        if sub:
            text += f" {number_to_words(sub)} {sub_one if sub == 1 else sub_many}"
    return f" {text} "


def _time(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 24 or minutes > 59:
        return f" {number_to_words(hours)} {number_to_words(minutes)} "
    if minutes == 0:
        return f" {number_to_words(hours)} o'clock "
    if minutes < 10:
        return f" {number_to_words(hours)} oh {_ONES[minutes]} "
    return f" {number_to_words(hours)} {number_to_words(minutes)} "


def _spell_numbers_en(text: str) -> str:
    """Replace every digit sequence in English text by its spoken words."""
    text = _MONEY.sub(_money, text)
    text = _PERCENT.sub(lambda m: f" {m.group(1)} percent ", text)
    text = _TIME.sub(_time, text)
    text = _ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1).replace(',', '')))} ", text)
    text = _DECIMAL.sub(lambda m: f" {_year_or_number(m.group(1))} point {_digits_words(m.group(2))} ", text)
    text = _NEGATIVE.sub(" minus ", text)
    return _INTEGER.sub(lambda m: f" {_year_or_number(m.group(0))} ", text)


_LANGUAGE_ALIASES = {"eng": "en", "english": "en"}


def base_language(language: object) -> str:
    """'en-US' / 'EN' / 'eng' -> 'en'; a missing language counts as English (the spec's default)."""
    if not isinstance(language, str) or not language.strip():
        return "en"
    code = re.split(r"[-_]", language.strip().lower())[0]
    return _LANGUAGE_ALIASES.get(code, code)


def normalize_transcript(text: str, language: str = "en") -> str:
    """The spoken-form transcript used for training targets and WER (rules in the module docstring).

    Other languages than English get the basic rules (tasks/transcripts/normalize_basic.py).
    """
    english = base_language(language) == "en"
    if not english:
        from tasks.label.transcripts.normalize_basic import normalize_basic

        return normalize_basic(text)
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    text = _BRACKETED.sub(" ", text)
    if english:
        text = text.replace("&", " and ")
        text = _spell_numbers_en(text)
    text = _WORD_OR_APOSTROPHE.sub(" ", text.lower())
    words = [w.strip("'") for w in text.split()]
    text = " ".join(w for w in words if w)
    if english:
        text = _PRONOUN_I.sub("I", text)
    return text


def word_errors(reference: str, hypothesis: str, language: str = "en") -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count) after normalisation.

    Returned separately so a report can pool errors over many utterances (corpus WER is
    sum(errors) / sum(words), not the mean of per-utterance WERs).
    """
    ref = normalize_transcript(reference, language).split()
    hyp = normalize_transcript(hypothesis, language).split()
    return edit_distance(ref, hyp), len(ref)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions); at most max(len(ref), len(hyp))."""
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str, language: str = "en") -> float:
    """Word error rate of `hypothesis` against `reference`, both normalised first.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise (there is no word
    count to divide by, and any output is entirely wrong).
    """
    errors, words = word_errors(reference, hypothesis, language)
    if words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / words
