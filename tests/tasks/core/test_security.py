"""Redaction of credentials, tokens and presigned URLs (tasks/core/security.py)."""

from __future__ import annotations

import json
import logging

import pytest

from tasks.core import security
from tasks.core.rows import reject_row
from tasks.core.security import REDACTED, redact, redact_obj, scrub_uri

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
TEMP_KEY_ID = "ASIAY34FZKBOKMUTVV7A"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "IQoJb3JpZ2luX2VjEFAaCXVzLWVhc3QtMSJHMEUCIQD" + "x" * 120 + "/AbC+dEf=="
PRESIGNED = (
    "https://my-bucket.s3.amazonaws.com/corpora/a.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={TEMP_KEY_ID}%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20250101T000000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Security-Token={SESSION}"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
SECRETS = (KEY_ID, TEMP_KEY_ID, SECRET, SESSION, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    "text",
    [
        f"credentials {KEY_ID} / {SECRET}",
        f"aws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\naws_session_token = {SESSION}",
        f'{{"AccessKeyId": "{TEMP_KEY_ID}", "SecretAccessKey": "{SECRET}", "SessionToken": "{SESSION}"}}',
        f"AWS_SECRET_ACCESS_KEY={SECRET} AWS_SESSION_TOKEN={SESSION}",
        f"could not fetch {PRESIGNED}: 403 Forbidden",
        f"the secret is {SECRET}",
        "Authorization: AWS4-HMAC-SHA256 Credential="
        f"{KEY_ID}/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, "
        "Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ],
)
def test_redact_removes_every_secret(text: str) -> None:
    out = redact(text)
    for secret in SECRETS:
        assert secret not in out, (secret, out)
    assert REDACTED in out
    assert redact(out) == out  # idempotent


def test_redact_bearer_and_named_tokens() -> None:
    out = redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl token=hf_abcdefghij")
    assert "eyJhbGci" not in out and "hf_abcdefghij" not in out
    assert out.startswith("Authorization: Bearer [REDACTED]")


@pytest.mark.parametrize(
    "text",
    [
        "Audio file /data/calls/a.wav cannot be decoded (Internal psf_fseek() failed); it is probably corrupt.",
        "s3://bucket/corpora/ravdess/Actor_01/03-01-05-01-02-01-01.wav does not exist",
        "metadata.csv line 4: sentiment 'great' is not negative, neutral or positive",
        "segment key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08:0.000:3.000",
        "the speaker said the secret word twice",
        "secret-free digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b of the file",
        "tokens per text (longer is truncated)",
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_non_strings_and_nested() -> None:
    assert redact(None) is None and redact(3) == 3
    obj = {"a": [f"key {KEY_ID}", 1.5, None], f"x {KEY_ID}": ("t", {"u": PRESIGNED})}
    text = json.dumps(redact_obj(obj))
    assert all(s not in text for s in SECRETS)
    assert redact_obj(obj)["a"][1:] == [1.5, None]


def test_scrub_uri() -> None:
    assert scrub_uri(PRESIGNED) == "https://my-bucket.s3.amazonaws.com/corpora/a.wav"
    assert scrub_uri("https://user:pw@host.example/a.wav#frag") == "https://host.example/a.wav"
    assert scrub_uri("s3://bucket/key.wav?versionId=3") == "s3://bucket/key.wav?versionId=3"
    assert scrub_uri("/data/a.wav") == "/data/a.wav"


def test_reject_rows_are_redacted() -> None:
    row = reject_row("calls", PRESIGNED, "ingest", "unsafe_path", f"file_name {PRESIGNED!r} is absolute")
    text = json.dumps(row)
    assert all(s not in text for s in SECRETS)
    assert row["input_ref"].startswith("https://my-bucket.s3.amazonaws.com/corpora/a.wav?")


def test_log_records_are_redacted_for_loggers_created_later() -> None:
    security.install_log_redaction()
    security.install_log_redaction()  # idempotent
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("voicetone.test-security-late")
    handler = Keep()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("download of %s failed with key %s", PRESIGNED, KEY_ID)
        try:
            raise RuntimeError(f"boom aws_secret_access_key={SECRET}")
        except RuntimeError:
            logger.exception("while using %s", SESSION)
    finally:
        logger.removeHandler(handler)
    formatter = logging.Formatter("%(message)s")
    text = "\n".join(formatter.format(r) for r in records)
    assert len(records) == 2 and "RuntimeError: boom" in text
    assert all(s not in text for s in SECRETS), text
