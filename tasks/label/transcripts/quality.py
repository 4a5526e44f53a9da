"""Pseudo-transcript quality: the ASR labeler's WER against human transcripts on a held-out sample.

How the sample works, and why:
- During the transcripts stage a seeded sample of human-transcribed rows is *also* run through the
  configured labeler (on a copy with the transcript cleared, through the same label cache), and
  the labeler's normalised hypothesis is stored on the row as ``asr_hypothesis`` with
  ``asr_hypothesis_origin`` naming the labeler. A row the labeler rejected (no words, low
  confidence, failed job) keeps the origin and a null hypothesis, so the report counts it.
- `choose_quality_sample` picks, per source, the ``n`` rows with the smallest
  ``sha256(seed, utterance_id)``. The stage sees one shard at a time, so it picks up to ``n`` per
  source *per shard*; `transcript_quality` then keeps the ``n`` smallest per source over the whole
  release, which is exactly the global seeded sample (the global n smallest are in the union of
  every shard's n smallest).
- WER is pooled per source (sum of word errors / sum of reference words) after the one
  transcript normaliser (case, punctuation, numbers), never a mean of per-utterance WERs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pandas as pd

from tasks.core.hashing import seeded_hex
from tasks.core.rows import StageResult
from tasks.label.transcripts.common import has_text
from tasks.label.transcripts.normalize import NORMALIZER_NAME, NORMALIZER_VERSION, base_language, word_errors

HYPOTHESIS = "asr_hypothesis"
HYPOTHESIS_ORIGIN = "asr_hypothesis_origin"


def _rank(seed: int, utterance_id: str) -> str:
    return seeded_hex(seed, utterance_id)


def choose_quality_sample(items: pd.DataFrame, n: int, seed: int) -> list[int]:
    """Positions (``iloc``) of up to `n` human-transcribed rows per source, seeded and stable."""
    if n <= 0 or items.empty or "transcript_raw" not in items.columns:
        return []
    origin = items["transcript_origin"] if "transcript_origin" in items.columns else pd.Series([None] * len(items))
    chosen: list[int] = []
    by_source: dict[str, list[tuple[str, int]]] = {}
    for pos, (src, utt, raw, org) in enumerate(
        zip(items["source"], items["utterance_id"], items["transcript_raw"], origin, strict=True)
    ):
        if has_text(raw) and (not has_text(org) or org == "human"):
            by_source.setdefault(str(src), []).append((_rank(seed, str(utt)), pos))
    for ranked in by_source.values():
        chosen.extend(pos for _, pos in sorted(ranked)[:n])
    return sorted(chosen)


def add_hypotheses(
    kept: pd.DataFrame,
    items: pd.DataFrame,
    n: int,
    seed: int,
    label: Callable[[pd.DataFrame], StageResult],
    labeler: str,
    sample: Collection[str] | None = None,
) -> pd.DataFrame:
    """`kept` (the stage's output) with the labeler's hypotheses on the sampled human rows.

    `items` is the stage's input; `label` runs the labeler (with its cache) on a frame of rows
    without transcripts. Rows outside the sample get nulls in both columns. `sample` (utterance
    ids) is the build's sample when the caller chose it over all shards (Whisper's packing plan);
    without it the sample is chosen in `items` alone.
    """
    out = kept.copy()
    out[HYPOTHESIS] = pd.Series([None] * len(out), dtype=object, index=out.index)
    out[HYPOTHESIS_ORIGIN] = pd.Series([None] * len(out), dtype=object, index=out.index)
    if sample is None:
        positions = choose_quality_sample(items, n, seed)
    else:
        positions = [pos for pos, utt in enumerate(items["utterance_id"]) if utt in sample]
    if not positions:
        return out
    probe = items.iloc[positions].copy()
    probe = probe[probe["utterance_id"].isin(set(out["utterance_id"]))]
    if probe.empty:
        return out
    probe["transcript_raw"] = None
    probe["transcript"] = None
    probe["transcript_origin"] = None
    result = label(probe.reset_index(drop=True))
    hyps = dict(zip(result.items["utterance_id"], result.items["transcript"], strict=True))
    origins = dict(zip(result.items["utterance_id"], result.items["transcript_origin"], strict=True))
    sampled = set(probe["utterance_id"])
    for idx, utt in zip(out.index, out["utterance_id"], strict=True):
        if utt in sampled:
            out.at[idx, HYPOTHESIS] = hyps.get(utt)
            out.at[idx, HYPOTHESIS_ORIGIN] = origins.get(utt) or labeler
    return out


def transcript_quality(utterances: pd.DataFrame, n: int | None = None, seed: int = 13) -> dict[str, Any]:
    """WER of the ASR labeler against human transcripts, per source and pooled, for the card.

    `n` (per source) re-applies the seeded selection over the whole release; None keeps every
    sampled row. Returns ``{"normalizer", "sample_per_source", "seed", "sources": {source:
    {...}}, "overall": {...}}`` where each entry has ``utterances`` (sampled), ``hypotheses``
    (the labeler gave a transcript), ``rejected_by_labeler``, ``reference_words``,
    ``word_errors`` and ``wer`` (errors / reference words over the hypotheses; None when empty).
    """
    report: dict[str, Any] = {
        "normalizer": {"name": NORMALIZER_NAME, "version": NORMALIZER_VERSION},
        "sample_per_source": n,
        "seed": seed,
        "sources": {},
        "overall": _entry([]),
    }
    if utterances.empty or HYPOTHESIS_ORIGIN not in utterances.columns:
        return report
    sampled = utterances[utterances[HYPOTHESIS_ORIGIN].map(has_text)]
    sampled = sampled[sampled["transcript_origin"] == "human"]
    everything = []
    for source, rows in sorted(sampled.groupby("source"), key=lambda kv: str(kv[0])):
        if n is not None:
            order = sorted(range(len(rows)), key=lambda p: _rank(seed, str(rows["utterance_id"].iloc[p])))
            rows = rows.iloc[sorted(order[:n])]
        records = []
        for rec in rows.itertuples(index=False):
            reference = rec.transcript_raw if has_text(rec.transcript_raw) else rec.transcript
            hyp = getattr(rec, HYPOTHESIS)
            records.append((str(reference), hyp if has_text(hyp) else None, base_language(rec.language),
                            getattr(rec, HYPOTHESIS_ORIGIN)))  # fmt: skip
        report["sources"][str(source)] = _entry(records)
        everything.extend(records)
    report["overall"] = _entry(everything)
    return report


def _entry(records: list[tuple[str, str | None, str, str]]) -> dict[str, Any]:
    errors = words = labelled = 0
    for reference, hyp, language, _ in records:
        if hyp is None:
            continue
        e, w = word_errors(reference, hyp, language)
        errors, words, labelled = errors + e, words + w, labelled + 1
    return {
        "utterances": len(records),
        "hypotheses": labelled,
        "rejected_by_labeler": len(records) - labelled,
        "labelers": sorted({r[3] for r in records}),
        "reference_words": words,
        "word_errors": errors,
        "wer": round(errors / words, 4) if words else None,
    }
