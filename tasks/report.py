"""The dataset card: what a data engineer and a training lead read to trust a release.

`build_card` turns the final manifests into one JSON-serialisable dict (counts that prove
found = accepted + rejected, distributions that expose balance and confounds, and the sections
stages computed themselves), `render_markdown` makes it readable, and `make_plots` draws the few
pictures that make imbalance obvious at a glance. Everything is derived from the tables handed in,
so a rebuilt release gets the same card (apart from `built_at`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import CLASS_INDEX, SENTIMENTS, SPLITS
from tasks.spec import DatasetSpec

UNKNOWN = "unknown"
NON_SPEECH = "non_speech"
DEFAULT_MIN_GROUP_SIZE = 20
MAX_REJECT_EXAMPLES = 20
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
_FRONT_SECTIONS: frozenset[str] = frozenset({"guards"})
_EXTRA_TITLES: dict[str, str] = {
    "balance": "ASR-stage balancing",
    "eligibility": "Eligibility (label origins each stage and split may use)",
    "agreement": "Pseudo-label agreement with human labels",
    "weights": "Class weights (weighting stage)",
    "labelers": "Labelers",
    "transcript_quality": "Transcript quality (WER vs human)",
    "sentiment_agreement": "Sentiment agreement",
    "augment": "Augmentation",
    "segments": "Classifier windows",
    "speech_detection": "Speech detection (which detector decided, per source and emotion)",
    "timings": "Timings (seconds per stage)",
    "lineage": "Lineage",
}
# Keys of `extra` that parameterise the card instead of being sections.
# `source_notes` ({source: [sentence, ...]} from the adapters) goes into counts.sources.<name>.notes.
_EXTRA_PARAMETERS: frozenset[str] = frozenset({"min_group_size", "source_notes"})
PLOT_FILES: tuple[str, ...] = (
    "sentiment_distribution.png",
    "duration_histogram.png",
    "source_by_sentiment.png",
    "groups.png",
    "label_origins.png",
)
# Origins that come from a person (a mapped emotion is a human annotation); the rest are pseudo-labels.
HUMAN_SENTIMENT_ORIGINS: frozenset[str] = frozenset({"human", "mapped_emotion"})
HUMAN_TRANSCRIPT_ORIGINS: frozenset[str] = frozenset({"human"})
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
_COLOURS: dict[str, str] = {
    "negative": "#c0392b",
    "neutral": "#7f8c8d",
    "positive": "#27ae60",
    NON_SPEECH: "#34495e",
}


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


def fmt_hours(hours: float) -> str:
    """Hours for people: minutes below a tenth of an hour, so a small source never reads "0.00 h"."""
    hours = float(hours or 0.0)
    if 0 < hours < 0.1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.2f} h"


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

    Reads `tasks.sentiment.agreement`'s shape (`labelers.<name>.per_source.<source>` scores) and
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
    return _jsonable(card)


# ----------------------------------------------------------------------------- Markdown


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list | dict):
        value = json.dumps(value, separators=(",", ":"))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(n: int, total: int) -> str:
    return f"{n} ({100.0 * n / total:.0f}%)" if total else str(n)


def _matrix(title: str, data: dict[str, dict[str, int]]) -> str:
    """Rows x classes with row shares, the shape used for every split/source x sentiment table."""
    if not data:
        return "_no rows_"
    cols = list(dict.fromkeys(c for row in data.values() for c in row))
    rows = []
    for name, row in data.items():
        total = sum(row.values())
        rows.append([name] + [_pct(row.get(c, 0), total) for c in cols] + [total])
    return _table([title] + cols + ["total"], rows)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return [(prefix, ", ".join(_cell(v) for v in value))]
    return [(prefix, value)]


def _example_line(example: Mapping[str, Any], max_chars: int = 300) -> str:
    detail = str(example.get("detail") or "")
    detail = detail if len(detail) <= max_chars else detail[: max_chars - 3] + "..."
    return f"  - {example.get('source')}: `{example.get('input_ref')}` ({example.get('reason')}): {detail}"


def render_summary(card: dict[str, Any], examples_below: bool = False, max_examples: int = 0) -> str:
    """A few sentences: where the data came from, how much, which classes, what was rejected and why.

    Reject examples: `examples_below` when the caller prints the card's examples table after the
    summary (the Markdown card); else up to `max_examples` of them are listed under the Rejected line
    (the console), or, with 0, the summary points at the dataset card.
    """
    counts, totals = card["counts"]["sources"], card["counts"]["totals"]
    utt, asr, clf, rej = card["utterances"], card["asr_stage"], card["classifier_stage"], card["rejects"]
    classes = ", ".join(f"{k} = {v}" for k, v in card["class_index"].items())
    kinds = {src["name"]: src["kind"] for src in card.get("spec", {}).get("sources", [])}
    sources = ", ".join(
        f"{n}"
        + (f" [{kinds[n]}]" if n in kinds else "")
        + f" ({s['accepted']} utterances, {fmt_hours(s['hours'])})"
        for n, s in counts.items()
    )
    lines = [
        f"- **Sources**: {sources or 'none'}.",
        f"- **Accepted**: {totals['accepted']} of {totals['found']} found items, {fmt_hours(totals['hours'])}; "
        f"splits: "
        + ", ".join(f"{s} {v['count']} ({fmt_hours(v['hours'])})" for s, v in utt["by_split"].items())
        + ".",
        f"- **Classes** (class index): {classes}.",
    ]
    if rej["total"]:
        reasons = ", ".join(f"{r} {n}" for r, n in rej["by_reason"].items())
        examples = list(rej.get("examples") or [])[:max_examples] if not examples_below else []
        if examples_below:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); examples below.")
        elif examples:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); for example:")
            lines += [_example_line(e) for e in examples]
        else:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); examples in the dataset card (Rejects).")
    else:
        lines.append("- **Rejected**: none.")
    balanced = {True: "balanced", False: "NOT balanced", None: "empty"}[asr["train_balanced"]]
    lines.append(
        f"- **ASR stage**: {asr['rows']} rows ({fmt_hours(asr['hours'])}), train split {balanced}; "
        f"{totals['excluded_from_asr']} accepted utterances left out by sampling or eligibility."
    )
    both_empty = bool(asr.get("empty_reason")) and asr.get("empty_reason") == clf.get("empty_reason")
    if both_empty:
        lines.append(f"- **Both stages are empty**: {asr['empty_reason']}.")
    elif asr.get("empty_reason"):
        lines.append(f"- **ASR stage is empty**: {asr['empty_reason']}.")
    eligibility = card.get("eligibility") or {}
    ineligible = {
        stage: int(((eligibility.get(stage) or {}).get("total")) or 0) for stage in ("asr", "classifier")
    }
    if any(ineligible.values()):
        lines.append(
            f"- **Eligibility**: {ineligible['asr']} utterances excluded from the ASR stage and "
            f"{ineligible['classifier']} from the classifier stage by label-origin rules (exclusions, not rejects)."
        )
    lines.append(
        f"- **Classifier stage**: {clf['windows']} windows ({clf['speech']['speech']} speech, "
        f"{clf['speech']['non_speech']} non-speech)."
    )
    if clf.get("empty_reason") and not both_empty:
        lines.append(f"- **Classifier stage has no utterance windows**: {clf['empty_reason']}.")
    for name, src in counts.items():
        lines += [f"- **Note** ({name}): {note}" for note in src.get("notes") or []]
    leak = card.get("leakage")
    if leak:
        lines.append(
            f"- **Leakage**: {leak['duplicate_segments_resolved']} duplicate segments resolved "
            f"(`duplicate_segment` rejects); {leak['segment_keys_in_two_splits']} segment keys in two splits."
        )
    bad = [n for n, s in counts.items() if not s["accounted"]]
    if bad:
        lines.append(f"- **WARNING**: found != accepted + rejected for: {', '.join(bad)}.")
    else:
        lines.append("- Every found item is accounted for (found = accepted + rejected per source).")
    return "\n".join(lines)


_CORE_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "release",
        "built_at",
        "seed",
        "spec",
        "class_index",
        "counts",
        "rejects",
        "utterances",
        "asr_stage",
        "classifier_stage",
        "cross_sections",
        "leakage",
        "schema_version",
        "content_sha256",
    }
)


_HOW_TO_USE = """\
- Read the manifests with `manifests/` (the reference reader); class index: negative = 0,
  neutral = 1, positive = 2. Two releases are equal when their `content_sha256` are equal.
- **ASR stage**: train on `target_text` (sentiment word, a space, the transcript). The train split is
  sampled to a uniform sentiment distribution; dev and test keep their natural distribution.
- **Classifier stage**: each row is a window (`start_s`..`end_s` in utterance time). Use
  `class_weight` **either** as a per-sample weight in the loss **or** as the weights of a weighted
  sampler, **not both** (that corrects the imbalance twice and over-favours rare classes).
  Non-speech windows have a null `sentiment`, `speech_present = false` and weight 1.0: use them for the
  speech-presence head and mask them out of the sentiment loss.
- **`recipe_applied`**: true means `audio_uri` is already the augmented audio: read it as is and do
  not apply the recipe again. False means `audio_uri` is the clean source: apply the recipe
  (`speed`, `rir_id`, `noise_id`, `snr_db`, `gain`, `aug_seed`) on the fly with
  `manifests.augmentation`, or use the clean audio. SpecAugment (see Augmentation) is always applied
  in the training job, never stored. A relative `audio_uri` (`audio/...`) is relative to this release's
  folder, wherever it now lies (`manifests.release.open_release` resolves it).
- Groups marked *small* in the cross-sections have fewer rows than the card's `min_group_size`:
  per-group metrics on them are noise."""


def _render_guards(records: list[dict[str, Any]]) -> list[str]:
    """Warnings first and loud; guards that acted as documented (infos) in a short table after them."""
    out: list[str] = []
    loud = [r for r in records if r.get("level") in ("error", "warning")]
    if loud:
        out += ["", "## ⚠ Warnings", ""]
        out += [f"- **{r['level'].upper()} `{r['guard']}`**: {r['message']}" for r in loud]
    quiet = [r for r in records if r.get("level") == "info"]
    if quiet:
        out += ["", "## Guards that acted", "", _table(["guard", "what happened"],
                                                      [[f"`{r['guard']}`", r["message"]] for r in quiet])]
    return out


def render_markdown(card: dict[str, Any], plot_files: list[str]) -> str:
    """The card as Markdown: summary first, then tables, plots (relative `plots/` links) and usage."""
    out = [f"# Dataset card: {card['name']}", ""]
    header = [
        ("release", card.get("release")),
        ("built at (UTC)", card.get("built_at")),
        ("seed", card.get("seed")),
    ]
    for key in ("schema_version", "content_sha256"):
        if key in card:
            header.append((key, f"`{card[key]}`" if key == "content_sha256" else card[key]))
    out += [f"- **{k}**: {v}" for k, v in header]
    out += _render_guards(card.get("guards") or [])
    out += ["", "## Summary", "", render_summary(card, examples_below=True), ""]

    counts = card["counts"]
    rows = [
        [n, s["found"], s["accepted"], s["rejected"], s["excluded_from_asr"], s.get("excluded_from_classifier"),
         s["hours"], s["accounted"]]
        for n, s in counts["sources"].items()
    ]
    t = counts["totals"]
    rows.append(
        [
            "**total**",
            t["found"],
            t["accepted"],
            t["rejected"],
            t["excluded_from_asr"],
            t.get("excluded_from_classifier"),
            t["hours"],
            t["accounted"],
        ]
    )
    out += [
        "## Sources",
        "",
        _table(["source", "found", "accepted", "rejected", "excluded from ASR", "excluded from classifier",
                "hours", "accounted"], rows),
        "",
    ]
    inputs = card.get("spec", {}).get("sources", [])
    if inputs:
        out += ["Inputs:", ""]
        out += [f"- `{src['name']}`: {src['kind']} corpus at `{src['path']}`" for src in inputs]
        out += [""]
    notes = [(n, note) for n, s in counts["sources"].items() for note in s.get("notes") or []]
    if notes:
        out += ["Notes:", ""]
        out += [f"- `{n}`: {note}" for n, note in notes]
        out += [""]

    rej = card["rejects"]
    out += ["## Rejects", ""]
    if rej["total"]:
        reasons = list(rej["by_reason"])
        out += [
            _table(
                ["source"] + reasons + ["total"],
                [
                    [s] + [r.get(k, 0) for k in reasons] + [sum(r.values())]
                    for s, r in rej["by_source_reason"].items()
                ],
            ),
            "",
            "Examples:",
            "",
        ]
        out += [
            _table(
                ["source", "input_ref", "reason", "detail"],
                [[e["source"], e["input_ref"], e["reason"], e["detail"]] for e in rej["examples"]],
            ),
            "",
        ]
    else:
        out += ["No rejects.", ""]

    utt = card["utterances"]
    out += [
        "## Utterances",
        "",
        _table(
            ["split", "utterances", "hours"],
            [[s, v["count"], v["hours"]] for s, v in utt["by_split"].items()],
        ),
        "",
        "Sentiment by split:",
        "",
        _matrix("split", utt["sentiment_by_split"]),
        "",
    ]
    origins = [["transcript_origin", k, n] for k, n in utt["label_origins"]["transcript_origin"].items()]
    origins += [["sentiment_origin", k, n] for k, n in utt["label_origins"]["sentiment_origin"].items()]
    d = utt["duration_s"]
    out += [
        "Label origins:",
        "",
        _table(["label", "origin", "utterances"], origins),
        "",
        f"Duration (s): min {_cell(d['min'])}, median {_cell(d['median'])}, mean {_cell(d['mean'])}, "
        f"max {_cell(d['max'])}.",
        "",
    ]

    asr = card["asr_stage"]
    out += [
        "## ASR stage",
        "",
        f"{asr['rows']} rows, {fmt_hours(asr['hours'])}, {asr['recipe_applied']} with recipe applied."
        + (f" **Empty**: {asr['empty_reason']}." if asr.get("empty_reason") else ""),
        "",
        _matrix("split", asr["by_split_sentiment"]),
        "",
        "Source x sentiment (look for confounds: a source that carries one class):",
        "",
        _matrix("source", asr["by_source_sentiment"]),
        "",
    ]

    clf = card["classifier_stage"]
    out += [
        "## Classifier stage",
        "",
        f"{clf['windows']} windows ({fmt_hours(clf['valid_hours'])} of real audio)."
        + (f" **No utterance windows**: {clf['empty_reason']}." if clf.get("empty_reason") else ""),
        "",
        _matrix("split", clf["by_split_sentiment"]),
        "",
    ]
    if clf["class_weights"]:
        classes = list(dict.fromkeys(c for w in clf["class_weights"].values() for c in w))
        out += [
            "Class weights (speech windows):",
            "",
            _table(
                ["split"] + classes,
                [[s] + [w.get(c) for c in classes] for s, w in clf["class_weights"].items()],
            ),
            "",
        ]

    cross = card["cross_sections"]
    out += [
        "## Cross-sections",
        "",
        f"Groups with fewer than {cross['min_group_size']} utterances are marked small.",
        "",
    ]
    out += [
        "Label origin: *human sentiment* counts human and mapped-emotion labels, *human transcript* human "
        "transcripts; the rest are pseudo-labels.",
        "",
    ]
    for column in CROSS_SECTION_COLUMNS:
        groups = cross.get(column, {})
        with_agreement = any("agreement" in v for v in groups.values())
        rows = []
        for g, v in groups.items():
            origin = v.get("label_origin") or {}
            row = [g, v["count"], v["hours"]] + [v["sentiment"].get(s, 0) for s in SENTIMENTS]
            row += [_pct((origin.get("sentiment") or {}).get("human", 0), v["count"]),
                    _pct((origin.get("transcript") or {}).get("human", 0), v["count"])]
            row += [v.get("agreement")] if with_agreement else []
            rows.append(row + [v["small"]])
        header = [column, "utterances", "hours", *SENTIMENTS, "human sentiment", "human transcript"]
        header += ["agreement"] if with_agreement else []
        out += [f"### By {column}", "", _table(header + ["small"], rows), ""]

    leak = card.get("leakage")
    if leak:
        out += [
            "## Leakage",
            "",
            f"- Duplicate segments resolved: {leak['duplicate_segments_resolved']}"
            + (f" ({', '.join(f'{k} {n}' for k, n in leak['duplicates_by_source'].items())})"
               if leak["duplicates_by_source"] else "")
            + f"; segment keys in two splits: {leak['segment_keys_in_two_splits']}.",
            f"- Rule: {leak['rule']}.",
            f"- Limitation: {leak['limitation']}.",
            "",
        ]

    if plot_files:
        out += ["## Plots", ""]
        out += [f"![{Path(p).stem.replace('_', ' ')}](plots/{Path(p).name})" for p in plot_files]
        out += [""]

    known = set(EXTRA_SECTIONS)
    extras = [k for k in EXTRA_SECTIONS if k in card]
    extras += [k for k in card if k not in known and k not in _CORE_KEYS and k not in _FRONT_SECTIONS]
    for key in extras:
        title = _EXTRA_TITLES.get(key, key.replace("_", " ").capitalize())
        pairs = _flatten(card[key])
        body = (
            _table(["field", "value"], [list(p) for p in pairs])
            if pairs and pairs != [("", card[key])]
            else _cell(card[key])
        )
        out += [f"## {title}", "", body, ""]

    out += ["## How to use", "", _HOW_TO_USE, ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- plots


def _figure(nrows: int = 1, ncols: int = 1) -> tuple[Any, Any]:
    """A 600x400 px figure on the Agg canvas, without pyplot (thread-safe, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path) -> str:
    # No Software/date chunks: identical data gives identical bytes.
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return str(path)


def _integer_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _stacked(
    ax: Any, table: dict[str, dict[str, int]], title: str, classes: Iterable[str] = SENTIMENTS
) -> None:
    ax.set_title(title, fontsize=9)
    if not table:
        _no_data(ax)
        return
    names = list(table)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for c in classes:
        vals = np.array([table[n].get(c, 0) for n in names], dtype=float)
        if vals.any():
            ax.bar(x, vals, bottom=bottom, label=c, color=_COLOURS.get(c))
            bottom += vals
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    _integer_ticks(ax)
    ax.legend(fontsize=6)


def _plot_sentiment_distribution(utterances: pd.DataFrame, asr: pd.DataFrame, path: Path) -> str:
    before = _cross_counts(utterances, "split", preferred_rows=SPLITS)
    after = _cross_counts(asr, "split", preferred_rows=SPLITS)
    splits = _ordered(list(before) + list(after), SPLITS)
    fig, axes = _figure(1, max(1, len(splits)))
    if not splits:
        _no_data(axes[0][0])
    x = np.arange(len(SENTIMENTS))
    for ax, split in zip(axes[0], splits, strict=False):
        b = [before.get(split, {}).get(s, 0) for s in SENTIMENTS]
        a = [after.get(split, {}).get(s, 0) for s in SENTIMENTS]
        ax.bar(x - 0.2, b, width=0.4, label="utterances", color="#bdc3c7")
        ax.bar(x + 0.2, a, width=0.4, label="ASR stage", color=[_COLOURS[s] for s in SENTIMENTS])
        ax.set_title(split, fontsize=9)
        ax.set_xticks(x, [s[:3] for s in SENTIMENTS], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        _integer_ticks(ax)
    if splits:
        axes[0][0].legend(fontsize=6)
    fig.suptitle("Sentiment per split: utterances (grey) vs ASR stage after balancing", fontsize=9)
    return _save(fig, path)


def _plot_duration_histogram(utterances: pd.DataFrame, path: Path) -> str:
    fig, axes = _figure()
    ax = axes[0][0]
    dur = _durations(utterances)
    if dur.empty:
        _no_data(ax)
    else:
        split = _labels(utterances.loc[dur.index], "split")
        names = _ordered(split, SPLITS)
        ax.hist([dur[split == s].to_numpy() for s in names], bins=30, stacked=True, label=names)
        ax.legend(fontsize=7)
        ax.set_xlabel("utterance duration (s)", fontsize=8)
        ax.set_ylabel("utterances", fontsize=8)
    ax.set_title("Utterance durations", fontsize=10)
    return _save(fig, path)


def _plot_source_by_sentiment(utterances: pd.DataFrame, asr: pd.DataFrame, path: Path) -> str:
    fig, axes = _figure(1, 2)
    _stacked(axes[0][0], _cross_counts(utterances, "source"), "utterances")
    _stacked(axes[0][1], _cross_counts(asr, "source"), "ASR stage")
    fig.suptitle("Sentiment by source (confounds)", fontsize=10)
    return _save(fig, path)


def _plot_groups(card: dict[str, Any], path: Path) -> str:
    fig, axes = _figure(1, 3)
    for ax, column in zip(axes[0], ("gender", "age_bucket", "accent"), strict=True):
        groups = card["cross_sections"].get(column, {})
        table = {(f"{g}*" if v["small"] else g): v["sentiment"] for g, v in groups.items()}
        _stacked(ax, table, column)
    fig.suptitle(
        f"Utterances by group (* = fewer than {card['cross_sections']['min_group_size']})", fontsize=10
    )
    return _save(fig, path)


def _plot_label_origins(utterances: pd.DataFrame, path: Path) -> str:
    fig, axes = _figure(1, 2)
    for ax, column, title in zip(axes[0], ("sentiment_origin", "transcript_origin"),
                                 ("sentiment origin", "transcript origin"), strict=True):
        rows, origins = _labels(utterances, "source"), _labels(utterances, column)
        table = {r: _counts(origins[rows == r]) for r in _ordered(rows, ())}
        _stacked(ax, table, title, classes=_ordered(origins, ("human", "mapped_emotion")))
    fig.suptitle("Label origin by source (human vs pseudo-labels)", fontsize=10)
    return _save(fig, path)


def make_plots(card: dict[str, Any], utterances: pd.DataFrame, asr: pd.DataFrame, out_dir: str) -> list[str]:
    """Write the PNGs into the local folder `out_dir` (created); return their paths in PLOT_FILES order.

    Group plots read the card so their small-group marks match its tables; the rest read the frames.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dist, hist, source, groups, origins = (folder / name for name in PLOT_FILES)
    return [
        _plot_sentiment_distribution(utterances, asr, dist),
        _plot_duration_histogram(utterances, hist),
        _plot_source_by_sentiment(utterances, asr, source),
        _plot_groups(card, groups),
        _plot_label_origins(utterances, origins),
    ]
