"""Names and formatting shared by the card builder, the Markdown card and the HTML report.

Kept apart from `tasks.publish.card` so the renderers can import them without importing the builder
(which re-exports the renderers: a cycle otherwise).
"""

from __future__ import annotations

import json
from typing import Any

UNKNOWN = "unknown"
NON_SPEECH = "non_speech"
CROSS_SECTION_COLUMNS: tuple[str, ...] = ("source", "split", "gender", "age_bucket", "accent")
# Sections stages compute themselves; copied verbatim (made JSON-safe), in this order.
EXTRA_SECTIONS: tuple[str, ...] = (
    "balance",
    "eligibility",
    "weights",
    "labelers",
    "transcript_quality",
    "sentiment_agreement",
    "agreement",
    "augment",
    "segments",
    "timings",
    "lineage",
)
# Rendered first in the Markdown card (see `_render_guards`), not among the other sections.
FRONT_SECTIONS: frozenset[str] = frozenset({"guards"})
EXTRA_TITLES: dict[str, str] = {
    "balance": "ASR-stage balancing",
    "eligibility": "Eligibility (label origins each stage and split may use)",
    "agreement": "Pseudo-label agreement with human labels",
    "weights": "Class weights (weighting stage)",
    "labelers": "Labelers",
    "transcript_quality": "Transcript quality (WER vs human)",
    "sentiment_agreement": "Sentiment agreement",
    "augment": "Augmentation",
    "segments": "Classifier windows",
    "timings": "Timings (seconds per stage)",
    "lineage": "Lineage",
    "pii": "Personal data",
    "changes": "Changes since the previous release",
}
# Origins that come from a person (a mapped emotion is a human annotation); the rest are pseudo-labels.
HUMAN_SENTIMENT_ORIGINS: frozenset[str] = frozenset({"human", "mapped_emotion"})
HUMAN_TRANSCRIPT_ORIGINS: frozenset[str] = frozenset({"human"})
# A labeler whose macro-F1 against held-out human labels is below this, on a source with at least
# LOW_AGREEMENT_MIN_N scored rows, labels that kind of data little better than chance.
LOW_AGREEMENT_MACRO_F1 = 0.5
LOW_AGREEMENT_MIN_N = 5


def fmt_hours(hours: float) -> str:
    """Hours for people: minutes below a tenth of an hour, so a small source never reads "0.00 h"."""
    hours = float(hours or 0.0)
    if 0 < hours < 0.1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.2f} h"


def fmt_hms(hours: float | None) -> str:
    """Hours as h:mm:ss (16.5 s -> "0:00:17"), the one duration format of the card and the report."""
    if hours is None:
        return "–"
    total = int(round(float(hours) * 3600.0))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def cell(value: Any) -> str:
    """One Markdown table cell: None as a dash, booleans as yes/no, short floats, pipes escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list | dict):
        value = json.dumps(value, separators=(",", ":"))
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(n: int, total: int) -> str:
    return f"{n} ({100.0 * n / total:.0f}%)" if total else str(n)


def matrix(title: str, data: dict[str, dict[str, int]]) -> str:
    """Rows x classes with row shares, the shape used for every split/source x sentiment table."""
    if not data:
        return "_no rows_"
    cols = list(dict.fromkeys(c for row in data.values() for c in row))
    rows = []
    for name, row in data.items():
        total = sum(row.values())
        rows.append([name] + [pct(row.get(c, 0), total) for c in cols] + [total])
    return table([title] + cols + ["total"], rows)


def split_items(by_split: dict[str, Any]) -> list[tuple[str, Any]]:
    """(split, value) in train, dev, test order (card.json is written with sorted keys)."""
    from manifests.schema import SPLITS

    order = {s: i for i, s in enumerate(SPLITS)}
    return sorted(by_split.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
