"""A refusing guard is logged as its message: no traceback (tasks/core/guard_logging.py)."""

from __future__ import annotations

import io
import logging

from tasks.core.guard_logging import install_quiet_guard_errors
from tasks.core.guards import GuardError


def _logged(exc: Exception) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test.guard_logging")
    logger.addHandler(handler)
    try:
        try:
            raise exc
        except Exception as err:
            logger.error("Encountered exception during execution: %r", err, exc_info=True)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_guard_errors_are_logged_without_traceback() -> None:
    install_quiet_guard_errors()
    install_quiet_guard_errors()  # idempotent
    out = _logged(GuardError("source_accepted_nothing", "source 's' accepted none of its 2 found item(s)"))
    assert "source 's' accepted none" in out and "Traceback" not in out
    assert "Traceback" in _logged(ValueError("a real crash keeps its traceback"))
