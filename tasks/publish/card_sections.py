"""The computed sections of the dataset card, each built from the merged partial aggregates.

`tasks.publish.aggregates` says what each part contributes; here the sums become the card's counts,
hours, cross-sections and recounts, with the same keys and values the frame-based card had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from manifests.schema import SENTIMENTS, SPLITS
from tasks.core import reduce
from tasks.publish.card_common import (
    CROSS_SECTION_COLUMNS,
    HUMAN_SENTIMENT_ORIGINS,
    HUMAN_TRANSCRIPT_ORIGINS,
    NON_SPEECH,
)

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
hours = reduce.hours


def ordered(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """Known values in their canonical order first, then the rest alphabetically (stable output)."""
    present = list(dict.fromkeys(values))
    first = [v for v in preferred if v in present]
    return first + sorted(v for v in present if v not in first)


def counts(tally: Mapping[str, int], preferred: Iterable[str] = ()) -> dict[str, int]:
    """Non-zero counts in `ordered` order."""
    return {k: int(tally[k]) for k in ordered((k for k, v in tally.items() if v), preferred)}


def sentiment_counts(tally: Mapping[str, int], extra_keys: Iterable[str] = ()) -> dict[str, int]:
    """Counts for every class (zeros included, so missing classes show), plus any other labels seen."""
    out = {s: int(tally.get(s, 0)) for s in SENTIMENTS}
    for key in extra_keys:
        out[key] = int(tally.get(key, 0))
    for key in sorted(k for k in tally if k not in out):
        out[key] = int(tally[key])
    return out


def _n(leaf: Any) -> int:
    return int(leaf[0]) if isinstance(leaf, list) else int(leaf)


def _ns(leaf: Any) -> int:
    return int(leaf[1]) if isinstance(leaf, list) else 0


def _flat(tally: Mapping[str, Any]) -> dict[str, int]:
    return {k: _n(v) for k, v in tally.items()}


def _sum_rows(nested: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """{row: {col: leaf}} -> {col: n} summed over rows."""
    out: dict[str, int] = {}
    for row in nested.values():
        for k, v in row.items():
            out[k] = out.get(k, 0) + _n(v)
    return out


def _sums(agg: Mapping[str, Any], name: str) -> dict[str, Any]:
    return agg["sums"].get(name, {})


def counts_section(spec: Any, agg: Mapping[str, Any], found: Mapping[str, int],
                   notes: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    by_source = _sums(agg, "cross").get("source", {})
    rej = _sums(agg, "rej_sr")
    excl_asr, excl_clf = _sums(agg, "excl_asr"), _sums(agg, "excl_clf")
    names = [s.name for s in spec.sources]
    for extra in (list(found), sorted(by_source), sorted(rej)):
        names.extend(n for n in extra if n not in names)
    sources: dict[str, dict[str, Any]] = {}
    for name in names:
        sent = by_source.get(name, {}).get("sent", {})
        accepted, rejected = sum(_n(v) for v in sent.values()), sum(rej.get(name, {}).values())
        n_found = found.get(name)
        sources[name] = {
            "found": None if n_found is None else int(n_found),
            "accepted": accepted,
            "rejected": int(rejected),
            "excluded_from_asr": sum(excl_asr.get(name, {}).values()),
            "excluded_from_classifier": int(excl_clf.get(name, 0)),
            "hours": hours(sum(_ns(v) for v in sent.values())),
            "accounted": n_found is not None and int(n_found) == accepted + rejected,
        }
        if (notes or {}).get(name):
            sources[name]["notes"] = list((notes or {})[name])
    totals = {key: sum(s[key] or 0 for s in sources.values())
              for key in ("found", "accepted", "rejected", "excluded_from_asr", "excluded_from_classifier")}
    totals["hours"] = hours(_sums(agg, "utt").get("ns", 0))
    totals["accounted"] = all(s["accounted"] for s in sources.values())
    return {"sources": sources, "totals": totals}


def reject_examples(agg: Mapping[str, Any], limit: int = 20) -> list[dict[str, Any]]:
    """Up to `limit` rows, round-robin over (source, reason), each group in (input_ref, stage) order."""
    groups = [recs for _, recs in sorted((agg["top"].get("reject_examples") or {"groups": {}})["groups"].items(),
                                         key=lambda kv: tuple(kv[0].split("\x1f", 1)))]
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < limit and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g) and len(picked) < limit:
                row = g[depth][1]
                picked.append({k: (row[k] or None) for k in ("source", "input_ref", "stage", "reason", "detail")})
        depth += 1
    return picked


def rejects_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    sr = _sums(agg, "rej_sr")
    return {
        "total": int(_sums(agg, "rej").get("n", 0)),
        "by_reason": counts(_sum_rows(sr)),
        "by_stage": counts(_sums(agg, "rej_stage")),
        "by_source_reason": {s: counts(sr[s]) for s in ordered(sr, ())},
        "examples": reject_examples(agg),
    }


def duration_stats(agg: Mapping[str, Any]) -> dict[str, float | None]:
    dur = _sums(agg, "dur")
    if not dur.get("n"):
        return {"min": None, "median": None, "mean": None, "max": None, "total_hours": 0.0}
    merged: dict[str, Any] | None = None
    for name, vm in agg["values"].items():
        if name.startswith("duration_s/"):
            merged = vm if merged is None else reduce.merge_values(merged, vm)
    lo, hi = agg["minmax"]["duration_s"]
    return {
        "min": round(float(lo), 3),
        "median": round(float(reduce.median(merged)), 3),  # type: ignore[arg-type]
        "mean": round(dur["ns"] / 1e9 / dur["n"], 3),
        "max": round(float(hi), 3),
        "total_hours": hours(dur["ns"]),
    }


def utterances_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    cross = _sums(agg, "cross")
    by_split, by_source = cross.get("split", {}), cross.get("source", {})
    return {
        "total": int(_sums(agg, "utt").get("n", 0)),
        "hours": hours(_sums(agg, "utt").get("ns", 0)),
        "by_split": {s: {"count": sum(_n(v) for v in by_split[s]["sent"].values()),
                         "hours": hours(sum(_ns(v) for v in by_split[s]["sent"].values()))}
                     for s in ordered(by_split, SPLITS)},
        "sentiment_by_split": {s: sentiment_counts(_flat(by_split[s]["sent"])) for s in ordered(by_split, SPLITS)},
        "label_origins": {
            "transcript_origin": counts(_sum_rows({g: v["to"] for g, v in by_source.items()})),
            "sentiment_origin": counts(_sum_rows({g: v["so"] for g, v in by_source.items()})),
        },
        "duration_s": duration_stats(agg),
        "languages": counts(_sums(agg, "language")),
        "licenses_by_source": {s: counts(_sums(agg, "license").get(s, {})) for s in ordered(by_source, ())},
    }


def _balanced(tally: dict[str, int]) -> bool | None:
    """Train sentiment counts equal within rounding (classes absent from the data are ignored)."""
    present = [tally.get(s, 0) for s in SENTIMENTS if tally.get(s, 0) > 0]
    return None if not present else max(present) - min(present) <= 1


def asr_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    a, ss = _sums(agg, "asr"), _sums(agg, "asr_ss")
    by_split_sentiment = {s: sentiment_counts(_flat(ss[s])) for s in ordered(ss, SPLITS)}
    train = by_split_sentiment.get("train", {})
    u_splits = _sums(agg, "cross").get("split", {})
    excluded = _sum_rows(_sums(agg, "excl_asr"))
    src = _sums(agg, "asr_src")
    return {
        "rows": int(a.get("rows", 0)),
        "unique_utterances": int(a.get("unique", 0)),
        "hours": hours(a.get("ns", 0)),
        "hours_by_split": {s: hours(sum(_ns(v) for v in ss[s].values())) for s in ordered(ss, SPLITS)},
        "by_split_sentiment": by_split_sentiment,
        "train_balanced": _balanced(train),
        "train_missing_classes": [s for s in SENTIMENTS if train.get(s, 0) == 0] if train else list(SENTIMENTS),
        "by_source_sentiment": {s: sentiment_counts(src[s]) for s in ordered(src, ())},
        "excluded_by_split": {s: int(excluded.get(s, 0)) for s in ordered(u_splits, SPLITS)},
        "recipe_applied": int(a.get("recipe", 0)),
    }


def classifier_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    c, ss, sp = _sums(agg, "clf"), _sums(agg, "clf_ss"), _sums(agg, "clf_speech")
    weights: dict[str, dict[str, float | None]] = {}
    if agg["flags"].get("clf_class_weight"):
        w = _sums(agg, "clf_w")
        for s in ordered(ss, SPLITS):
            row = w.get(s, {})
            weights[s] = {k: (round(row[k][2] / 1e12 / row[k][1], 6) if row[k][1] else None)
                          for k in ordered(row, SENTIMENTS)}
    return {
        "windows": int(c.get("windows", 0)),
        "by_split_sentiment": {s: sentiment_counts(ss[s], [NON_SPEECH]) for s in ordered(ss, SPLITS)},
        "speech": {
            "speech": sum(v.get("speech", 0) for v in sp.values()),
            "non_speech": sum(v.get("non_speech", 0) for v in sp.values()),
            "by_split": {s: {"speech": int(sp.get(s, {}).get("speech", 0)),
                             "non_speech": int(sp.get(s, {}).get("non_speech", 0))} for s in ordered(ss, SPLITS)},
        },
        "valid_hours": hours(c.get("valid_ns", 0)),
        "class_weights": weights,
    }


def _origin_counts(tally: Mapping[str, int], human: frozenset[str]) -> dict[str, Any]:
    """Counts per origin plus how many came from a person (the rest are pseudo-labels)."""
    by_origin = counts(tally)
    return {"by_origin": by_origin, "human": sum(n for o, n in by_origin.items() if o in human)}


def agreement_by_group(agreement: Mapping[str, Any] | None) -> dict[str, Any]:
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


def cross_sections(agg: Mapping[str, Any], min_group_size: int, agreement: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """Counts, hours, sentiment, label origin and (where measured) agreement per group."""
    by_group = agreement_by_group(agreement)
    out: dict[str, Any] = {"min_group_size": min_group_size}
    for column in CROSS_SECTION_COLUMNS:
        table = _sums(agg, "cross").get(column, {})
        per_group = by_group.get(f"by_{column}")
        groups: dict[str, Any] = {}
        for g in ordered(table, SPLITS if column == "split" else ()):
            sent = table[g]["sent"]
            n = sum(_n(v) for v in sent.values())
            groups[g] = {
                "count": n,
                "hours": hours(sum(_ns(v) for v in sent.values())),
                "sentiment": sentiment_counts(_flat(sent)),
                "label_origin": {
                    "sentiment": _origin_counts(table[g]["so"], HUMAN_SENTIMENT_ORIGINS),
                    "transcript": _origin_counts(table[g]["to"], HUMAN_TRANSCRIPT_ORIGINS),
                },
                "small": n < min_group_size,
            }
            if isinstance(per_group, Mapping) and g in per_group:
                groups[g]["agreement"] = per_group[g]
        out[column] = groups
    return out


def _key_recount(agg: Mapping[str, Any]) -> tuple[int, int]:
    """(segment keys in two splits, segment keys repeated) from the 64-bit key hashes of every part."""
    return reduce.recount_keys(agg["hashes"].get("segment_keys", {}))


def leakage_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    """Duplicate segments resolved (counted per source) and a recount of cross-split leakage."""
    dups = {s: r.get("duplicate_segment", 0) for s, r in _sums(agg, "rej_sr").items()}
    two_splits, repeated = _key_recount(agg)
    return {
        "duplicate_segments_resolved": sum(dups.values()),
        "duplicates_by_source": counts(dups),
        "segment_keys_in_two_splits": two_splits,
        "segment_keys_repeated": repeated,
        "rule": DUPLICATE_RULE,
        "limitation": DUPLICATE_LIMITATION,
    }


def hours_section(agg: Mapping[str, Any]) -> dict[str, Any]:
    """Hours of accepted audio per source x split x class: what a training lead weighs first."""
    sss = _sums(agg, "utt_sss")
    return {"by_source_split_sentiment": {
        s: {sp: {c: hours(_ns(sss[s][sp][c])) for c in ordered(sss[s][sp], SENTIMENTS)}
            for sp in ordered(sss[s], SPLITS)}
        for s in ordered(sss, ())}}


def _top_reasons(agg: Mapping[str, Any], n: int = 3) -> str:
    """The most common reject reasons with counts and one example detail, for an empty-stage reason."""
    reasons = sorted(_sum_rows(_sums(agg, "rej_sr")).items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{r} {int(c)}" for r, c in reasons[:n])
    if reasons:
        top = reasons[0][0]
        groups = (agg["top"].get("reject_examples") or {"groups": {}})["groups"]
        firsts = sorted((g.split("\x1f", 1)[0], recs[0][0], recs[0][1]["detail"]) for g, recs in groups.items()
                        if g.split("\x1f", 1)[1] == top and recs)
        if firsts and firsts[0][2]:
            text += f"; e.g. {firsts[0][2]}"
    return text


def empty_stage_reasons(agg: Mapping[str, Any], found: Mapping[str, int], extra: Mapping[str, Any]) -> dict[str, str]:
    """Why a stage has no utterance rows, per stage ("asr_stage", "classifier_stage"); {} when neither is empty.

    A release may legitimately hold an empty stage (the contract allows empty tables); the card must
    then say why, so nobody mistakes it for a bug or trains on nothing. Classifier windows cut from
    noise files are not utterance rows: a stage holding only those counts as empty.
    """
    n_utt, clf = int(_sums(agg, "utt").get("n", 0)), _sums(agg, "clf")
    empty = {"asr_stage": not _sums(agg, "asr").get("rows"), "classifier_stage": not clf.get("utterance_windows")}
    if not any(empty.values()):
        return {}
    n_found = sum(int(v) for v in found.values())
    why = ""
    if n_utt == 0:
        why = ("the sources hold no items (found 0): check each source's path and kind" if n_found == 0 else
               f"no utterance was accepted: all {n_found} found item(s) were rejected ({_top_reasons(agg)})")
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
                f"all {n_utt} accepted utterance(s) were left out of the ASR stage"
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
            reason = (f"all {n_utt} accepted utterance(s) were left out of the classifier stage"
                      + (f" ({ineligible} by label-origin eligibility rules)" if ineligible else "")
                      + (f" ({implausible} outside the plausibility limits)" if implausible else ""))
        noise = int(clf.get("windows", 0)) - int(clf.get("utterance_windows", 0))
        if noise:
            reason += f"; it holds only {noise} non-speech window(s) cut from noise files"
        reasons["classifier_stage"] = reason
    return reasons
