"""Duration and speaking-rate sanity: items no training stage should see, left out with a reason.

Why: a 1-sample clip (63 µs) with a 4-word transcript and a 6,800 s silent clip with a 6-word
transcript both entered the ASR stage. Neither can teach anything: the first has no audio for its
words, the second has hours of audio for a sentence (the transcript cannot be aligned to it, and
one sentiment label cannot stand for two hours of sound).

Rules (`plausibility` in the spec, defaults in docs/spec.md, measured in docs/balance-and-splits.md):
- per stage, `min_duration_s` / `max_duration_s` of the utterance (`duration_s`): ASR 0.3-60 s,
  classifier 0.3-600 s; outside: `too_short` / `too_long`;
- the transcript's characters per second (non-space characters of `transcript` / `duration_s`),
  checked for the ASR stage only (it trains on the text): below `min_chars_per_s` (0.5) or above
  `max_chars_per_s` (35): `implausible_speaking_rate`. Rows without a transcript are not rated.
- Whisper transcripts flagged as hallucinated (tasks/label/transcripts/hallucination.py) that were not
  rejected (policy `exclude`, or a row with a human/mapped-emotion sentiment under `reject`):
  `hallucinated_transcript`, out of the ASR stage, and out of the classifier stage when the
  sentiment came from the text.

These are exclusions, not rejects: the utterance stays in `utterances.parquet` (nothing is lost and
a looser spec can take it back), only the stage leaves it out. The card's `plausibility` section
counts them per stage, reason and source, with a few examples; the `plausibility_limits` guard
records the counts (info; a warning when a stage loses more than half of a source's utterances,
which usually means the limits do not fit the corpus). `voicetone validate` re-checks the limits
from the card's spec (manifests/validate.py), so a stage row outside them fails validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.core import guards
from tasks.spec import DatasetSpec, StageDurationLimits

GUARD = "plausibility_limits"
REASONS: tuple[str, ...] = ("too_short", "too_long", "implausible_speaking_rate", "hallucinated_transcript")
STAGES: tuple[str, ...] = ("asr", "classifier")
MAX_EXAMPLES = 5


def transcript_chars(text: Any) -> int | None:
    """Characters of a transcript without whitespace (None when there is no transcript)."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    return len("".join(str(text).split()))  # split() cuts at exactly the str.isspace characters, in C


def _duration_reasons(duration: np.ndarray, limits: StageDurationLimits) -> list[np.ndarray]:
    """`too_short` / `too_long` masks over a whole column (NaN = no duration: neither)."""
    too_long = duration > limits.max_duration_s if limits.max_duration_s is not None else np.zeros(len(duration), bool)
    return [duration < limits.min_duration_s, too_long]


def reasons(items: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Per row, why each stage leaves it out (`asr`, `classifier` columns; None = it may enter).

    Whole-column masks in the rules' order (duration, speaking rate, hallucination): the first that
    holds names the reason (tests/tasks/plan/test_vectorised.py keeps the per-row rules as the oracle)."""
    from tasks.label.transcripts import hallucination

    if items.empty:
        return pd.DataFrame({"asr": pd.Series(None, index=items.index, dtype=object),
                             "classifier": pd.Series(None, index=items.index, dtype=object)})
    p = spec.plausibility
    duration = pd.to_numeric(items["duration_s"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    texts = items["transcript"].tolist() if "transcript" in items.columns else [None] * len(items)
    chars = np.array([np.nan if (c := transcript_chars(t)) is None else c for t in texts], dtype=float)
    hal_asr, hal_clf = hallucination.excluded(items, spec.labelers.whisper.hallucination)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(duration > 0, chars / duration, np.nan)  # NaN: no transcript or no positive duration
    bad_rate = np.zeros(len(items), dtype=bool)
    if p.min_chars_per_s is not None:
        bad_rate |= rate < p.min_chars_per_s
    if p.max_chars_per_s is not None:
        bad_rate |= rate > p.max_chars_per_s
    asr = np.select([*_duration_reasons(duration, p.asr), bad_rate, hal_asr.to_numpy(dtype=bool)],
                    ["too_short", "too_long", "implausible_speaking_rate", "hallucinated_transcript"], None)
    clf = np.select([*_duration_reasons(duration, p.classifier), hal_clf.to_numpy(dtype=bool)],
                    ["too_short", "too_long", "hallucinated_transcript"], None)
    return pd.DataFrame({"asr": pd.Series(asr, index=items.index, dtype=object),
                         "classifier": pd.Series(clf, index=items.index, dtype=object)})


def _rate(row: pd.Series) -> str:
    chars = transcript_chars(row.get("transcript"))
    dur = row.get("duration_s")
    if chars is None or dur is None or pd.isna(dur) or float(dur) <= 0:
        return ""
    return f", {chars / float(dur):.3g} chars/s"


def screen_partial(items: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.Series, pd.Series, dict[str, Any]]:
    """Masks of rows the ASR and classifier stages may use, and this shard's mergeable counts."""
    why = reasons(items, spec)
    partial: dict[str, Any] = {}
    for stage in STAGES:
        out = why[stage].notna()
        entry: dict[str, Any] = {"by_reason": {}, "by_source": {}, "examples": []}
        if out.any():
            rows = items[out]
            reason = why.loc[out, stage]
            entry["by_reason"] = {str(k): int(v) for k, v in reason.value_counts().sort_index().items()}
            for (src, r), n in pd.DataFrame({"s": rows["source"], "r": reason}).groupby(["s", "r"]).size().items():
                entry["by_source"].setdefault(str(src), {})[str(r)] = int(n)
            for i in rows.sort_values("utterance_id").index[:MAX_EXAMPLES]:
                row = items.loc[i]
                entry["examples"].append([str(row["utterance_id"]), f"{row['utterance_id']}: {why.at[i, stage]} "
                                          f"({float(row['duration_s']):.6g} s{_rate(row)})"])
        partial[stage] = entry
    return why["asr"].isna(), why["classifier"].isna(), partial


def _merge_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + int(v)


def screen_finish(partials: list[dict[str, Any]], per_source: dict[str, int],
                  spec: DatasetSpec) -> tuple[dict[str, Any], list[dict]]:
    """The card section and guards from every shard's `screen_partial` counts and items per source."""
    section: dict[str, Any] = {"limits": spec.plausibility.model_dump(mode="json"), "excluded": {}}
    fired: list[dict[str, Any]] = []
    for stage in STAGES:
        by_reason: dict[str, int] = {}
        by_source: dict[str, dict[str, int]] = {}
        examples: list[list[str]] = []
        for part in partials:
            _merge_counts(by_reason, part[stage]["by_reason"])
            for src, counts in part[stage]["by_source"].items():
                _merge_counts(by_source.setdefault(src, {}), counts)
            examples.extend(part[stage]["examples"])
        entry: dict[str, Any] = {"total": sum(by_reason.values()),
                                 "by_reason": dict(sorted(by_reason.items())),
                                 "by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())},
                                 "examples": [text for _, text in sorted(examples)[:MAX_EXAMPLES]]}
        section["excluded"][stage] = entry
    counts = {s: section["excluded"][s]["by_reason"] for s in STAGES if section["excluded"][s]["total"]}
    if counts:
        text = "; ".join(f"{n} utterance(s) left out of the {s.upper() if s == 'asr' else s} stage ("
                         + ", ".join(f"{r} {c}" for r, c in counts[s].items()) + ")"
                         for s, n in ((s, section["excluded"][s]["total"]) for s in counts))
        fired.append(guards.guard(GUARD, f"{text}; limits under `plausibility` in the spec, examples in the card",
                                  level="info", **counts))
    for stage in STAGES:
        for src, lost in section["excluded"][stage]["by_source"].items():
            n_lost, n_all = sum(lost.values()), int(per_source.get(src, 0))
            if n_all and n_lost / n_all > 0.5:
                fired.append(guards.guard(
                    GUARD, f"source {src}: {n_lost} of its {n_all} utterance(s) are outside the {stage} stage's "
                    f"plausibility limits ({', '.join(f'{r} {c}' for r, c in lost.items())}); check the corpus "
                    "or the `plausibility` limits", source=src, stage=stage, **lost))
    return section, fired


def screen(items: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.Series, pd.Series, dict[str, Any], list[dict]]:
    """Masks of rows the ASR and classifier stages may use, the card section and the guards fired."""
    asr_ok, clf_ok, partial = screen_partial(items, spec)
    per_source = {str(k): int(v) for k, v in items.groupby("source").size().items()} if len(items) else {}
    section, fired = screen_finish([partial], per_source, spec)
    return asr_ok, clf_ok, section, fired
