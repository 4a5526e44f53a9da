"""Log a refusing guard as its message, not as a crash.

A `GuardError` is the build saying "I will not publish this, and here is why": Prefect logs every
exception that ends a task or flow with its traceback (twice for the nested flows), which buries
that sentence under 60 lines of engine frames. The record keeps its level and message; only the
traceback of a GuardError is dropped. Installed in the log-record factory (like the redaction in
tasks/core/security.py), so loggers and handlers Prefect creates later are covered too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tasks.core.guards import GuardError

_lock = threading.Lock()
_installed = False


def install_quiet_guard_errors() -> None:
    """Drop the traceback from log records of a GuardError (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, GuardError):
                record.exc_info, record.exc_text = None, None
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
