"""Small shared types for pipeline stages: every stage returns kept rows and reject rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from manifests.schema import REJECT_REASONS, REJECTS_SCHEMA
from tasks.core.security import redact

REJECT_COLUMNS: list[str] = list(REJECTS_SCHEMA.names)


def reject_row(source: str, input_ref: str, stage: str, reason: str, detail: str) -> dict[str, str]:
    """One rejects-manifest row; `reason` must be a known code so reports can group by it."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; add it to manifests.schema.REJECT_REASONS")
    # Details quote inputs and error messages: scrub credentials before they reach the manifest.
    return {"source": source, "input_ref": redact(input_ref), "stage": stage, "reason": reason,
            "detail": redact(detail)}


def rejects_frame(rows: list[dict[str, str]] | None = None) -> pd.DataFrame:
    """A rejects DataFrame with the contract's columns, even when empty."""
    return pd.DataFrame(rows or [], columns=REJECT_COLUMNS)


@dataclass
class StageResult:
    """What a stage keeps and what it rejects (found = kept + rejected)."""

    items: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=rejects_frame)
