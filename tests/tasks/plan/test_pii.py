"""PII detection in transcripts (tasks/plan/pii.py): local detector, Comprehend path, the flagging step."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.label.transcripts.normalize import normalize_transcript
from tasks.plan import pii
from tasks.spec import PiiSpec, parse_spec


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("email me at jane.doe+calls@example.co.uk please", "EMAIL"),
        ("write to jane dot doe at gmail dot com", "EMAIL"),
        ("call 415-555-0123 tomorrow", "PHONE"),
        ("my number is (415) 555 0123", "PHONE"),
        ("it is +1 415.555.0123", "PHONE"),
        ("card 4111 1111 1111 1111 expires soon", "CREDIT_DEBIT_NUMBER"),
        ("card 5500-0000-0000-0004", "CREDIT_DEBIT_NUMBER"),
        ("social 078-05-1120", "SSN"),
        ("pay to GB82 WEST 1234 5698 7654 32", "INTERNATIONAL_BANK_ACCOUNT_NUMBER"),
        ("pay to DE89370400440532013000", "INTERNATIONAL_BANK_ACCOUNT_NUMBER"),
        ("the server is 10.0.12.254", "IP_ADDRESS"),
        ("or 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "IP_ADDRESS"),
        ("I live at 42 Wallaby Way in Sydney", "ADDRESS"),
        ("send it to one hundred twenty three main street", "ADDRESS"),
        ("four one five five five five zero one two three", "SPOKEN_NUMBER"),
        ("it's four hundred fifteen five five five oh one two three", "SPOKEN_NUMBER"),
        ("the code is double seven three nine triple two", "SPOKEN_NUMBER"),
        ("number 4 1 5 5 5 5 0 1 2 3", "SPOKEN_NUMBER"),
    ],
)
def test_local_detector_finds(text: str, kind: str) -> None:
    assert kind in pii.detect_local(text), pii.detect_local(text)


@pytest.mark.parametrize(
    "text",
    [
        "Kids are talking by the door",
        "I am so happy with the service today",
        "in nineteen ninety nine we had twenty five dogs",
        "it costs twenty dollars and fifty cents",
        "oh no, oh my",
        "I walked down the street at ten",
        "card 4111 1111 1111 1112 fails the checksum",  # Luhn fails and it is not a phone shape
        "version 2.4.1 and 999.1.1.1",
        "call me at 5 pm",
        "two thousand and twenty four",
        "",
        None,
    ],
)
def test_local_detector_leaves_ordinary_speech(text: str | None) -> None:
    found = pii.detect_local(text)
    assert "CREDIT_DEBIT_NUMBER" not in found and "IP_ADDRESS" not in found
    if text != "card 4111 1111 1111 1112 fails the checksum":
        assert found == [], found


def test_normalised_transcripts_are_still_caught() -> None:
    """Our normaliser spells numbers out; the spelled form must still be flagged."""
    spelled = normalize_transcript("Call me at 415-555-1234.", language="en")
    assert "four hundred fifteen" in spelled and "SPOKEN_NUMBER" in pii.detect_local(spelled)
    ssn = normalize_transcript("My SSN is 078-05-1120", language="en")
    assert pii.detect_local(ssn) == ["SPOKEN_NUMBER"]


def test_checksums() -> None:
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32") and not pii.iban_ok("GB82 WEST 1234 5698 7654 33")
    assert pii._spoken_numbers("four thousand one hundred eleven double five".split()) == [4111, 5, 5]


def _items() -> pd.DataFrame:
    return pd.DataFrame({
        "utterance_id": ["a/1", "a/2", "b/3", "b/4"],
        "source": ["a", "a", "b", "b"],
        "language": ["en", "en", "en", "fr"],
        "transcript_raw": ["Call 415-555-0123", None, "hello there", "écrivez à marie@exemple.fr"],
        "transcript": ["call four hundred fifteen five hundred fifty five zero one two three", None,
                       "hello there", "écrivez à marie exemple fr"],
    })


def test_flag_items_and_asr_policy() -> None:
    out, report = pii.flag_items(_items(), PiiSpec())
    assert list(out["pii_detected"]) == [True, False, False, True]
    assert out.loc[0, "pii_types"] == "PHONE" and pd.isna(out.loc[1, "pii_types"])
    assert report["flagged"] == 2 and report["checked"] == 3 and report["by_source"] == {"a": 1, "b": 1}
    assert list(pii.asr_excluded(out, PiiSpec())) == [True, False, False, True]
    assert not pii.asr_excluded(out, PiiSpec(asr_policy="keep")).any()
    same, report = pii.flag_items(_items(), PiiSpec(detect="none"))
    assert "pii_detected" not in same.columns and report == {"detect": "none", "asr_policy": "exclude"}
    assert not pii.asr_excluded(same, PiiSpec()).any()


def test_spec_section() -> None:
    base = {"name": "x", "output": "/tmp/x", "sources": [{"name": "s", "kind": "folder", "path": "/tmp/s"}]}
    assert parse_spec(base).pii.detect == "local"
    spec = parse_spec({**base, "pii": {"detect": "aws_comprehend", "asr_policy": "keep", "ignore_types": ["NAME"]}})
    assert spec.pii.asr_policy == "keep"
    with pytest.raises(ValueError, match="pii.detect"):
        parse_spec({**base, "pii": {"detect": "regex"}})


def test_comprehend_over_moto_server(moto_server: str) -> None:
    """moto implements DetectPiiEntities with a canned answer (NAME, EMAIL, BANK_ACCOUNT_NUMBER)."""
    client = pii.make_client("us-east-1")
    out, report = pii.flag_items(_items(), PiiSpec(detect="aws_comprehend", ignore_types=["NAME"]), client=client)
    assert out.loc[0, "pii_types"] == "BANK_ACCOUNT_NUMBER,EMAIL"
    assert out.loc[1, "pii_detected"] == False  # noqa: E712 (no transcript: nothing to send)
    assert out.loc[3, "pii_types"] == "EMAIL"  # French: Comprehend cannot, the local detector did
    assert report["comprehend"] == {"calls": 2, "unsupported_language": 1, "cached": 0, "local_fallback": 1}


def test_comprehend_answers_are_cached_so_a_rerun_pays_nothing(moto_server: str, tmp_path) -> None:
    client = pii.make_client("us-east-1")
    calls: list[str] = []
    client.meta.events.register("provide-client-params.comprehend.DetectPiiEntities",
                                lambda params, **_: calls.append(params["Text"]))
    settings = PiiSpec(detect="aws_comprehend", ignore_types=["NAME"])
    first, _ = pii.flag_items(_items(), settings, client=client, cache=pii.comprehend_cache(str(tmp_path), settings))
    assert len(calls) == 2  # two English transcripts (French is unsupported: never sent)
    # The cache keys as they were first written (sha256 of "<language>\n<text>"): a change would re-pay.
    import hashlib

    import pyarrow.parquet as pq

    stored = {k for f in tmp_path.glob("aws-comprehend-pii/*/parts/*/*.parquet") for k in pq.read_table(f)["key"].to_pylist()}
    texts = [t for t, lang in zip(pii._texts(_items()), _items()["language"], strict=True) if t and lang == "en"]
    assert stored == {hashlib.sha256(f"en\n{t}".encode()).hexdigest() for t in texts} and len(stored) == 2
    again, report = pii.flag_items(_items(), settings, client=client,
                                   cache=pii.comprehend_cache(str(tmp_path), settings))
    assert len(calls) == 2  # the re-run sends nothing: both answers come from the cache
    assert report["comprehend"]["cached"] == 2
    assert again["pii_types"].tolist() == first["pii_types"].tolist()


def test_comprehend_scores_throttling_and_failures() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("comprehend", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    texts = [("call 415-555-0123", "en"), ("my name is Ann", "en-US"), ("x" * 200_000, "en")]
    with Stubber(client) as stub:
        entities = [{"Type": "PHONE", "Score": 0.99, "BeginOffset": 5, "EndOffset": 17},
                    {"Type": "NAME", "Score": 0.2, "BeginOffset": 0, "EndOffset": 4}]
        stub.add_client_error("detect_pii_entities", "ThrottlingException")
        stub.add_response("detect_pii_entities", {"Entities": entities},
                          {"Text": texts[0][0], "LanguageCode": "en"})
        stub.add_response("detect_pii_entities", {"Entities": [{"Type": "NAME", "Score": 0.9}]},
                          {"Text": texts[1][0], "LanguageCode": "en"})
        stub.add_client_error("detect_pii_entities", "InternalServerException",
                              expected_params={"Text": "x" * pii.COMPREHEND_MAX_BYTES, "LanguageCode": "en"})
        waits: list[float] = []
        found, stats = pii.detect_comprehend(texts, client, PiiSpec(detect="aws_comprehend", backoff_s=0.25),
                                             sleep=waits.append)
        stub.assert_no_pending_responses()
    assert found == [["PHONE"], ["NAME"], None]
    assert waits == [0.25] and stats == {"throttled": 1, "calls": 2, "failed": 1}
