"""Amazon Comprehend documents and cost: which LanguageCode a row is sent in, the text as sent and its cache key, billed units.

Why 5,000 bytes, these languages and a cost cap before any call: see `tasks.label.sentiment.comprehend`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tasks.core.label_cache import language_text_key
from tasks.label.sentiment.common import is_missing
from tasks.spec_labelers import AwsComprehendSettings

SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW")
_TZ_CHINESE = frozenset({"tw", "hant", "hk", "mo"})


class CostCapExceeded(RuntimeError):
    """The estimated cost of the calls still to make is above `max_cost_usd`; nothing was sent."""


def comprehend_language(language: Any, default: str) -> str | None:
    """The LanguageCode to send for an item's language (missing: `default`), or None if unsupported."""
    value = default if is_missing(language) else str(language)
    parts = value.strip().replace("_", "-").lower().split("-")
    if parts[0] == "zh":
        return "zh-TW" if any(p in _TZ_CHINESE for p in parts[1:]) else "zh"
    return parts[0] if parts[0] in SUPPORTED_LANGUAGES else None


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `max_bytes` (never half a character)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")  # drops only the cut character's bytes


@dataclass(frozen=True)
class Document:
    """One distinct text to label: its cache key, the text as sent, and its LanguageCode."""

    key: str
    text: str
    language: str


def document(text: str, language: str, settings: AwsComprehendSettings) -> Document:
    sent = truncate_utf8(text, settings.max_bytes)
    return Document(language_text_key(language, sent), sent, language)


@dataclass(frozen=True)
class CostEstimate:
    documents: int
    units: int
    usd: float

    def describe(self) -> str:
        return f"{self.documents} document(s), {self.units} billing unit(s), about ${self.usd:.4f}"

    def as_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "units": self.units, "usd": round(self.usd, 6)}


def billing_units(text: str, settings: AwsComprehendSettings) -> int:
    """100-character units, at least `min_units_per_doc` per document (the pricing page's rule)."""
    return max(settings.min_units_per_doc, math.ceil(len(text) / 100))


def estimate_cost(documents: Iterable[Document], settings: AwsComprehendSettings) -> CostEstimate:
    docs = list(documents)
    units = sum(billing_units(d.text, settings) for d in docs)
    return CostEstimate(len(docs), units, units * settings.price_per_unit_usd)


def check_cost(estimate: CostEstimate, settings: AwsComprehendSettings, scope: str = "this run") -> None:
    if settings.max_cost_usd is not None and estimate.usd > settings.max_cost_usd:
        raise CostCapExceeded(
            f"Amazon Comprehend for {scope}: {estimate.describe()} is above "
            f"labelers.aws_comprehend.max_cost_usd = {settings.max_cost_usd:g}; nothing was sent "
            "(raise the cap, or label fewer items)"
        )
