"""Partial aggregates of the label sections (languages, speech detection, transcript quality, sentiment
agreement) and the card sections and guards built from their merge.

The frame-based originals (`language.card_section`, `speech_presence.speech_section`/`label_guards`,
`quality.transcript_quality`, `agreement.agreement_report`) stay for tests and tools; these give the
same sections from per-part reductions (tests/tasks/publish/test_aggregates.py compares them).
Capped samples keep, per group, the k rows of lowest seeded hash rank (`tasks.core.reduce.top`):
transcript quality per source (`seeded_hex(seed, utterance_id)`, as the stage picks them), agreement's
held-out rows per source (same rank) and its report classifier's training rows per class
(`seeded_hex(seed, "report-train", utterance_id)`).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import pandas as pd

from tasks.core import reduce
from tasks.core.hashing import seeded_hex, seeded_hex_many
from tasks.label import speech_presence
from tasks.publish.aggregates import labels

LANGUAGE_PROBABILITY_BIN = 0.0001
MAX_DROPPED_IDS = speech_presence.MAX_DROPPED_IDS
HELDOUT_PER_SOURCE = 2000  # agreement_report's max_per_source
HUMAN_ORIGINS: frozenset[str] = frozenset({"human", "mapped_emotion"})
_HELDOUT_COLUMNS = ("utterance_id", "source", "language", "split", "text", "sentiment")


def _frame(**columns: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({k: v.to_numpy() for k, v in columns.items()}, dtype=object)  # labels: no str inference


def label_parts(spec: Any, utterances: pd.DataFrame, classifier: pd.DataFrame) -> list[dict[str, Any]]:
    """The label sections' reductions of one part; the spec-dependent samples only with a spec."""
    parts = [_language_part(utterances), _speech_part(utterances, classifier)]
    if spec is not None:
        parts += [_quality_part(spec, utterances), _agreement_part(spec, utterances)]
    return parts


def label_sections(spec: Any, agg: dict[str, Any], model_uri: str | None) -> dict[str, Any]:
    """The card's `languages`, `speech_detection`, `sentiment_agreement` and `transcript_quality` sections."""
    return {"languages": language_section(agg), "speech_detection": speech_section(agg),
            "sentiment_agreement": agreement_section(spec, agg, model_uri),
            "transcript_quality": quality_section(spec, agg)}


# ----------------------------------------------------------------------------------------- languages
def _language_part(utt: pd.DataFrame) -> dict[str, Any]:
    flags = {"lang_column": "language" in utt.columns, "lang_origin_column": "language_origin" in utt.columns,
             "lang_prob_column": "language_probability" in utt.columns}
    sums = {"lang": {"by_language": reduce.nested_counts(_frame(a=labels(utt, "language", "?")), ["a"]),
                     "by_origin": reduce.nested_counts(_frame(a=labels(utt, "language_origin", "?")), ["a"])}}
    probs = pd.Series(dtype=float)
    if flags["lang_origin_column"] and flags["lang_prob_column"]:
        probs = pd.to_numeric(utt.loc[utt["language_origin"] == "detected", "language_probability"],
                              errors="coerce").dropna()
    return {"sums": sums, "flags": flags,
            "values": {"lang_prob": reduce.value_counts(probs, LANGUAGE_PROBABILITY_BIN)},
            "minmax": {"lang_prob": [float(probs.min()), float(probs.max())] if len(probs) else [None, None]}}


def language_section(agg: dict[str, Any]) -> dict[str, Any]:
    """The card's `languages` (as `tasks.label.transcripts.language.card_section`)."""
    flags, lang = agg["flags"], agg["sums"].get("lang", {})
    if not agg["sums"].get("utt", {}).get("n") or not flags.get("lang_column"):
        return {"by_language": {}, "by_origin": {}}
    out: dict[str, Any] = {
        "by_language": {k: int(v) for k, v in sorted(lang.get("by_language", {}).items())},
        "by_origin": {k: int(v) for k, v in sorted(lang.get("by_origin", {}).items())}
        if flags.get("lang_origin_column") else {},
    }
    med = reduce.median(agg["values"].get("lang_prob"))
    if flags.get("lang_origin_column") and flags.get("lang_prob_column") and med is not None:
        out["detected_probability_median"] = round(med, 4)
        out["detected_probability_min"] = round(float(agg["minmax"]["lang_prob"][0]), 4)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------- speech
def _by_source_emotion(frame: pd.DataFrame) -> dict[str, Any]:
    return reduce.nested_counts(_frame(a=labels(frame, "source"), b=labels(frame, "emotion", "(none)")), ["a", "b"])


def _speech_part(utt: pd.DataFrame, classifier: pd.DataFrame) -> dict[str, Any]:
    from tasks.publish.aggregates import _speech

    detector = labels(utt, "speech_detector")
    dropped = utt.iloc[0:0]
    if len(utt) and len(classifier) and "sentiment_origin" in utt.columns:
        per_utt = _speech(classifier).groupby(labels(classifier, "utterance_id")).any()
        silent = set(per_utt.index[~per_utt.astype(bool)])
        human = utt["sentiment_origin"].isin(HUMAN_ORIGINS) & utt["sentiment"].notna()
        dropped = utt[human & labels(utt, "utterance_id").isin(silent)]
    sums = {"speech": {
        "detector": reduce.nested_counts(_frame(a=labels(utt, "source"), b=detector), ["a", "b"]),
        "second": _by_source_emotion(utt[detector == "second_opinion"]),
        "none": _by_source_emotion(utt[detector == "none"]),
        "dropped": _by_source_emotion(dropped),
    }}
    ids = [([u], {}) for u in labels(dropped, "utterance_id")]
    return {"sums": sums, "flags": {"speech_detector_column": "speech_detector" in utt.columns},
            "top": {"speech_dropped_ids": reduce.top(MAX_DROPPED_IDS, {"": ids})}}


def speech_section(agg: dict[str, Any]) -> dict[str, Any]:
    """The card's `speech_detection` (as `tasks.label.speech_presence.speech_section`)."""
    from tasks.label import speech_check

    s = agg["sums"].get("speech", {})
    return {
        "rule": (f"Silero VAD first; an item with VAD speech under {speech_check.LOW_SPEECH_SHARE:.0%} of its "
                 f"duration gets the energy + pitch second opinion (tasks/label/speech_check.py v{speech_check.VERSION})"),
        "detector_by_source": _sorted2(s.get("detector", {})),
        "second_opinion_by_source_emotion": _sorted2(s.get("second", {})),
        "no_speech_by_source_emotion": _sorted2(s.get("none", {})),
        "human_labels_without_speech_by_source_emotion": _sorted2(s.get("dropped", {})),
    }


def _sorted2(nested: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {a: {b: int(n) for b, n in sorted(row.items())} for a, row in sorted(nested.items())}


def speech_guards(agg: dict[str, Any]) -> list[dict[str, Any]]:
    """`speech_label_dropped` and `speech_second_opinion` (as `speech_presence.label_guards`)."""
    s = agg["sums"].get("speech", {})
    out: list[dict[str, Any]] = []
    dropped = _sorted2(s.get("dropped", {}))
    n_dropped = sum(n for row in dropped.values() for n in row.values())
    if n_dropped:
        ids = [r[0][0] for r in agg["top"]["speech_dropped_ids"]["groups"].get("", [])]
        out.append(speech_presence.dropped_guard(n_dropped, dropped, ids))
    second = _sorted2(s.get("second", {}))
    n_second = sum(n for row in second.values() for n in row.values())
    if agg["flags"].get("speech_detector_column") and n_second:
        out.append(speech_presence.second_opinion_guard(n_second, second))
    return out


# ----------------------------------------------------------------------------------------- transcript quality
def _quality_part(spec: Any, utt: pd.DataFrame) -> dict[str, Any]:
    from tasks.label.transcripts.common import has_text
    from tasks.label.transcripts.normalize import base_language, word_errors
    from tasks.label.transcripts.quality import HYPOTHESIS, HYPOTHESIS_ORIGIN

    n, seed = spec.labelers.quality_sample_per_source, spec.seed
    groups: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    if len(utt) and HYPOTHESIS_ORIGIN in utt.columns:
        sampled = utt[utt[HYPOTHESIS_ORIGIN].map(has_text) & (utt["transcript_origin"] == "human")]
        for rec in sampled.itertuples(index=False):
            reference = rec.transcript_raw if has_text(rec.transcript_raw) else rec.transcript
            hyp = getattr(rec, HYPOTHESIS)
            errors, words = word_errors(str(reference), hyp, base_language(rec.language)) if has_text(hyp) else (0, 0)
            key = [seeded_hex(seed, str(rec.utterance_id)), str(rec.utterance_id)]
            groups.setdefault(str(rec.source), []).append(
                (key, {"hyp": bool(has_text(hyp)), "errors": int(errors), "words": int(words),
                       "origin": getattr(rec, HYPOTHESIS_ORIGIN)}))
    return {"top": {"quality": reduce.top(n, groups)}}


def _quality_entry(rows: list[dict[str, Any]]) -> dict[str, Any]:
    labelled = [r for r in rows if r["hyp"]]
    errors, words = sum(r["errors"] for r in labelled), sum(r["words"] for r in labelled)
    return {"utterances": len(rows), "hypotheses": len(labelled), "rejected_by_labeler": len(rows) - len(labelled),
            "labelers": sorted({r["origin"] for r in rows}), "reference_words": words, "word_errors": errors,
            "wer": round(errors / words, 4) if words else None}


def quality_section(spec: Any, agg: dict[str, Any]) -> dict[str, Any]:
    """The card's `transcript_quality` (as `quality.transcript_quality(n=quality_sample_per_source)`)."""
    from tasks.label.transcripts.normalize import NORMALIZER_NAME, NORMALIZER_VERSION

    groups = (agg["top"].get("quality") or {"groups": {}})["groups"]
    sources = {s: [r[1] for r in recs] for s, recs in sorted(groups.items())}
    return {"normalizer": {"name": NORMALIZER_NAME, "version": NORMALIZER_VERSION},
            "sample_per_source": spec.labelers.quality_sample_per_source, "seed": spec.seed,
            "sources": {s: _quality_entry(rows) for s, rows in sources.items()},
            "overall": _quality_entry([r for rows in sources.values() for r in rows])}


# ----------------------------------------------------------------------------------------- agreement
def _agreement_part(spec: Any, utt: pd.DataFrame) -> dict[str, Any]:
    from tasks.label.sentiment import trained
    from tasks.label.sentiment.agreement import HELDOUT_SPLITS

    seed = spec.seed
    sums: dict[str, Any] = {}
    if "sentiment_origin" in utt.columns:
        rows = utt[utt["sentiment_origin"] == "aws_comprehend"]
        raw = labels(rows, "comprehend_sentiment", "\x00")
        mixed = pd.to_numeric(rows["p_mixed"], errors="coerce") if "p_mixed" in rows.columns else pd.Series(dtype=float)
        sums["comprehend"] = {"labelled": len(rows), "answers": reduce.nested_counts(_frame(a=raw[raw != "\x00"]), ["a"]),
                              "mixed": int((raw == "MIXED").sum()),
                              "p_mixed": [int(mixed.notna().sum()), int((mixed.dropna() * 1e12).round().sum())]}
    labelled = trained.human_labelled(utt, spec, ("train", *HELDOUT_SPLITS))
    heldout = labelled[labelled["split"].isin(HELDOUT_SPLITS)]
    train = labelled[labelled["split"] == "train"]
    held_groups = _candidates(heldout, "source", [[h] for h in seeded_hex_many(seed, heldout["utterance_id"].tolist())],
                              HELDOUT_PER_SOURCE)
    train_ids = train["utterance_id"].tolist()  # seeded_hex(seed, "report-train", u) is the text "seed:report-train:u"
    train_groups = _candidates(train, "sentiment", [[h, str(u)] for h, u in zip(
        seeded_hex_many(f"{seed}:report-train", train_ids), train_ids, strict=True)],
                               spec.labelers.agreement_train_max_rows)
    languages = [lang for lang in map(trained.primary_language, train["language"]) if lang]
    sums["agreement_train"] = {"strata": reduce.nested_counts(_frame(a=train["sentiment"].astype(str)), ["a"]),
                               "languages": reduce.nested_counts(_frame(a=pd.Series(languages, dtype=object)), ["a"])}
    return {"sums": sums, "top": {
        "agreement_heldout": reduce.top(HELDOUT_PER_SOURCE, held_groups),
        "agreement_train": reduce.top(spec.labelers.agreement_train_max_rows, train_groups)}}


def _candidates(rows: pd.DataFrame, group: str, keys: list[list[str]], k: int | None
                ) -> dict[str, list[tuple[list[str], dict[str, Any]]]]:
    """Per value of `group`, the (key, record) pairs `reduce.top(k, ...)` keeps: each group's k lowest
    keys, with a record (the `_HELDOUT_COLUMNS`) built only for those rows, not for every row of the part."""
    by_group: dict[str, list[tuple[list[str], int]]] = {}
    for i, (value, key) in enumerate(zip(rows[group].tolist(), keys, strict=True)):
        by_group.setdefault(str(value), []).append((key, i))
    if k is not None:  # ties by row order, as heapq.nsmallest in reduce.top breaks them
        by_group = {value: heapq.nsmallest(k, pairs) for value, pairs in by_group.items()}
    picked = sorted(i for pairs in by_group.values() for _, i in pairs)
    row_of = dict(zip(picked, rows.iloc[picked][list(_HELDOUT_COLUMNS)].to_dict("records"), strict=True))
    return {value: [(key, row_of[i]) for key, i in pairs] for value, pairs in by_group.items()}


def agreement_section(spec: Any, agg: dict[str, Any], model_uri: str | None) -> dict[str, Any]:
    """The card's `sentiment_agreement` (as `agreement.agreement_report(..., max_per_source=2000)`)."""
    from tasks.label.sentiment import agreement

    comprehend = None
    c = agg["sums"].get("comprehend")
    if c and c["labelled"]:
        answers = sorted(c["answers"].items(), key=lambda kv: (-kv[1], kv[0]))
        n_mixed, p_sum = c["p_mixed"]
        comprehend = {"labelled": int(c["labelled"]), "answers": {k: int(v) for k, v in answers},
                      "mixed_mapped": int(c["mixed"]),
                      "mean_p_mixed": round(p_sum / 1e12 / n_mixed, 4) if n_mixed else None,
                      "note": "not scored against human labels at publish (that would cost Comprehend calls)"}
    held = (agg["top"].get("agreement_heldout") or {"groups": {}})["groups"]
    heldout = pd.DataFrame([r[1] for s in sorted(held) for r in held[s]], columns=list(_HELDOUT_COLUMNS))
    train_top = (agg["top"].get("agreement_train") or {"groups": {}})["groups"]
    t = agg["sums"].get("agreement_train", {})
    strata = {k: int(v) for k, v in t.get("strata", {}).items()}
    pool = pd.DataFrame([r[1] for recs in train_top.values() for r in recs], columns=list(_HELDOUT_COLUMNS))
    sample = agreement.sample_from_ranked(pool, strata, spec.labelers.agreement_train_max_rows, spec.seed)
    return agreement.agreement_from_samples(
        spec, heldout, sample, available_rows=sum(strata.values()), languages=sorted(t.get("languages", {})),
        comprehend=comprehend, model_uri=model_uri, max_per_source=HELDOUT_PER_SOURCE)
