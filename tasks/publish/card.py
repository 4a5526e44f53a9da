"""The dataset card: what a data engineer and a training lead read to trust a release.

`build_card` turns the final manifests into one JSON-serialisable dict (counts that prove
found = accepted + rejected, distributions that expose balance and confounds, and the sections
stages computed themselves), `render_markdown` makes it readable, and `make_plots` draws the few
pictures that make imbalance obvious at a glance. Everything is derived from the tables handed in,
so a rebuilt release gets the same card (apart from `built_at`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import CLASS_INDEX, SENTIMENTS, SPLITS
from tasks.core import guards
from tasks.publish.card_common import (
    CROSS_SECTION_COLUMNS,
    EXTRA_SECTIONS,
    HUMAN_SENTIMENT_ORIGINS,
    HUMAN_TRANSCRIPT_ORIGINS,
    NON_SPEECH,
    UNKNOWN,
    fmt_hours,
)
from tasks.publish.card_warnings import derived_guards
from tasks.spec import DatasetSpec

DEFAULT_MIN_GROUP_SIZE = 20
MAX_REJECT_EXAMPLES = 20
# Keys of `extra` that parameterise the card instead of being sections.
# `source_notes` ({source: [sentence, ...]} from the adapters) goes into counts.sources.<name>.notes.
_EXTRA_PARAMETERS: frozenset[str] = frozenset({"min_group_size", "source_notes"})
DUPLICATE_RULE = (
    "one row per segment_key (sha256 of the file bytes + offset + duration), across sources: prefer a human "
    "sentiment label, then a human transcript, then the smallest utterance_id; the others are "
    "duplicate_segment rejects"
)
DUPLICATE_LIMITATION = (
    "only byte-identical audio is caught: a corpus that re-encodes, resamples or re-cuts another "
    "(DNS-Challenge republishes CREMA-D clips) is not detected; list such corpora as one source or "
    "exclude the overlap by hand"
)


# ----------------------------------------------------------------------------- small helpers


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


def _labels(df: pd.DataFrame, column: str, null: str = UNKNOWN) -> pd.Series:
    """A column as plain Python strings with nulls named, so groupings never drop rows silently."""
    if column not in df.columns:
        return pd.Series([null] * len(df), index=df.index, dtype=object)
    col = df[column]
    return col.astype(object).where(col.notna(), null).map(str).astype(object)


def _seconds(df: pd.DataFrame, column: str = "duration_s") -> pd.Series:
    if column not in df.columns:
        return pd.Series([0.0] * len(df), index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").fillna(0.0).astype(float)


def _durations(df: pd.DataFrame) -> pd.Series:
    """Known durations only (a null duration is unknown, not zero)."""
    if "duration_s" not in df.columns:
        return pd.Series(dtype=float)
    return pd.to_numeric(df["duration_s"], errors="coerce").dropna().astype(float)


def _hours(seconds: float) -> float:
    return round(float(seconds) / 3600.0, 6)


def _ordered(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """Known values in their canonical order first, then the rest alphabetically (stable output)."""
    present = list(dict.fromkeys(values))
    first = [v for v in preferred if v in present]
    return first + sorted(v for v in present if v not in first)


def _counts(labels: pd.Series, preferred: Iterable[str] = ()) -> dict[str, int]:
    vc = labels.value_counts()
    return {k: int(vc[k]) for k in _ordered(vc.index, preferred)}


def _sentiment_counts(labels: pd.Series, extra_keys: Iterable[str] = ()) -> dict[str, int]:
    """Counts for every class (zeros included, so missing classes show), plus any other labels seen."""
    vc = labels.value_counts()
    out = {s: int(vc.get(s, 0)) for s in SENTIMENTS}
    for key in extra_keys:
        out[key] = int(vc.get(key, 0))
    for key in sorted(k for k in vc.index if k not in out):
        out[key] = int(vc[key])
    return out


def _cross_counts(
    df: pd.DataFrame, row_col: str, sentiment_null: str = UNKNOWN, preferred_rows: Iterable[str] = ()
) -> dict[str, dict[str, int]]:
    rows = _labels(df, row_col)
    sent = _labels(df, "sentiment", null=sentiment_null)
    extra = [sentiment_null] if sentiment_null == NON_SPEECH else []
    # One pass over the rows (a per-group mask would be groups x rows on a large release).
    by_row = {r: g for r, g in sent.groupby(rows, sort=False)}
    return {r: _sentiment_counts(by_row[r], extra) for r in _ordered(rows, preferred_rows)}


# ----------------------------------------------------------------------------- card sections


def _source_order(spec: DatasetSpec, *frames_and_found: Iterable[str]) -> list[str]:
    seen = [s.name for s in spec.sources]
    for names in frames_and_found:
        seen.extend(n for n in names if n not in seen)
    return seen


def _counts_section(
    spec: DatasetSpec,
    utterances: pd.DataFrame,
    asr: pd.DataFrame,
    rejects: pd.DataFrame,
    found: dict[str, int],
    classifier: pd.DataFrame | None = None,
    notes: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    u_src, r_src = _labels(utterances, "source"), _labels(rejects, "source")
    u_sec = _seconds(utterances)
    u_ids = _labels(utterances, "utterance_id")
    in_asr = u_ids.isin(set(_labels(asr, "utterance_id").tolist()))
    in_clf = u_ids.isin(set(_labels(classifier, "utterance_id").tolist())) if classifier is not None else None
    sources: dict[str, dict[str, Any]] = {}
    for name in _source_order(spec, found.keys(), sorted(set(u_src)), sorted(set(r_src))):
        mask = u_src == name
        accepted, rejected = int(mask.sum()), int((r_src == name).sum())
        n_found = found.get(name)
        sources[name] = {
            "found": None if n_found is None else int(n_found),
            "accepted": accepted,
            "rejected": rejected,
            "excluded_from_asr": int((mask & ~in_asr).sum()),
            "excluded_from_classifier": 0 if in_clf is None else int((mask & ~in_clf).sum()),
            "hours": _hours(u_sec[mask].sum()),
            "accounted": n_found is not None and int(n_found) == accepted + rejected,
        }
        if (notes or {}).get(name):
            sources[name]["notes"] = list((notes or {})[name])
    totals = {
        "found": sum(s["found"] or 0 for s in sources.values()),
        "accepted": sum(s["accepted"] for s in sources.values()),
        "rejected": sum(s["rejected"] for s in sources.values()),
        "excluded_from_asr": sum(s["excluded_from_asr"] for s in sources.values()),
        "excluded_from_classifier": sum(s["excluded_from_classifier"] for s in sources.values()),
        "hours": _hours(u_sec.sum()),
        "accounted": all(s["accounted"] for s in sources.values()),
    }
    return {"sources": sources, "totals": totals}


def _reject_examples(rejects: pd.DataFrame) -> list[dict[str, Any]]:
    """Up to 20 rows, taken round-robin over (source, reason) so every kind of problem is shown."""
    if rejects.empty:
        return []
    frame = pd.DataFrame(
        {c: _labels(rejects, c, null="") for c in ("source", "input_ref", "stage", "reason")}
    )
    frame["detail"] = _labels(rejects, "detail", null="")
    frame = frame.sort_values(["source", "reason", "input_ref", "stage"], kind="stable")
    groups = [g for _, g in frame.groupby(["source", "reason"], sort=True)]
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < MAX_REJECT_EXAMPLES and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g) and len(picked) < MAX_REJECT_EXAMPLES:
                row = g.iloc[depth]
                picked.append(
                    {k: (row[k] or None) for k in ("source", "input_ref", "stage", "reason", "detail")}
                )
        depth += 1
    return picked


def _rejects_section(rejects: pd.DataFrame) -> dict[str, Any]:
    src, reason = _labels(rejects, "source"), _labels(rejects, "reason")
    return {
        "total": len(rejects),
        "by_reason": _counts(reason),
        "by_stage": _counts(_labels(rejects, "stage")),
        "by_source_reason": {s: _counts(reason[src == s]) for s in _ordered(src, ())},
        "examples": _reject_examples(rejects),
    }


def _duration_stats(seconds: pd.Series) -> dict[str, float | None]:
    if seconds.empty:
        return {"min": None, "median": None, "mean": None, "max": None, "total_hours": 0.0}
    return {
        "min": round(float(seconds.min()), 3),
        "median": round(float(seconds.median()), 3),
        "mean": round(float(seconds.mean()), 3),
        "max": round(float(seconds.max()), 3),
        "total_hours": _hours(seconds.sum()),
    }


def _utterances_section(utterances: pd.DataFrame) -> dict[str, Any]:
    split, sec = _labels(utterances, "split"), _seconds(utterances)
    return {
        "total": len(utterances),
        "hours": _hours(sec.sum()),
        "by_split": {
            s: {"count": int((split == s).sum()), "hours": _hours(sec[split == s].sum())}
            for s in _ordered(split, SPLITS)
        },
        "sentiment_by_split": _cross_counts(utterances, "split", preferred_rows=SPLITS),
        "label_origins": {
            "transcript_origin": _counts(_labels(utterances, "transcript_origin")),
            "sentiment_origin": _counts(_labels(utterances, "sentiment_origin")),
        },
        "duration_s": _duration_stats(_durations(utterances)),
        "languages": _counts(_labels(utterances, "language")),
        "licenses_by_source": {
            s: _counts(_labels(utterances, "license")[_labels(utterances, "source") == s])
            for s in _ordered(_labels(utterances, "source"), ())
        },
    }


def _balanced(counts: dict[str, int]) -> bool | None:
    """Train sentiment counts equal within rounding (classes absent from the data are ignored)."""
    present = [counts.get(s, 0) for s in SENTIMENTS if counts.get(s, 0) > 0]
    return None if not present else max(present) - min(present) <= 1


def _asr_section(asr: pd.DataFrame, utterances: pd.DataFrame) -> dict[str, Any]:
    split, sec = _labels(asr, "split"), _seconds(asr)
    by_split_sentiment = _cross_counts(asr, "split", preferred_rows=SPLITS)
    train = by_split_sentiment.get("train", {})
    asr_ids = set(_labels(asr, "utterance_id").tolist())
    u_split = _labels(utterances, "split")
    excluded = ~_labels(utterances, "utterance_id").isin(asr_ids)
    recipe = asr["recipe_applied"].fillna(False).astype(bool) if "recipe_applied" in asr.columns else None
    return {
        "rows": len(asr),
        "unique_utterances": len(asr_ids - {UNKNOWN}) if len(asr) else 0,
        "hours": _hours(sec.sum()),
        "hours_by_split": {s: _hours(sec[split == s].sum()) for s in _ordered(split, SPLITS)},
        "by_split_sentiment": by_split_sentiment,
        "train_balanced": _balanced(train),
        "train_missing_classes": [s for s in SENTIMENTS if train.get(s, 0) == 0]
        if train
        else list(SENTIMENTS),
        "by_source_sentiment": _cross_counts(asr, "source"),
        "excluded_by_split": {s: int((excluded & (u_split == s)).sum()) for s in _ordered(u_split, SPLITS)},
        "recipe_applied": 0 if recipe is None else int(recipe.sum()),
    }


def _classifier_section(classifier: pd.DataFrame) -> dict[str, Any]:
    split = _labels(classifier, "split")
    if "speech_present" in classifier.columns:
        speech = classifier["speech_present"].fillna(False).astype(bool)
    else:
        speech = _labels(classifier, "sentiment", null=NON_SPEECH) != NON_SPEECH
    weights: dict[str, dict[str, float | None]] = {}
    if "class_weight" in classifier.columns:
        w = pd.to_numeric(classifier["class_weight"], errors="coerce")
        sent = _labels(classifier, "sentiment", null=NON_SPEECH)
        for s in _ordered(split, SPLITS):
            rows = speech & (split == s)
            weights[s] = {
                c: round(float(w[rows & (sent == c)].mean()), 6) for c in _ordered(sent[rows], SENTIMENTS)
            }
    return {
        "windows": len(classifier),
        "by_split_sentiment": _cross_counts(
            classifier, "split", sentiment_null=NON_SPEECH, preferred_rows=SPLITS
        ),
        "speech": {
            "speech": int(speech.sum()),
            "non_speech": int((~speech).sum()),
            "by_split": {
                s: {
                    "speech": int((speech & (split == s)).sum()),
                    "non_speech": int((~speech & (split == s)).sum()),
                }
                for s in _ordered(split, SPLITS)
            },
        },
        "valid_hours": _hours(_seconds(classifier, "valid_s").sum()),
        "class_weights": weights,
    }


def _origin_counts(origins: pd.Series, human: frozenset[str]) -> dict[str, Any]:
    """Counts per origin plus how many came from a person (the rest are pseudo-labels)."""
    counts = _counts(origins)
    return {"by_origin": counts, "human": sum(n for o, n in counts.items() if o in human)}


def _agreement_by_group(agreement: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"by_<column>": {group: {labeler: {n, accuracy, macro_f1}}}} from the agreement section.

    Reads `tasks.label.sentiment.agreement`'s shape (`labelers.<name>.per_source.<source>` scores) and
    any explicit `by_<column>` mappings, so agreement shows next to each group's size and origins.
    """
    if not isinstance(agreement, Mapping):
        return {}
    out: dict[str, Any] = {k: v for k, v in agreement.items() if k.startswith("by_") and isinstance(v, Mapping)}
    labelers = agreement.get("labelers")
    if isinstance(labelers, Mapping):
        by_source: dict[str, dict[str, Any]] = {}
        for name, result in labelers.items():
            per_source = result.get("per_source") if isinstance(result, Mapping) else None
            for source, sc in (per_source or {}).items():
                if isinstance(sc, Mapping):
                    by_source.setdefault(str(source), {})[str(name)] = {
                        k: sc.get(k) for k in ("n", "accuracy", "macro_f1")
                    }
        if by_source and "by_source" not in out:
            out["by_source"] = by_source
    return out


def _cross_sections(
    utterances: pd.DataFrame, min_group_size: int, agreement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Counts, hours, sentiment, label origin and (where measured) agreement per group.

    `agreement` is the card's agreement section (`extra["sentiment_agreement"]` or
    `extra["agreement"]`); see `_agreement_by_group` for the shapes read.
    """
    agreement = _agreement_by_group(agreement)
    sec = _seconds(utterances)
    s_origin = _labels(utterances, "sentiment_origin")
    t_origin = _labels(utterances, "transcript_origin")
    out: dict[str, Any] = {"min_group_size": min_group_size}
    for column in CROSS_SECTION_COLUMNS:
        values = _labels(utterances, column)
        preferred = SPLITS if column == "split" else ()
        seconds = sec.groupby(values, sort=False).sum()
        sentiments = _cross_counts(utterances, column)
        s_by = {g: part for g, part in s_origin.groupby(values, sort=False)}
        t_by = {g: part for g, part in t_origin.groupby(values, sort=False)}
        per_group = (agreement or {}).get(f"by_{column}")
        groups: dict[str, Any] = {}
        for g in _ordered(values, preferred):
            n = sum(sentiments[g].values())
            groups[g] = {
                "count": n,
                "hours": _hours(seconds[g]),
                "sentiment": sentiments[g],
                "label_origin": {
                    "sentiment": _origin_counts(s_by[g], HUMAN_SENTIMENT_ORIGINS),
                    "transcript": _origin_counts(t_by[g], HUMAN_TRANSCRIPT_ORIGINS),
                },
                "small": n < min_group_size,
            }
            if isinstance(per_group, Mapping) and g in per_group:
                groups[g]["agreement"] = per_group[g]
        out[column] = groups
    return out


def _leakage_section(utterances: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, Any]:
    """Duplicate segments resolved (counted per source) and a recount of cross-split leakage."""
    reason = _labels(rejects, "reason")
    dup_sources = _labels(rejects, "source")[reason == "duplicate_segment"]
    keys = _labels(utterances, "segment_key")
    splits = _labels(utterances, "split")
    known = keys != UNKNOWN
    per_key = splits[known].groupby(keys[known]).nunique() if known.any() else pd.Series(dtype=int)
    repeated = keys[known].duplicated(keep=False)
    return {
        "duplicate_segments_resolved": int(len(dup_sources)),
        "duplicates_by_source": _counts(dup_sources),
        "segment_keys_in_two_splits": int((per_key > 1).sum()),
        "segment_keys_repeated": int(keys[known][repeated].nunique()),
        "rule": DUPLICATE_RULE,
        "limitation": DUPLICATE_LIMITATION,
    }


def _hours_section(utterances: pd.DataFrame) -> dict[str, Any]:
    """Hours of accepted audio per source x split x class: what a training lead weighs first."""
    src, split = _labels(utterances, "source"), _labels(utterances, "split")
    sent, sec = _labels(utterances, "sentiment"), _seconds(utterances)
    out: dict[str, dict[str, dict[str, float]]] = {}
    if len(utterances):
        grouped = sec.groupby([src, split, sent], sort=False).sum()
        for s in _ordered(src, ()):
            out[s] = {}
            for sp in _ordered(split[src == s], SPLITS):
                out[s][sp] = {c: _hours(grouped.get((s, sp, c), 0.0))
                              for c in _ordered(sent[(src == s) & (split == sp)], SENTIMENTS)}
    return {"by_source_split_sentiment": out}


def _top_reasons(rejects: pd.DataFrame, n: int = 3) -> str:
    """The most common reject reasons with counts and one example detail, for an empty-stage reason."""
    reasons = _labels(rejects, "reason").value_counts()
    parts = [f"{r} {int(c)}" for r, c in reasons.head(n).items()]
    text = ", ".join(parts)
    if len(reasons):
        top = reasons.index[0]
        detail = _labels(rejects, "detail", null="")[_labels(rejects, "reason") == top].iloc[0]
        if detail:
            text += f"; e.g. {detail}"
    return text


def empty_stage_reasons(
    utterances: pd.DataFrame,
    asr: pd.DataFrame,
    classifier: pd.DataFrame,
    rejects: pd.DataFrame,
    found: Mapping[str, int],
    extra: Mapping[str, Any],
) -> dict[str, str]:
    """Why a stage has no utterance rows, per stage ("asr_stage", "classifier_stage"); {} when neither is empty.

    A release may legitimately hold an empty stage (the contract allows empty tables); the card must
    then say why, so nobody mistakes it for a bug or trains on nothing. Classifier windows cut from
    noise files are not utterance rows: a stage holding only those counts as empty.
    """
    clf_utt = classifier
    if len(classifier) and "source" in classifier.columns:
        clf_utt = classifier[_labels(classifier, "source") != "noise"]
    empty = {"asr_stage": asr.empty, "classifier_stage": clf_utt.empty}
    if not any(empty.values()):
        return {}
    n_found = sum(int(v) for v in found.values())
    if utterances.empty:
        if n_found == 0:
            why = "the sources hold no items (found 0): check each source's path and kind"
        else:
            why = (f"no utterance was accepted: all {n_found} found item(s) were rejected "
                   f"({_top_reasons(rejects)})")
    else:
        why = ""
    reasons: dict[str, str] = {}
    if empty["asr_stage"]:
        if why:
            reasons["asr_stage"] = why
        else:
            excluded = dict((extra.get("balance") or {}).get("excluded") or {})
            pii_out = int((extra.get("pii") or {}).get("asr_excluded") or 0)
            causes = [f"{k} {int(v)}" for k, v in excluded.items() if v]
            if pii_out:
                causes.append(f"pii_excluded {pii_out} (pii.asr_policy exclude)")
            implausible = int((((extra.get("plausibility") or {}).get("excluded") or {}).get("asr") or {}).get("total") or 0)
            if implausible:
                causes.append(f"outside_plausibility_limits {implausible}")
            reasons["asr_stage"] = (
                f"all {len(utterances)} accepted utterance(s) were left out of the ASR stage"
                + (f" ({', '.join(causes)})" if causes else "")
                + "; see the ASR-stage balancing and eligibility sections"
            )
    if empty["classifier_stage"]:
        if why:
            reason = why
        else:
            ineligible = int(((extra.get("eligibility") or {}).get("classifier") or {}).get("total") or 0)
            implausible = int((((extra.get("plausibility") or {}).get("excluded") or {}).get("classifier") or {})
                              .get("total") or 0)
            reason = (f"all {len(utterances)} accepted utterance(s) were left out of the classifier stage"
                      + (f" ({ineligible} by label-origin eligibility rules)" if ineligible else "")
                      + (f" ({implausible} outside the plausibility limits)" if implausible else ""))
        noise = len(classifier) - len(clf_utt)
        if noise:
            reason += f"; it holds only {noise} non-speech window(s) cut from noise files"
        reasons["classifier_stage"] = reason
    return reasons


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
    """The dataset card as plain JSON types (no NaN); the writer adds schema_version/content_sha256."""
    min_group_size = int(extra.get("min_group_size", DEFAULT_MIN_GROUP_SIZE))
    card: dict[str, Any] = {
        "name": spec.name,
        "release": release,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": spec.seed,
        "spec": spec.model_dump(mode="json"),
        "class_index": dict(CLASS_INDEX),
        "counts": _counts_section(spec, utterances, asr, rejects, found, classifier, extra.get("source_notes")),
        "rejects": _rejects_section(rejects),
        "utterances": _utterances_section(utterances),
        "asr_stage": _asr_section(asr, utterances),
        "classifier_stage": _classifier_section(classifier),
        "cross_sections": _cross_sections(
            utterances, min_group_size, extra.get("sentiment_agreement") or extra.get("agreement")
        ),
        "leakage": _leakage_section(utterances, rejects),
        "hours": _hours_section(utterances),
    }
    for stage, reason in empty_stage_reasons(utterances, asr, classifier, rejects, found, extra).items():
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




# The renderers live in their own modules; re-exported so `from tasks.publish.card import ...` keeps working.
from tasks.publish.markdown import _render_guards, render_markdown, render_summary  # noqa: E402
from tasks.publish.plots import PLOT_FILES, make_plots  # noqa: E402

__all__ = ["PLOT_FILES", "_render_guards", "build_card", "empty_stage_reasons", "fmt_hours", "make_plots",
           "render_markdown", "render_summary"]
