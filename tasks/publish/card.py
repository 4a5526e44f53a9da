"""The dataset card: what a data engineer and a training lead read to trust a release.

`build_card_from_aggregates` turns the merged partial aggregates of the manifests' parts
(`tasks.publish.aggregates`) into one JSON-serialisable dict: counts that prove found = accepted +
rejected, distributions that expose balance and confounds (`tasks.publish.card_sections`), and the
sections stages computed themselves. `build_card` is the same from whole frames (one part), so a
release's card does not depend on how many parts it was computed from. The renderers
(`render_markdown`, `make_plots`) are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import CLASS_INDEX
from tasks.core import guards
from tasks.publish import card_sections as sections
from tasks.publish.aggregates import MAX_REJECT_EXAMPLES, frame_aggregates
from tasks.publish.card_common import EXTRA_SECTIONS, fmt_hours
from tasks.publish.card_sections import DUPLICATE_LIMITATION, DUPLICATE_RULE
from tasks.publish.card_warnings import derived_guards
from tasks.spec import DatasetSpec

DEFAULT_MIN_GROUP_SIZE = 20
# Keys of `extra` that parameterise the card instead of being sections.
# `source_notes` ({source: [sentence, ...]} from the adapters) goes into counts.sources.<name>.notes.
_EXTRA_PARAMETERS: frozenset[str] = frozenset({"min_group_size", "source_notes"})


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy/pandas scalars unwrapped, NaN/inf -> None, keys as strings."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return [_jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, list | tuple | np.ndarray | pd.Series):
        return [_jsonable(v) for v in list(value)]
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(mode="json"))
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)



def build_card_from_aggregates(spec: DatasetSpec, release: str, agg: Mapping[str, Any], found: Mapping[str, int],
                               extra: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset card as plain JSON types (no NaN) from `merge_aggregates` of every part; the writer
    adds schema_version/content_sha256. `extra` carries the sections stages computed themselves."""
    min_group_size = int(extra.get("min_group_size", DEFAULT_MIN_GROUP_SIZE))
    card: dict[str, Any] = {
        "name": spec.name,
        "release": release,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
        "class_index": dict(CLASS_INDEX),
        "counts": sections.counts_section(spec, agg, found, extra.get("source_notes")),
        "rejects": sections.rejects_section(agg),
        "utterances": sections.utterances_section(agg),
        "asr_stage": sections.asr_section(agg),
        "classifier_stage": sections.classifier_section(agg),
        "cross_sections": sections.cross_sections(
            agg, min_group_size, extra.get("sentiment_agreement") or extra.get("agreement")
        ),
        "leakage": sections.leakage_section(agg),
        "hours": sections.hours_section(agg),
    }
    for stage, reason in sections.empty_stage_reasons(agg, found, extra).items():
        card[stage]["empty_reason"] = reason
    extra_keys = [k for k in EXTRA_SECTIONS if k in extra]
    extra_keys += sorted(k for k in extra if k not in EXTRA_SECTIONS and k not in _EXTRA_PARAMETERS)
    clashes = [k for k in extra_keys if k in card]
    if clashes:
        raise ValueError(f"extra sections {clashes} would overwrite computed card sections; rename them")
    for key in extra_keys:
        card[key] = extra[key]
    card = _jsonable(card)
    derived = derived_guards(card)
    if derived or "guards" in card:
        card["guards"] = guards.collect({"guards": card.get("guards") or []}, {"guards": derived})
    return card


def build_card(
    *,
    spec: DatasetSpec,
    release: str,
    utterances: pd.DataFrame,
    asr: pd.DataFrame,
    classifier: pd.DataFrame,
    rejects: pd.DataFrame,
    found: dict[str, int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """`build_card_from_aggregates` of whole frames (one part): the same card as from any split into parts."""
    agg = frame_aggregates(spec, utterances, asr, classifier, rejects)
    return build_card_from_aggregates(spec, release, agg, found, extra)


def empty_stage_reasons(utterances: pd.DataFrame, asr: pd.DataFrame, classifier: pd.DataFrame,
                        rejects: pd.DataFrame, found: Mapping[str, int], extra: Mapping[str, Any]) -> dict[str, str]:
    """`card_sections.empty_stage_reasons` from whole frames."""
    return sections.empty_stage_reasons(frame_aggregates(None, utterances, asr, classifier, rejects), found, extra)


# The renderers live in their own modules; re-exported so `from tasks.publish.card import ...` keeps working.
from tasks.publish.markdown import _render_guards, render_markdown, render_summary  # noqa: E402
from tasks.publish.plots import PLOT_FILES, make_plots, make_plots_from_aggregates  # noqa: E402

__all__ = ["DUPLICATE_LIMITATION", "DUPLICATE_RULE", "MAX_REJECT_EXAMPLES", "PLOT_FILES", "_render_guards",
           "build_card", "build_card_from_aggregates", "empty_stage_reasons", "fmt_hours", "make_plots",
           "make_plots_from_aggregates", "render_markdown", "render_summary"]
