"""Per-part partial aggregates of a release, merged into what the card and the plots are built from.

`shard_aggregates` summarises one manifest part (the rows of one shard: its utterances, their ASR
and classifier rows, its rejects) into a small JSON-able reduction (`tasks.core.reduce`);
`merge_aggregates` merges any number of them, in any order and grouping, to the same result. The
card (`tasks.publish.card.build_card_from_aggregates`) and the plots
(`tasks.publish.plots.make_plots_from_aggregates`) read only the merged aggregate, so no process
holds a whole table. Rule: every ASR and classifier row of an utterance lies in that utterance's
part (parts follow shards); rows of no utterance (noise windows, ingest rejects) may be anywhere.
See docs/scaling.md ("Card and plots from partial aggregates").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from tasks.core import reduce
from tasks.publish.card_common import CROSS_SECTION_COLUMNS, NON_SPEECH, UNKNOWN

AGGREGATE_VERSION = 1
MAX_REJECT_EXAMPLES = 20
DURATION_BIN_S = 0.01  # duration histograms: exact below reduce.VALUE_CAP values, then 10 ms bins
AUGMENT_BINS = {"snr_db": 0.01, "speed": 0.0001}
REJECT_EXAMPLE_COLUMNS = ("source", "input_ref", "stage", "reason", "detail")


def labels(df: pd.DataFrame | None, column: str, null: str = UNKNOWN) -> pd.Series:
    """A column as plain Python strings with nulls named, so groupings never drop rows silently."""
    if df is None:
        return pd.Series(dtype=object)
    if column not in df.columns:
        return pd.Series([null] * len(df), index=df.index, dtype=object)
    col = df[column]
    if isinstance(col.dtype, pd.StringDtype):  # str values already: only the nulls to name
        return pd.Series(col.to_numpy(dtype=object, na_value=null), index=col.index, dtype=object)
    return col.astype(object).where(col.notna(), null).map(str).astype(object)


def _frame(**columns: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({k: v.to_numpy() for k, v in columns.items()}, dtype=object)  # labels: no str inference


def _speech(classifier: pd.DataFrame) -> pd.Series:
    if "speech_present" in classifier.columns:
        return classifier["speech_present"].fillna(False).astype(bool)
    return labels(classifier, "sentiment", null=NON_SPEECH) != NON_SPEECH


def _utterance_part(utterances: pd.DataFrame, asr: pd.DataFrame, classifier: pd.DataFrame) -> dict[str, Any]:
    sums: dict[str, Any] = {}
    src, split, sent = labels(utterances, "source"), labels(utterances, "split"), labels(utterances, "sentiment")
    nsec = reduce.ns_series(utterances["duration_s"]) if "duration_s" in utterances.columns \
        else pd.Series(0, index=utterances.index, dtype="int64")
    sums["utt"] = {"n": len(utterances), "ns": int(nsec.sum())}
    sums["utt_sss"] = reduce.nested_counts(_frame(a=src, b=split, c=sent), ["a", "b", "c"], {"ns": nsec})
    cross: dict[str, Any] = {}
    # each column factorized once, not once per cross-section it takes part in
    sent_f, so_f, to_f = (reduce.factorized(c) for c in (sent, labels(utterances, "sentiment_origin"),
                                                           labels(utterances, "transcript_origin")))
    known = {"source": src, "split": split}
    for column in CROSS_SECTION_COLUMNS:
        values = reduce.factorized(known[column] if column in known else labels(utterances, column))
        sent_counts = reduce.nested_counts_of([values, sent_f], {"ns": nsec})
        so = reduce.nested_counts_of([values, so_f])
        to = reduce.nested_counts_of([values, to_f])
        cross[column] = {v: {"sent": sent_counts[v], "so": so[v], "to": to[v]} for v in sent_counts}
    sums["cross"] = cross
    sums["license"] = reduce.nested_counts(_frame(a=src, b=labels(utterances, "license")), ["a", "b"])
    sums["language"] = reduce.nested_counts(_frame(a=labels(utterances, "language")), ["a"])
    ids = labels(utterances, "utterance_id")
    not_asr = ~ids.isin(set(labels(asr, "utterance_id")))
    sums["excl_asr"] = reduce.nested_counts(_frame(a=src[not_asr], b=split[not_asr]), ["a", "b"])
    not_clf = ~ids.isin(set(labels(classifier, "utterance_id")))
    sums["excl_clf"] = reduce.nested_counts(_frame(a=src[not_clf]), ["a"])
    values: dict[str, Any] = {}
    minmax: dict[str, Any] = {"duration_s": [None, None]}
    if "duration_s" in utterances.columns:
        dur = pd.to_numeric(utterances["duration_s"], errors="coerce")
        known = dur.notna()
        sums["dur"] = {"n": int(known.sum()), "ns": int(reduce.ns_series(dur[known]).sum())}
        if known.any():
            minmax["duration_s"] = [float(dur[known].min()), float(dur[known].max())]
        for s in sorted(set(split[known])):
            values[f"duration_s/{s}"] = reduce.value_counts(dur[known & (split == s)], DURATION_BIN_S)
    keys = labels(utterances, "segment_key")
    known_keys = keys != UNKNOWN
    hashes = {"segment_keys": {s: reduce.key_hashes(keys[known_keys & (split == s)])
                               for s in sorted(set(split[known_keys]))}}
    return {"sums": sums, "values": values, "minmax": minmax, "hashes": hashes}


def _asr_part(asr: pd.DataFrame) -> dict[str, Any]:
    split, sent, src = labels(asr, "split"), labels(asr, "sentiment"), labels(asr, "source")
    nsec = reduce.ns_series(asr["duration_s"]) if "duration_s" in asr.columns \
        else pd.Series(0, index=asr.index, dtype="int64")
    ids = set(labels(asr, "utterance_id")) - {UNKNOWN}
    recipe = int(asr["recipe_applied"].fillna(False).astype(bool).sum()) if "recipe_applied" in asr.columns else 0
    train = asr[split == "train"]
    values = {}
    for column, q in AUGMENT_BINS.items():
        col = pd.to_numeric(train[column], errors="coerce") if column in train.columns else pd.Series(dtype=float)
        values[f"asr_train/{column}"] = reduce.value_counts(col.dropna(), q)
    sums = {
        "asr": {"rows": len(asr), "unique": len(ids) if len(asr) else 0, "ns": int(nsec.sum()), "recipe": recipe,
                "train_rows": len(train)},
        "asr_ss": reduce.nested_counts(_frame(a=split, b=sent), ["a", "b"], {"ns": nsec}),
        "asr_src": reduce.nested_counts(_frame(a=src, b=sent), ["a", "b"]),
    }
    return {"sums": sums, "values": values}


def _classifier_part(classifier: pd.DataFrame) -> dict[str, Any]:
    split, src = labels(classifier, "split"), labels(classifier, "source")
    sent = labels(classifier, "sentiment", null=NON_SPEECH)
    speech = _speech(classifier)
    valid = reduce.ns_series(classifier["valid_s"]) if "valid_s" in classifier.columns \
        else pd.Series(0, index=classifier.index, dtype="int64")
    utterance_windows = int((src != "noise").sum()) if "source" in classifier.columns else len(classifier)
    sums: dict[str, Any] = {
        "clf": {"windows": len(classifier), "valid_ns": int(valid.sum()), "utterance_windows": utterance_windows},
        "clf_ss": reduce.nested_counts(_frame(a=split, b=sent), ["a", "b"]),
        "clf_speech": reduce.nested_counts(_frame(a=split, b=speech.map({True: "speech", False: "non_speech"})),
                                           ["a", "b"]),
        "clf_src": reduce.nested_counts(_frame(a=src, b=sent.where(speech, NON_SPEECH)), ["a", "b"]),
    }
    flags = {"clf_class_weight": "class_weight" in classifier.columns}
    if flags["clf_class_weight"]:
        w = pd.to_numeric(classifier["class_weight"], errors="coerce")
        has = w.notna()
        scaled = (w.fillna(0.0) * 1e12).round().astype("int64")
        rows = _frame(a=split[speech], b=sent[speech])
        sums["clf_w"] = reduce.nested_counts(rows, ["a", "b"], {"valid": has[speech].astype("int64"),
                                                                  "sum": scaled[speech]})
    return {"sums": sums, "flags": flags}


def _rejects_part(rejects: pd.DataFrame) -> dict[str, Any]:
    src, reason = labels(rejects, "source"), labels(rejects, "reason")
    sums = {
        "rej": {"n": len(rejects)},
        "rej_sr": reduce.nested_counts(_frame(a=src, b=reason), ["a", "b"]),
        "rej_stage": reduce.nested_counts(_frame(a=labels(rejects, "stage")), ["a"]),
    }
    groups: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    if len(rejects):
        cols = {c: labels(rejects, c, null="") for c in REJECT_EXAMPLE_COLUMNS}
        frame = pd.DataFrame({c: v.to_numpy() for c, v in cols.items()})
        frame = frame.sort_values(["source", "reason", "input_ref", "stage", "detail"], kind="stable")
        for (s, r), g in frame.groupby(["source", "reason"], sort=True):
            head = g.head(MAX_REJECT_EXAMPLES)
            groups[f"{s}\x1f{r}"] = [([row["input_ref"], row["stage"], row["detail"]], row)
                                    for row in head.to_dict("records")]
    return {"sums": sums, "top": {"reject_examples": reduce.top(MAX_REJECT_EXAMPLES, groups)}}


def shard_aggregates(spec: Any, utterances: pd.DataFrame, asr: pd.DataFrame, classifier: pd.DataFrame,
                     rejects: pd.DataFrame) -> dict[str, Any]:
    """The partial aggregates of one part (JSON-able, mergeable by `merge_aggregates`).

    `spec` (a DatasetSpec, or None for the counts and plots alone) adds the label sections' samples
    (sentiment agreement, transcript quality), which need its seed and settings.
    """
    from tasks.publish import aggregates_labels

    parts = [_utterance_part(utterances, asr, classifier), _asr_part(asr), _classifier_part(classifier),
             _rejects_part(rejects), *aggregates_labels.label_parts(spec, utterances, classifier)]
    out = reduce.merge_all(parts)
    out["version"] = AGGREGATE_VERSION
    return out


def merge_aggregates(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge partial aggregates (associative and order-independent); an empty list gives the empty release's.

    `parts` may be a generator (read one part at a time: the merge keeps only its accumulators)."""
    def checked() -> Iterable[Mapping[str, Any]]:
        for part in parts:
            if part.get("version") != AGGREGATE_VERSION:
                raise ValueError(f"partial aggregates of version {part.get('version')!s}; expected {AGGREGATE_VERSION}")
            yield part

    out = reduce.merge_all(checked())
    out["version"] = AGGREGATE_VERSION
    return out


def frame_aggregates(spec: Any, utterances: pd.DataFrame, asr: pd.DataFrame, classifier: pd.DataFrame | None,
                     rejects: pd.DataFrame | None) -> dict[str, Any]:
    """The merged aggregate of whole frames (one part): what the frame-based wrappers build from."""
    empty = pd.DataFrame()
    return merge_aggregates([shard_aggregates(spec, utterances, asr, classifier if classifier is not None else empty,
                                              rejects if rejects is not None else empty)])
