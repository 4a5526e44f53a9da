"""Whisper transcripts that were invented, not heard: flagged by the decoder's own confidence signals.

Why: `tiny.en` given speech in another language (a `folder` source of Persian clips without a
`language` gets `en`) does not fail; it writes fluent English ("thank you for watching and I'll
see you next time"), and VADER then labels that text. The decode-time gates of
`tasks/label/transcripts/whisper.py` (`labelers.whisper.min_avg_logprob` -1.2, ...) let about half of
such clips through. This module applies stricter thresholds, chosen by measurement
(docs/labelers.md), to every row whose transcript came from Whisper, after the labeler ran:

- `min_word_probability` (0.55): the clip's own mean word probability (`transcript_confidence`).
  This is the main signal and it is per clip even when clips were packed into one window.
- `min_avg_logprob` (-1.0) and `max_no_speech_prob` (0.7): the decoder's values; in a packed
  window they are shared by its clips (whisper.py), so these bounds are set where even a shared
  value means the window was not understood.
- `max_compression_ratio` (2.4): Whisper's gzip ratio of the clip's text (repetition loops).

Policy (`labelers.whisper.hallucination.policy`): `reject` (default) makes each flagged row a
`low_confidence_transcript` reject whose detail starts with "hallucinated transcript", except a row
that carries a human or mapped-emotion sentiment: a bad pseudo-transcript never drops a human label,
so such a row is kept and only left out of the ASR stage (which trains on the text). `exclude`
keeps every flagged row in `utterances` but out of the ASR stage, and out of the classifier stage
when its sentiment came from the text (a pseudo label of invented words); `off` disables the check.
The exclusions are applied in the plan (`tasks/plan/plausibility.py`, reason `hallucinated_transcript`).
`summarize` counts, per source, the Whisper transcripts flagged here or rejected by the decode
gates, and fires `hallucinated_transcripts`: a warning when a source's share exceeds `warn_share`
(usually the audio is not in the language the source declares), else an info record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from tasks.core import guards
from tasks.core.rows import reject_row, rejects_frame
from tasks.label.transcripts.common import STAGE
from tasks.spec_labelers import HallucinationSettings

GUARD = "hallucinated_transcripts"
DETAIL_PREFIX = "hallucinated transcript"
TEXT_SENTIMENT_ORIGINS_KEPT = ("human", "mapped_emotion")  # sentiments that do not come from the transcript


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def problems(row: Mapping[str, Any], settings: HallucinationSettings) -> list[str]:
    """The thresholds a Whisper row fails, each with its numbers (empty list = it looks heard)."""
    out: list[str] = []
    conf = _number(row.get("transcript_confidence"))
    alp, nsp = _number(row.get("avg_logprob")), _number(row.get("no_speech_prob"))
    ratio = _number(row.get("compression_ratio"))
    if conf is not None and conf < settings.min_word_probability:
        out.append(f"mean word probability {conf:.2f} < min_word_probability {settings.min_word_probability:g}")
    if alp is not None and alp < settings.min_avg_logprob:
        out.append(f"avg_logprob {alp:.2f} < min_avg_logprob {settings.min_avg_logprob:g}")
    if nsp is not None and nsp > settings.max_no_speech_prob:
        out.append(f"no_speech_prob {nsp:.2f} > max_no_speech_prob {settings.max_no_speech_prob:g}")
    if ratio is not None and ratio > settings.max_compression_ratio:
        out.append(f"compression_ratio {ratio:.2f} > max_compression_ratio {settings.max_compression_ratio:g}")
    return out


def flagged(items: pd.DataFrame, settings: HallucinationSettings) -> pd.Series:
    """Rows whose transcript came from Whisper and fails a hallucination threshold (False when `off`)."""
    mask = pd.Series(False, index=items.index, dtype=bool)
    if settings.policy == "off" or items.empty or "transcript_origin" not in items.columns:
        return mask

    def column(name: str) -> pd.Series:  # NaN (no signal) compares False, as in `problems`
        return pd.to_numeric(items[name], errors="coerce") if name in items.columns else pd.Series(
            float("nan"), index=items.index)

    bad = ((column("transcript_confidence") < settings.min_word_probability)
           | (column("avg_logprob") < settings.min_avg_logprob)
           | (column("no_speech_prob") > settings.max_no_speech_prob)
           | (column("compression_ratio") > settings.max_compression_ratio))
    return (bad & (items["transcript_origin"] == "whisper")).astype(bool)


def screen(items: pd.DataFrame, settings: HallucinationSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Under policy `reject`: (kept rows, `low_confidence_transcript` rejects); otherwise all kept.

    Rows with a human or mapped-emotion sentiment are kept even when flagged (`excluded` leaves
    them out of the ASR stage).
    """
    if settings.policy != "reject":
        return items, rejects_frame()
    bad = flagged(items, settings) & ~_human_sentiment(items)
    rows = []
    for i in items.index[bad]:
        row = items.loc[i]
        rows.append(reject_row(
            str(row["source"]), str(row["utterance_id"]), STAGE, "low_confidence_transcript",
            f"{DETAIL_PREFIX}: {row['utterance_id']}: Whisper wrote {str(row.get('transcript_raw'))[:120]!r} but "
            f"{'; '.join(problems(row, settings))}; is the audio in the language the source declares "
            f"({row.get('language')!r})? Set sources[].language (and a multilingual labelers.whisper.model), give "
            "a human transcript, or relax labelers.whisper.hallucination"))
    return items[~bad].reset_index(drop=True), rejects_frame(rows)


def _human_sentiment(items: pd.DataFrame) -> pd.Series:
    origin = items["sentiment_origin"] if "sentiment_origin" in items.columns else pd.Series(None, index=items.index)
    return origin.isin(TEXT_SENTIMENT_ORIGINS_KEPT)


def excluded(items: pd.DataFrame, settings: HallucinationSettings) -> tuple[pd.Series, pd.Series]:
    """Masks of flagged rows to leave out of the (ASR, classifier) stages (none when `off`).

    The classifier stage keeps a flagged row whose sentiment is human or a mapped emotion.
    """
    bad = flagged(items, settings)
    return bad, bad & ~_human_sentiment(items)


def summary_counts(items: pd.DataFrame, rejects: Iterable[pd.DataFrame],
                   settings: HallucinationSettings) -> dict[str, dict[str, int]]:
    """Per source: Whisper transcripts kept, rejected as hallucinated, rejected by the decode gates, excluded.

    Sums over shards give the whole build's counts (`summary_from_counts` turns them into the card).
    """
    frames = [f for f in rejects if len(f)]
    rej = pd.concat(frames, ignore_index=True) if frames else rejects_frame()
    low = rej[(rej["stage"] == STAGE) & (rej["reason"] == "low_confidence_transcript")]
    ours = low["detail"].fillna("").str.startswith(DETAIL_PREFIX)
    origin = items["transcript_origin"] if "transcript_origin" in items.columns else pd.Series(dtype=object)
    kept = items[origin == "whisper"] if len(items) else items
    excl_asr, _ = excluded(kept, settings)
    counts: dict[str, dict[str, int]] = {}
    sources = sorted(set(map(str, kept.get("source", pd.Series(dtype=object)))) | set(map(str, low["source"])))
    for name in sources:
        counts[name] = {
            "kept": int((kept["source"] == name).sum()) if len(kept) else 0,
            "flagged": int((low["source"][ours] == name).sum()),
            "gated": int((low["source"][~ours] == name).sum()),
            "excluded": int(excl_asr[kept["source"] == name].sum()) if len(kept) else 0,
        }
    return counts


def summary_from_counts(counts: dict[str, dict[str, int]],
                        settings: HallucinationSettings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The card's hallucination section and its guards from (summed) `summary_counts`."""
    section: dict[str, Any] = {"settings": settings.model_dump(), "by_source": {}}
    fired: list[dict[str, Any]] = []
    for name in sorted(counts):
        c = counts[name]
        n_kept, n_flag, n_gate, n_excl = c["kept"], c["flagged"], c["gated"], c["excluded"]
        total = n_kept + n_flag + n_gate
        bad = n_flag + n_gate + n_excl
        share = round(bad / total, 4) if total else 0.0
        section["by_source"][name] = {"whisper_labelled": total, "rejected_hallucinated": n_flag,
                                      "rejected_decode_gates": n_gate, "excluded_hallucinated": n_excl,
                                      "share_flagged": share}
        if not bad:
            continue
        what = f"{bad} of its {total} Whisper transcript(s) look invented or unheard (" + ", ".join(
            f"{k} {v}" for k, v in (("rejected by labelers.whisper.hallucination", n_flag),
                                     ("rejected by the decode gates", n_gate),
                                     ("excluded from the stages", n_excl)) if v) + ")"
        if share > settings.warn_share:
            fired.append(guards.guard(
                GUARD, f"source {name}: {what}, {share:.0%}: is its audio in the language it declares? Set "
                "sources[].language and a multilingual labelers.whisper.model, or give human transcripts",
                source=name, **section["by_source"][name]))
        else:
            fired.append(guards.guard(GUARD, f"source {name}: {what}", level="info", source=name,
                                      **section["by_source"][name]))
    return section, fired


def summarize(items: pd.DataFrame, rejects: Iterable[pd.DataFrame],
              settings: HallucinationSettings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per source: Whisper transcripts kept, flagged here, rejected by the decode gates; and the guards."""
    return summary_from_counts(summary_counts(items, rejects, settings), settings)
