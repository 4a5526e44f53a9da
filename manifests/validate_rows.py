"""Row rules of the stage manifests that `manifests.validate_part` applies to each part.

Window geometry (`rules.window_bounds` per utterance), label-origin eligibility per stage and split,
and the plausibility limits (duration, speaking rate, Whisper hallucination gates) read from the
card's spec. Each works on one part's rows: an utterance and its stage rows share a part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from manifests import rules
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES
from manifests.validate_columns import chars_without_space, isin, objects
from manifests.validate_report import ValidationReport
from manifests.validate_report import examples as _examples

_GEOMETRY_TOL = 1e-4  # seconds; window times are written rounded to microseconds
ORIGIN_FIELDS: tuple[str, ...] = ("sentiment_origin", "transcript_origin")


def _segment_settings(spec: dict) -> tuple[float, float, float]:
    seg = spec.get("segments") or {}
    return (float(seg.get("window_s", 5.0)), float(seg.get("hop_s", 2.5)), float(seg.get("min_last_window_s", 1.0)))


def _check_windows(clf: pd.DataFrame, spec: dict, report: ValidationReport) -> None:
    """Each utterance's windows are exactly `rules.window_bounds` of its length in utterance time."""
    if clf.empty:
        return
    window, hop, min_last = _segment_settings(spec)
    keys = ["utterance_id", "audio_uri", "offset_s", "duration_s", "speed", "recipe_applied"]
    frame = clf[keys + ["row_id", "start_s", "end_s", "valid_s"]].copy()
    frame["offset_s"] = frame["offset_s"].fillna(0.0)
    frame["speed"] = frame["speed"].fillna(1.0)
    frame["recipe_applied"] = frame["recipe_applied"].fillna(False).astype(bool)
    frame["audio_uri"] = frame["audio_uri"].fillna("")
    bad: list[str] = []
    no_length = frame[~(frame["duration_s"] > 0) | ~(frame["speed"] > 0)]
    if len(no_length):
        report.fail(f"classifier_stage rows without a positive duration_s/speed (the cut in audio_uri's time): "
                    f"{_examples(no_length['row_id'])}")
        frame = frame.drop(index=no_length.index)
    start, end, valid = (frame[c].to_numpy(dtype=float, na_value=np.nan) for c in ("start_s", "end_s", "valid_s"))
    groups = _groups(frame, keys)
    clear = _clear_passes(groups, start, end, valid, window, hop, min_last)
    for ((uid, _uri, _off, dur, speed, applied), rows), passed in zip(groups, clear, strict=True):
        if passed:
            continue
        actual = sorted(zip(start[rows].tolist(), end[rows].tolist(), valid[rows].tolist(), strict=True))
        # A noise example's duration_s is its own cut (no resampling), so the plain length counts too.
        lengths = {rules.utterance_duration(float(dur), float(speed), applied), float(dur) / float(speed)}
        if not any(_same_windows(actual, rules.window_bounds(d, window, hop, min_last)) for d in lengths):
            want = rules.window_bounds(min(lengths), window, hop, min_last)
            bad.append(f"{uid} ({len(actual)} windows {_fmt_windows(actual)}, expected {len(want)} "
                       f"{_fmt_windows(want)} for {min(lengths):.3f} s)")
    if bad:
        report.fail(
            f"classifier_stage windows do not follow the window rule (window {window:g} s every {hop:g} s, "
            f"last window if the tail is >= {min_last:g} s, one padded window when shorter): {_examples(bad)}"
        )
    else:
        report.passed("every utterance's windows follow the window rule (geometry, last window, valid_s)")


def _clear_passes(groups: list[tuple[tuple, np.ndarray]], start: np.ndarray, end: np.ndarray, valid: np.ndarray,
                  window_s: float, hop_s: float, min_last_s: float) -> np.ndarray:
    """Per group: True where its windows clearly follow `rules.window_bounds` (column-wise, no loop per row).

    Why: the rule per utterance in Python was a third of a release's validation. This only *accepts*:
    a group it cannot clear (a mismatch, a missing or absurd value, a difference within a microsecond
    of the tolerance) goes to the per-utterance rule, which alone rejects and writes the message. Its
    arithmetic is the rule's: the microsecond grid of starts and ends comes from `rules` itself, and
    lengths and tails are rounded exactly as `rules._us` rounds them (`_us_exact`).
    """
    n_groups = len(groups)
    if n_groups == 0 or hop_s <= 0 or window_s <= 0:
        return np.zeros(n_groups, dtype=bool)
    window = rules._us(window_s)
    min_last = rules._us(min_last_s)
    sizes = np.array([len(rows) for _, rows in groups])
    gid = np.repeat(np.arange(n_groups), sizes)
    rows = np.concatenate([rows for _, rows in groups])
    s, e, v = start[rows], end[rows], valid[rows]
    order = np.lexsort((v, e, s, gid))  # each group's windows sorted as tuples, as the rule compares them
    s, e, v = s[order], e[order], v[order]
    rank = np.arange(len(gid)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    finite = np.isfinite(s) & np.isfinite(e) & np.isfinite(v)
    dur = np.array([float(k[3]) for k, _ in groups])
    speed = np.array([float(k[4]) for k, _ in groups])
    applied = np.array([bool(k[5]) for k, _ in groups])
    safe_speed = np.where(np.isfinite(speed) & (speed > 0), speed, 1.0)
    resampled = np.floor(np.rint(dur * rules.RESAMPLE_SR) / safe_speed + 0.5) / rules.RESAMPLE_SR
    tol = _GEOMETRY_TOL - 1e-6  # clear of the tolerance by more than numpy's and Python's rounding can differ
    ok = np.zeros(n_groups, dtype=bool)
    for length in (np.where(applied, dur, resampled), dur / speed):
        usable = np.isfinite(length) & (length > 0) & (length < 1e5)
        duration = _us_exact(np.where(usable, length, 0.0))
        usable &= duration > 0
        short = duration <= window + rules._EPS
        top = int(np.ceil(duration.max() / hop_s)) + 2 if usable.any() else 1
        starts = np.array([rules._us(k * hop_s) for k in range(top)])
        ends = np.array([rules._us(x + window) for x in starts])
        full = np.searchsorted(ends, duration, side="right")  # windows k with _us(_us(k hop) + window) <= duration
        tail = _us_exact(duration - ends[np.maximum(full - 1, 0)])
        extra = ~short & (tail > 0) & (tail >= min_last)
        count = np.where(short, 1, full + extra)
        g_dur, g_full, g_short = duration[gid], full[gid], short[gid]
        in_full = rank < g_full
        at = np.minimum(rank, top - 1)
        want_s = np.where(g_short, 0.0, np.where(in_full, starts[at], np.round(g_dur - window, 6) + 0.0))
        want_e = np.where(g_short, window, np.where(in_full, ends[at], g_dur))
        want_v = np.where(g_short, np.minimum(g_dur, window), window)
        close = finite & (np.abs(s - want_s) <= tol) & (np.abs(e - want_e) <= tol) & (np.abs(v - want_v) <= tol)
        bad_rows = np.bincount(gid, weights=~close, minlength=n_groups)
        ok |= usable & (count == sizes) & (bad_rows == 0)
    return ok


def _us_exact(x: np.ndarray) -> np.ndarray:
    """`rules._us` of every value: numpy's rounding where it cannot differ from Python's correctly rounded
    `round(x, 6)`, Python's for values within a rounding step of half a microsecond."""
    micro = x * 1e6
    out = np.round(x, 6) + 0.0
    near = np.flatnonzero(np.abs(micro - np.floor(micro) - 0.5) <= 1e-3)
    out[near] = [rules._us(v) for v in x[near].tolist()]
    return out


def _groups(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """(key values, row positions) per distinct key, as `frame.groupby(keys, sort=True, dropna=False)`
    iterates them: keys in sorted order with a null key last, rows in frame order; one sort, no groupby."""
    if frame.empty:
        return []
    codes, firsts = [], []
    for key in keys:
        code, uniques = pd.factorize(frame[key], sort=True, use_na_sentinel=True)
        codes.append(np.where(code < 0, len(uniques), code))
    order = np.lexsort(codes[::-1])  # stable: rows of a group keep their frame order
    stacked = np.stack([c[order] for c in codes])
    starts = np.flatnonzero(np.r_[True, (stacked[:, 1:] != stacked[:, :-1]).any(axis=0)])
    columns = [frame[key].to_numpy(dtype=object) for key in keys]
    for first in order[starts]:
        firsts.append(tuple(c[first] for c in columns))
    return list(zip(firsts, np.split(order, starts[1:]), strict=True))


def _same_windows(actual: list[tuple[float, float, float]], expected: list[tuple[float, float, float]]) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - b) <= _GEOMETRY_TOL for x, y in zip(actual, expected, strict=True) for a, b in zip(x, y, strict=True)
    )


def _fmt_windows(windows: list[tuple[float, float, float]]) -> str:
    shown = ", ".join(f"{s:g}-{e:g}/{v:g}" for s, e, v in windows[:4])
    return f"[{shown}{', ...' if len(windows) > 4 else ''}]"


def _stage_rules(spec: dict, stage: str) -> dict[str, dict[str, list[str]]]:
    """{split: {origin field: allowed values}} from the card's `eligibility.<stage>` (null = any)."""
    out: dict[str, dict[str, list[str]]] = {}
    for split, rule in ((spec.get("eligibility") or {}).get(stage) or {}).items():
        if isinstance(rule, list):
            rule = {"sentiment_origin": rule}
        out[str(split)] = {f: list(rule[f]) for f in ORIGIN_FIELDS if isinstance(rule, dict) and rule.get(f)}
    return out


def _eligible(utt: pd.DataFrame, spec: dict, stage: str) -> pd.Series:
    """Utterances the stage may use under the eligibility rules (a null origin never matches)."""
    ok = pd.Series(True, index=utt.index, dtype=bool)
    for split, fields in _stage_rules(spec, stage).items():
        for field_name, allowed in fields.items():
            ok &= ~((utt["split"] == split) & ~isin(utt[field_name], allowed))
    # Transcripts flagged as holding PII are kept out of the ASR stage under pii.asr_policy exclude.
    if stage == "asr" and "pii_detected" in utt.columns and (spec.get("pii") or {}).get("asr_policy") == "exclude":
        ok &= ~utt["pii_detected"].fillna(False).astype(bool)
    return ok & _plausible(utt, spec, stage)


def _plausible(utt: pd.DataFrame, spec: dict, stage: str) -> pd.Series:
    """Utterances inside the card spec's `plausibility` limits for the stage (tasks/plan/plausibility.py's rules).

    A release built before the limits existed has no `plausibility` in its spec: nothing is excluded.
    """
    ok = pd.Series(True, index=utt.index, dtype=bool)
    limits = spec.get("plausibility")
    if not isinstance(limits, dict) or utt.empty:
        return ok
    duration = pd.to_numeric(utt["duration_s"], errors="coerce")
    bounds = limits.get(stage) or {}
    if bounds.get("min_duration_s") is not None:
        ok &= ~(duration < float(bounds["min_duration_s"]))
    if bounds.get("max_duration_s") is not None:
        ok &= ~(duration > float(bounds["max_duration_s"]))
    if stage == "asr" and "transcript" in utt.columns:
        chars = pd.Series(chars_without_space(utt["transcript"]), index=utt.index)
        rate = chars / duration.where(duration > 0)
        if limits.get("min_chars_per_s") is not None:
            ok &= ~(rate < float(limits["min_chars_per_s"]))
        if limits.get("max_chars_per_s") is not None:
            ok &= ~(rate > float(limits["max_chars_per_s"]))
    hal = ((spec.get("labelers") or {}).get("whisper") or {}).get("hallucination") or {}
    if hal.get("policy") in ("reject", "exclude") and "transcript_origin" in utt.columns:
        def num(col: str) -> pd.Series:
            return pd.to_numeric(utt[col], errors="coerce") if col in utt.columns else pd.Series(float("nan"), index=utt.index)
        bad = ((num("transcript_confidence") < float(hal["min_word_probability"]))
               | (num("avg_logprob") < float(hal["min_avg_logprob"]))
               | (num("no_speech_prob") > float(hal["max_no_speech_prob"]))
               | (num("compression_ratio") > float(hal["max_compression_ratio"])))
        bad &= utt["transcript_origin"] == "whisper"
        if stage == "classifier":
            bad &= ~isin(utt["sentiment_origin"], ["human", "mapped_emotion"])
        ok &= ~bad
    return ok


def _check_plausibility(tables: dict[str, pd.DataFrame], spec: dict, report: ValidationReport) -> None:
    """No stage row may use an utterance outside the spec's duration/speaking-rate limits."""
    utt = tables[UTTERANCES]
    for stage, name in (("asr", ASR_STAGE), ("classifier", CLASSIFIER_STAGE)):
        outside = set(objects(utt.loc[~_plausible(utt, spec, stage), "utterance_id"]))
        bad = tables[name]["row_id"][isin(tables[name]["utterance_id"], outside)]
        if len(bad):
            report.fail(f"{name}: rows of utterances outside the plausibility limits for the {stage} stage: "
                        f"{_examples(bad)}")
    report.passed("stage rows respect the duration and speaking-rate limits")


def _check_eligibility(tables: dict[str, pd.DataFrame], spec: dict, report: ValidationReport) -> None:
    utt = tables[UTTERANCES]
    utt = utt[["utterance_id", *(c for c in ORIGIN_FIELDS if c in utt.columns)]].set_index("utterance_id")
    for stage, name in (("asr", ASR_STAGE), ("classifier", CLASSIFIER_STAGE)):
        df = tables[name]
        df = df[["row_id", "utterance_id", "split"]][isin(df["utterance_id"], utt.index)]  # noise examples have no utterance (and no sentiment)
        for split, fields in sorted(_stage_rules(spec, stage).items()):
            rows = df[df["split"] == split]
            for field_name, allowed in fields.items():
                origin = utt[field_name].reindex(rows["utterance_id"]).to_numpy()
                bad = rows[~pd.Series(origin, index=rows.index).isin(allowed)]
                if len(bad):
                    report.fail(
                        f"{name}: {len(bad)} {split} rows use {field_name} outside eligibility.{stage}.{split} "
                        f"{allowed}: rows {_examples(bad['row_id'])}"
                    )
    report.passed("stage rows use only the label origins their stage and split allow")
