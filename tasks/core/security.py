"""Keep credentials, tokens and presigned URLs out of logs, rejects and the dataset card.

Why here and not at every call site: secrets reach text through error messages we do not control
(botocore exceptions quote presigned URLs, a metadata row can hold a signed link, a traceback can
print an environment). So text is scrubbed where it leaves the process: log records (a filter
installed by `install_log_redaction`), reject details (`tasks.core.rows.reject_row`) and the card
(`tasks.publish.step.publish`). `redact` is idempotent and never raises.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[REDACTED]"

# The names of things that are secret when they appear as `name=value` / `name: value`.
_SECRET_NAMES = (
    r"aws_secret_access_key|aws_session_token|aws_security_token|secret_access_key|secretaccesskey"
    r"|session_token|sessiontoken|security_token|x-amz-security-token|x-amz-signature|x-amz-credential"
    r"|api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|password|passwd|secret|token"
)

_KEY_ID = r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b"
_SECRET_KEY = r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]{0,39}[a-z])(?=[A-Za-z0-9/+=]{0,39}[A-Z])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"

_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Presigned-URL query parameters (SigV4 and SigV2), whatever surrounds them.
    (re.compile(r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId)=[^&\s\"'<>]+"),
     lambda m: f"{m.group(1)}={REDACTED}"),
    # name=value, name: value, "name": "value" (quotes optional) for secret-looking names.
    (re.compile(rf"(?i)([\"']?\b(?:{_SECRET_NAMES})\b[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{{4,}})"),
     lambda m: f"{m.group(1)}{REDACTED}"),
    # HTTP authorization headers: Bearer / Basic / AWS4-HMAC-SHA256 credentials.
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), lambda m: f"{m.group(1)} {REDACTED}"),
    (re.compile(r"AWS4-HMAC-SHA256\s+Credential=[^\s]+(?:[^\n]*Signature=[0-9a-f]+)?"),
     f"AWS4-HMAC-SHA256 {REDACTED}"),
    # A 40-character secret-key-looking string (mixed case, so not a hex digest) shortly after
    # "secret" or after an access key id; then the key ids themselves (AKIA long-term, ASIA
    # temporary, and the other documented prefixes).
    (re.compile(rf"((?i:secret)[^\n]{{0,40}}?){_SECRET_KEY}"), lambda m: f"{m.group(1)}{REDACTED}"),
    (re.compile(rf"({_KEY_ID}[^\n]{{0,60}}?){_SECRET_KEY}"), lambda m: f"{m.group(1)}{REDACTED}"),
    (re.compile(_KEY_ID), REDACTED),
    # Session tokens: long base64 runs (STS tokens are hundreds of characters; IQoJb3JpZ2lu... = "origin").
    (re.compile(r"\b(?:IQoJ|FwoG|FQoG)[A-Za-z0-9/+=]{40,}"), REDACTED),
)


def redact(text: Any) -> Any:
    """`text` with credentials, tokens and presigned-URL signatures replaced by [REDACTED].

    Non-strings are returned unchanged so callers can pass cells of any type.
    """
    if not isinstance(text, str) or not text:
        return text
    out = text
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)  # type: ignore[arg-type]
    return out


def redact_obj(obj: Any) -> Any:
    """`redact` applied to every string inside nested dicts, lists and tuples (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def scrub_uri(uri: str) -> str:
    """An http(s) URL without its query string and fragment (where presigned credentials live).

    `s3://` URIs and local paths are returned unchanged: they carry no credentials, and their exact
    text is an identity in the manifests.
    """
    if not isinstance(uri, str) or not uri.lower().startswith(("http://", "https://")):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # user:password@host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# ------------------------------------------------------------------------------------------ logging
class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and formatted traceback) through `redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_voicetone_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging's own error handling
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._voicetone_redacted = True
        return True


_FILTER = RedactingFilter()
_install_lock = threading.Lock()
_installed = False
LOGGER_NAMES: tuple[str, ...] = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "voicetone",
                                 "tasks", "flows", "botocore", "boto3", "s3transfer", "distributed")


def install_log_redaction() -> None:
    """Redact every log record of this process, whichever logger or handler it goes through.

    The filter runs in the log-record factory (so records of loggers and handlers created later,
    such as Prefect's API handler set up per flow run, are covered), and is also attached to the
    handlers present now. Idempotent; call it before the first log line that could hold a secret.
    """
    global _installed
    with _install_lock:
        if not _installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                _FILTER.filter(record)
                return record

            logging.setLogRecordFactory(factory)
            _installed = True
        for name in LOGGER_NAMES:
            for handler in logging.getLogger(name).handlers:
                if _FILTER not in handler.filters:
                    handler.addFilter(_FILTER)
