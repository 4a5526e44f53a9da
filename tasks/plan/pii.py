"""Find personal data (PII) in transcripts before they reach the manifests.

Transcripts are personal data, and some say more than "who": a phone number, an e-mail address, a
card number. Because the words stay in the audio, masking the text ("[PII]" in the target) would
teach the ASR stage to hear "[PII]"; the safe default is to keep such an utterance out of the ASR
stage and flag it (`pii_detected`, `pii_types` on utterances; counts in the card). The classifier
stage has no text target, so its rows are kept and flagged. Policy: docs/security.md.

Detectors:
- `local`: regexes with checks (Luhn for card numbers, mod-97 for IBANs, octet ranges for IPv4),
  plus spelled-out number runs, since ASR output and our normaliser spell numbers out
  ("four one five five five five one two one two"): a run standing for >= 7 digits is flagged.
- `aws_comprehend`: Amazon Comprehend DetectPiiEntities, one call per transcript (at most 100 KB
  UTF-8; English and Spanish), throttling retried with backoff; a transcript Comprehend cannot
  take is checked by the local detector instead (counted in the report).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from tasks.spec import PiiSpec

TEXT_COLUMNS: tuple[str, ...] = ("transcript_raw", "transcript", "transcript_hypothesis")
COMPREHEND_MAX_BYTES = 100_000
COMPREHEND_LANGUAGES = ("en", "es")
MIN_SPOKEN_DIGITS = 7

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_SPOKEN_EMAIL = re.compile(
    r"(?i)\b[a-z0-9]+(?:\s+(?:dot|underscore)\s+[a-z0-9]+)*\s+at\s+[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)*"
    r"\s+dot\s+(?:com|net|org|edu|gov|io|co|uk|de|fr|es|it|nl|ca|au|info|biz)\b"
)
_PHONE = re.compile(r"(?<![\w-])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}(?![\w-])")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_IPV6 = re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\w:])")
_DIGIT_RUN = re.compile(r"(?<![\w.])\d(?:[\s.-]?\d){6,}(?![\w.])")
_STREET = (r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
           r"parkway|pkwy|highway|hwy|circle|square|crescent")
_NUMBER_WORD = (r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
                r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
                r"ninety|hundred|thousand")
_ADDRESS = re.compile(
    rf"(?i)\b(?:\d{{1,6}}[a-z]?|(?:(?:{_NUMBER_WORD})\s+){{1,5}})\s*(?:[a-z]+\s+){{1,3}}(?:{_STREET})\b\.?"
)

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
_TEENS = {w: 10 + i for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 20 + 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_REPEAT = {"double": 2, "triple": 3}
_WORD = re.compile(r"[a-z]+|\d+")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies (random digit strings fail 9 in 10)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _spoken_numbers(tokens: list[str]) -> list[int]:
    """The numbers a run of number words says, read the way people say them.

    "four hundred fifteen five five five one two one two" -> [415, 5, 5, 5, 1, 2, 1, 2];
    "double five" -> [5, 5]; "twenty twenty four" -> [20, 24]; "4 1 5" -> [4, 1, 5].
    """
    out: list[int] = []
    num: tuple[int, int] | None = None  # (thousands part, part below a thousand) being built
    last, repeat = "", 1

    def flush() -> None:
        nonlocal num
        if num is not None:
            out.append(num[0] + num[1])
            num = None

    for tok in tokens:
        if tok in _REPEAT:
            repeat = _REPEAT[tok]
            continue
        if tok.isdigit():
            flush()
            out.extend(int(d) for d in tok)  # "415" or "4 1 5": one digit each
            last = ""
        elif tok == "hundred":
            if num is not None and 0 < num[1] < 100 and last in ("unit", "teen", "tens"):
                num, last = (num[0], num[1] * 100), "hundred"
        elif tok == "thousand":
            if num is not None and num[0] == 0 and 0 < num[1] < 1000:
                num, last = (num[1] * 1000, 0), "thousand"
        else:
            kind = "unit" if tok in _UNITS else "teen" if tok in _TEENS else "tens"
            value = _UNITS.get(tok, _TEENS.get(tok, _TENS.get(tok, 0)))
            if num is not None and kind == "unit" and value and last == "tens":
                num, last = (num[0], num[1] + value), "unit"
            elif num is not None and last in ("hundred", "thousand") and num[1] % 100 == 0 and value:
                num, last = (num[0], num[1] + value), kind
            else:
                flush()
                out.extend([value] * (repeat - 1))
                num, last = (0, value), kind
        repeat = 1
    flush()
    return out


def spoken_digit_runs(text: str, min_digits: int = MIN_SPOKEN_DIGITS) -> list[str]:
    """Runs of number words (and bare digits) standing for at least `min_digits` digits."""
    words = _WORD.findall(text.lower())
    runs: list[list[str]] = [[]]
    for w in words:
        is_num = w in _UNITS or w in _TEENS or w in _TENS or w in _REPEAT or w in ("hundred", "thousand") \
            or w.isdigit() or (w in ("oh", "o") and bool(runs[-1]))
        if is_num:
            runs[-1].append("zero" if w in ("oh", "o") else w)
        elif runs[-1]:
            runs.append([])
    found = []
    for run in runs:
        if run and sum(len(str(n)) for n in _spoken_numbers(run)) >= min_digits:
            found.append(" ".join(run))
    return found


# Every local detector needs one of these in an ASCII text: a digit (phones, cards, SSNs, IBANs, IPv4,
# digit runs, house numbers), "@" (e-mail), ":" (IPv6), "dot" (spoken e-mail) or a number word as a whole
# token (spelled-out numbers, "one hundred main street"). Most transcripts have none, and one search is
# ~20x cheaper than running the detectors. Non-ASCII text skips the shortcut: under re.IGNORECASE and
# Unicode classes other characters can match (e.g. "\u017f" matches "s", Arabic-Indic digits match \d).
_MAYBE_PII = re.compile(rf"[0-9@:]|(?<![a-z])(?:{_NUMBER_WORD}|dot)(?![a-z])")


def may_hold_pii(text: str) -> bool:
    """False only when no local detector can fire on `text` (exact: `detect_all` is the oracle in tests)."""
    return not text.isascii() or _MAYBE_PII.search(text.lower()) is not None


# `_MAYBE_PII` for Arrow's RE2, which has no lookaround: a number word or "dot" between non-letters
# (or the text's ends). Finding one such token is what the lookaround form finds, so the two agree.
_MAYBE_PII_RE2 = rf"[0-9@:]|(?:^|[^a-z])(?:{_NUMBER_WORD}|dot)(?:[^a-z]|$)"


def may_hold_pii_many(texts: list[str]) -> list[bool]:
    """`may_hold_pii` of every text, with Arrow kernels (the regex over a whole column at once).

    Why: most transcripts hold no PII, and asking Python per text cost ~5 us each at 10 M rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(texts, type=pa.large_string())
    hit = pc.match_substring_regex(pc.utf8_lower(arr), _MAYBE_PII_RE2)  # ASCII lowering is str.lower's
    return pc.or_(pc.invert(pc.string_is_ascii(arr)), hit).to_pylist()


def detect_local(text: str | None) -> list[str]:
    """The PII entity types found in `text` (Comprehend's type names where they exist), sorted."""
    if not isinstance(text, str) or not text.strip() or not may_hold_pii(text):
        return []
    return detect_all(text)


_ANY_DIGIT = re.compile(r"\d")
_STREET_WORD = re.compile(rf"\b(?:{_STREET})\b")


def detect_all(text: str, gates: bool = True) -> list[str]:
    """Every local detector on `text`, without the `may_hold_pii` shortcut.

    With `gates`, an ASCII text skips the detectors that cannot match it: those that need a digit,
    "@", ":" or a "dot", and the address pattern without a street word (it ends in one). Each gate
    is a literal the pattern requires, so the result is the same (tests compare with `gates=False`
    on random and real text); the gates halve the cost of texts that pass the shortcut by their
    number words. Non-ASCII text runs everything, as in `may_hold_pii`.
    """
    if gates and text.isascii():
        lower = text.lower()
        digit = _ANY_DIGIT.search(text) is not None
        at, colon, dot = "@" in text, ":" in text, "dot" in lower
        street = _STREET_WORD.search(lower) is not None
    else:
        digit = at = colon = dot = street = True
    types: set[str] = set()
    if (at and _EMAIL.search(text)) or (dot and _SPOKEN_EMAIL.search(text)):
        types.add("EMAIL")
    if digit and _SSN.search(text):
        types.add("SSN")
    for m in _CARD.finditer(text) if digit else ():
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            types.add("CREDIT_DEBIT_NUMBER")
    if digit and _PHONE.search(text):
        types.add("PHONE")
    if digit and any(iban_ok(m.group(0)) for m in _IBAN.finditer(text.upper())):
        types.add("INTERNATIONAL_BANK_ACCOUNT_NUMBER")
    if digit and any(all(int(g) <= 255 for g in m.groups()) for m in _IPV4.finditer(text)) \
            or colon and _IPV6.search(text):
        types.add("IP_ADDRESS")
    if street and _ADDRESS.search(text):
        types.add("ADDRESS")
    if not types & {"PHONE", "SSN", "CREDIT_DEBIT_NUMBER", "INTERNATIONAL_BANK_ACCOUNT_NUMBER", "IP_ADDRESS"}:
        if (digit and _DIGIT_RUN.search(text)) or spoken_digit_runs(text):
            types.add("SPOKEN_NUMBER")
    return sorted(types)


# ------------------------------------------------------------------------------------ Comprehend
def make_client(region: str) -> Any:
    """A Comprehend client without botocore retries: `detect_comprehend` is the one retry loop."""
    import boto3
    from botocore.config import Config

    return boto3.client("comprehend", region_name=region, config=Config(retries={"max_attempts": 1}))


def _utf8_prefix(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8")[:max_bytes]
    return data.decode("utf-8", errors="ignore")


def detect_comprehend(texts: Iterable[tuple[str, str]], client: Any, settings: PiiSpec,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[list[list[str] | None], Counter]:
    """DetectPiiEntities for each (text, language); None where Comprehend cannot answer.

    Returns the types per text (scores >= settings.min_score, minus settings.ignore_types) and a
    Counter of what happened (calls, throttled, unsupported_language, failed).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    stats: Counter = Counter()
    out: list[list[str] | None] = []
    for text, language in texts:
        lang = (language or settings.language or "en").split("-")[0].lower()
        if lang not in COMPREHEND_LANGUAGES:
            stats["unsupported_language"] += 1
            out.append(None)
            continue
        doc = _utf8_prefix(text, COMPREHEND_MAX_BYTES)
        result: list[str] | None = None
        for attempt in range(settings.max_retries + 1):
            try:
                response = client.detect_pii_entities(Text=doc, LanguageCode=lang)
                stats["calls"] += 1
                result = sorted({e["Type"] for e in response.get("Entities", [])
                                 if e.get("Score", 1.0) >= settings.min_score
                                 and e["Type"] not in settings.ignore_types})
                break
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code in ("ThrottlingException", "TooManyRequestsException") and attempt < settings.max_retries:
                    stats["throttled"] += 1
                    sleep(min(settings.backoff_s * 2**attempt, 20.0))
                    continue
                stats["failed"] += 1
                break
            except BotoCoreError:
                stats["failed"] += 1
                break
        out.append(result)
    return out, stats


# -------------------------------------------------------------------------------------- the step
def _texts(items: pd.DataFrame) -> list[str]:
    """One string per row: every transcript-like column, deduplicated, joined by newlines."""
    cols = [c for c in TEXT_COLUMNS if c in items.columns]
    texts = []
    for values in zip(*(items[c].tolist() for c in cols), strict=True) if cols else [()] * len(items):
        parts = list(dict.fromkeys(v.strip() for v in values if isinstance(v, str) and v.strip()))
        texts.append("\n".join(parts))
    return texts


def comprehend_cache(root_uri: str, settings: PiiSpec) -> Any:
    """Comprehend PII answers cached by (language, text) and the settings that filter them: never pay twice."""
    from tasks.core.label_cache import LabelCache

    return LabelCache.shared(root_uri, "aws-comprehend-pii",
                             {"min_score": settings.min_score, "ignore_types": sorted(settings.ignore_types),
                              "max_bytes": COMPREHEND_MAX_BYTES, "v": 1})


def flag_items(items: pd.DataFrame, settings: PiiSpec, region: str = "us-east-1", client: Any = None,
               log: Callable[..., None] = lambda *a, **k: None,
               cache: Any = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`items` with `pii_detected` (bool) and `pii_types` (comma-joined, null when none) added,
    and the report for the card. `detect: none` returns the items unchanged. With `cache` (from
    `comprehend_cache`), Comprehend is asked only about texts it has not answered before."""
    report: dict[str, Any] = {"detect": settings.detect, "asr_policy": settings.asr_policy}
    if settings.detect == "none":
        return items, report
    texts = _texts(items)
    if settings.detect == "aws_comprehend":
        languages = items["language"] if "language" in items.columns else [None] * len(items)
        from tasks.core.label_cache import language_text_key

        todo = [(i, t, lang) for i, (t, lang) in enumerate(zip(texts, languages, strict=True)) if t]
        keys = [language_text_key(lang or settings.language, t, "\n") for _, t, lang in todo]
        hits = cache.get_many(keys) if cache is not None else {}
        ask = [(k, t, lang) for k, (_, t, lang) in zip(keys, todo, strict=True) if k not in hits]
        ask = list({k: (k, t, lang) for k, t, lang in ask}.values())  # one call per distinct text
        stats: Counter = Counter()
        if ask:
            answers, stats = detect_comprehend(((t, lang) for _, t, lang in ask),
                                               client if client is not None else make_client(region), settings)
            fresh = {k: {"types": ",".join(r)} for (k, _, _), r in zip(ask, answers, strict=True) if r is not None}
            if cache is not None:
                cache.put_many(fresh)
            hits = {**hits, **fresh}
        types: list[list[str]] = [[] for _ in texts]
        fallback = 0
        for (i, text, _), key in zip(todo, keys, strict=True):
            if key in hits:
                value = hits[key]["types"]
                types[i] = value.split(",") if value else []
            else:  # Comprehend could not answer (language, failure): the local detector decides
                fallback += 1
                types[i] = detect_local(text)
        report["comprehend"] = {**dict(stats), "cached": len(todo) - len(ask), "local_fallback": fallback}
    else:
        found: dict[str, list[str]] = {}  # repeated transcripts ("yes", "okay") are checked once
        maybe = may_hold_pii_many(texts)  # the shortcut for the whole column; detectors only where it fails
        types = [(found[t] if t in found else found.setdefault(t, detect_local(t))) if m else []
                 for t, m in zip(texts, maybe, strict=True)]
    out = items.copy()
    out["pii_detected"] = [bool(t) for t in types]
    out["pii_types"] = [",".join(t) if t else None for t in types]
    flagged = out[out["pii_detected"]]
    by_type = Counter(t for ts in types for t in ts)
    report.update(
        checked=int(sum(1 for t in texts if t)),
        flagged=int(len(flagged)),
        by_type=dict(sorted(by_type.items())),
        by_source={str(k): int(v) for k, v in flagged.groupby("source").size().items()} if len(flagged) else {},
    )
    log("PII (%s): %d of %d transcript(s) flagged %s", settings.detect, len(flagged), report["checked"],
        report["by_type"])
    return out, report


def asr_excluded(items: pd.DataFrame, settings: PiiSpec) -> pd.Series:
    """Rows the ASR stage must leave out: flagged rows under `asr_policy: exclude`."""
    if settings.asr_policy != "exclude" or "pii_detected" not in items.columns:
        return pd.Series(False, index=items.index, dtype=bool)
    return items["pii_detected"].fillna(False).astype(bool)
