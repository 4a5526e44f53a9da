"""Amazon Comprehend documents: language codes, UTF-8 cuts on a character boundary, pinned cache keys, billed units."""

from __future__ import annotations

import hashlib

import pytest

from tasks.label.sentiment import comprehend_documents as cd
from tasks.spec_labelers import AwsComprehendSettings


def test_document_keys_are_pinned() -> None:
    """Keys as first written (sha256 of "<language>\x1f<text as sent>"): a changed key would re-pay every label."""
    settings = AwsComprehendSettings()
    assert cd.document("I am so happy", "en", settings).key == (
        "58c5200ded2dbd42455634c829e12faba002131fe3785574639d89f931658760")
    assert cd.document("x" * 6000, "de", settings).key == hashlib.sha256(
        ("de\x1f" + "x" * settings.max_bytes).encode()).hexdigest()


def test_language_codes_and_utf8_truncation() -> None:
    assert cd.comprehend_language("en-US", "en") == "en"
    assert cd.comprehend_language(None, "de") == "de"
    assert cd.comprehend_language("zh_TW", "en") == "zh-TW"
    assert cd.comprehend_language("zh-Hant-HK", "en") == "zh-TW"
    assert cd.comprehend_language("zh-CN", "en") == "zh"
    assert cd.comprehend_language("fa", "en") is None
    assert cd.comprehend_language("nl", "en") is None
    text = "a" + "é" * 10  # 1 + 20 bytes
    cut = cd.truncate_utf8(text, 6)  # 'a' + 2 x 'é' = 5 bytes; the 6th byte would split a character
    assert cut == "aéé" and len(cut.encode()) == 5
    assert cd.truncate_utf8("short", 5000) == "short"
    emoji = "😀" * 2000  # 4 bytes each
    assert cd.truncate_utf8(emoji, 5000) == "😀" * 1250


def test_billing_units_and_cap() -> None:
    settings = AwsComprehendSettings(max_cost_usd=0.0001)
    assert cd.billing_units("hi", settings) == 3 and cd.billing_units("x" * 450, settings) == 5
    estimate = cd.estimate_cost([cd.document("x" * 450, "en", settings)], settings)
    assert estimate.as_dict() == {"documents": 1, "units": 5, "usd": round(5 * settings.price_per_unit_usd, 6)}
    with pytest.raises(cd.CostCapExceeded, match="1 document"):
        cd.check_cost(estimate, settings, "shard 3")
