"""Which detector decided an item's speech, and what the card and the guards say about it.

`decide` runs after Silero VAD in the speech stage: an item where VAD covers less than
`speech_check.LOW_SPEECH_SHARE` gets the energy + pitch second opinion (`tasks.label.speech_check`),
cached by segment key like the VAD result. Each utterance records the outcome in the
``speech_detector`` column (docs/manifest-contract.md):

- ``vad``: Silero VAD's intervals are used (it heard enough speech, or the second opinion heard none
  but VAD heard a little);
- ``second_opinion``: VAD heard little or nothing and the second opinion heard speech; the intervals
  are the union of both;
- ``none``: neither heard speech: every window of the item is non-speech.

`speech_section` counts these per source and emotion for the card, and `label_guards` records a
warning (`speech_label_dropped`) for every human sentiment label that reaches no speech-present
classifier window, so a label is never lost silently.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from manifests.schema import SPEECH_DETECTORS as DETECTORS
from tasks.core import guards
from tasks.core.intervals import merge_intervals
from tasks.label import speech_check
from tasks.label.speech import VAD_SR

__all__ = ["DETECTORS", "MAX_DROPPED_IDS", "decide", "dropped_guard", "label_guards", "second_opinion_guard",
           "speech_section"]

MAX_DROPPED_IDS = 20  # utterance ids a speech_label_dropped record lists
HUMAN_ORIGINS: frozenset[str] = frozenset({"human", "mapped_emotion"})


def _duration(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def decide(items: pd.DataFrame, vad: Sequence[list[tuple[float, float]]], cache_root: str,
           enabled: bool = True) -> tuple[list[list[list[float]]], list[str]]:
    """(speech intervals, detector) per item, in item order; `vad` holds VAD's intervals per item.

    Items that need a second opinion are read again (they are few); a read that fails now keeps
    VAD's answer, since the VAD stage already decided the item is readable.
    """
    intervals: list[list[tuple[float, float]]] = [[(float(a), float(b)) for a, b in v] for v in vad]
    ask = [i for i, row in enumerate(items.itertuples(index=False))
           if enabled and _asks(intervals[i], _duration(getattr(row, "duration_s", None)))]
    opinions = _second_opinions(items.iloc[ask], cache_root) if ask else {}
    detectors = ["vad" if iv else "none" for iv in intervals]
    for i in ask:
        extra = opinions.get(items.index[i])
        if extra:
            intervals[i] = merge_intervals([*intervals[i], *extra])
            detectors[i] = "second_opinion"
    return [[[a, b] for a, b in iv] for iv in intervals], detectors  # type: ignore[misc]


def _asks(intervals: list[tuple[float, float]], duration: float | None) -> bool:
    if not intervals:
        return True
    return duration is None or speech_check.needs_second_opinion(intervals, duration)


def _second_opinions(items: pd.DataFrame, cache_root: str) -> dict[Any, list[tuple[float, float]]]:
    """Second-opinion intervals by item index (cached by segment key)."""
    from tasks.core.audio import read_audio
    from tasks.core.label_cache import LabelCache

    cache = LabelCache.shared(cache_root, "speech-second-opinion", {"v": speech_check.VERSION})
    keys = {idx: k for idx, k in items["segment_key"].items() if isinstance(k, str)}
    hits = cache.get_many(keys.values())
    out: dict[Any, list[tuple[float, float]]] = {}
    fresh: dict[str, dict[str, Any]] = {}
    for idx, row in items.iterrows():
        key = keys.get(idx)
        if key in hits:
            out[idx] = [tuple(p) for p in json.loads(hits[key]["intervals"])]
            continue
        offset = _duration(row.get("offset_s")) or 0.0
        try:
            audio = read_audio(row.get("audio_uri"), offset_s=offset, duration_s=_duration(row.get("duration_s")),
                               target_sr=VAD_SR, mono=True)
        except Exception:  # the VAD stage read it; a failure now keeps VAD's answer
            continue
        out[idx] = speech_check.second_opinion(audio, VAD_SR)
        if key is not None:
            fresh[key] = {"intervals": json.dumps([[a, b] for a, b in out[idx]])}
    cache.put_many(fresh)
    return out


# ------------------------------------------------------------------------------- card and guards
def _by_source_emotion(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    if frame.empty:
        return {}
    emotion = frame["emotion"].fillna("(none)") if "emotion" in frame.columns else pd.Series("(none)", frame.index)
    counts = frame.assign(_e=emotion).groupby(["source", "_e"]).size()
    out: dict[str, dict[str, int]] = {}
    for (source, emo), n in sorted(counts.items()):
        out.setdefault(str(source), {})[str(emo)] = int(n)
    return out


def _labels_without_speech(utterances: pd.DataFrame, classifier: pd.DataFrame) -> pd.DataFrame:
    """Human-labelled utterances that have classifier windows, none of them speech-present."""
    if utterances.empty or classifier.empty or "sentiment_origin" not in utterances.columns:
        return utterances.iloc[0:0]
    per_utt = classifier.groupby("utterance_id")["speech_present"].any()
    silent = set(per_utt.index[~per_utt.astype(bool)])
    human = utterances["sentiment_origin"].isin(HUMAN_ORIGINS) & utterances["sentiment"].notna()
    return utterances[human & utterances["utterance_id"].isin(silent)]


def speech_section(utterances: pd.DataFrame, classifier: pd.DataFrame) -> dict[str, Any]:
    """The card's `speech_detection` section: detector counts per source, items per source and emotion."""
    detector = (utterances["speech_detector"] if "speech_detector" in utterances.columns
                else pd.Series(None, index=utterances.index, dtype=object))
    by_source: dict[str, dict[str, int]] = {}
    for (source, det), n in sorted(utterances.assign(_d=detector.fillna("unknown"))
                                   .groupby(["source", "_d"]).size().items()):
        by_source.setdefault(str(source), {})[str(det)] = int(n)
    return {
        "rule": (f"Silero VAD first; an item with VAD speech under {speech_check.LOW_SPEECH_SHARE:.0%} of its "
                 f"duration gets the energy + pitch second opinion (tasks/label/speech_check.py v{speech_check.VERSION})"),
        "detector_by_source": by_source,
        "second_opinion_by_source_emotion": _by_source_emotion(utterances[detector == "second_opinion"]),
        "no_speech_by_source_emotion": _by_source_emotion(utterances[detector == "none"]),
        "human_labels_without_speech_by_source_emotion": _by_source_emotion(
            _labels_without_speech(utterances, classifier)),
    }


def label_guards(utterances: pd.DataFrame, classifier: pd.DataFrame) -> list[dict[str, Any]]:
    """`speech_label_dropped` (warning) and `speech_second_opinion` (info) records, when they apply."""
    out: list[dict[str, Any]] = []
    dropped = _labels_without_speech(utterances, classifier)
    if len(dropped):
        out.append(dropped_guard(len(dropped), _by_source_emotion(dropped),
                                 sorted(dropped["utterance_id"].astype(str))[:MAX_DROPPED_IDS]))
    if "speech_detector" in utterances.columns:
        second = utterances[utterances["speech_detector"] == "second_opinion"]
        if len(second):
            out.append(second_opinion_guard(len(second), _by_source_emotion(second)))
    return out


def dropped_guard(n: int, counts: dict[str, dict[str, int]], ids: list[str]) -> dict[str, Any]:
    """The `speech_label_dropped` record: `n` human-labelled utterances without a speech window;
    `ids` the lowest of them (shared by the frame-based and the aggregated card)."""
    return guards.guard(
        "speech_label_dropped",
        f"{n} utterance(s) with a human sentiment label have no speech-present classifier window, "
        f"so their label never reaches the classifier stage (by source and emotion: {counts}); listen to "
        f"e.g. {', '.join(ids[:3])}, and lower "
        "segments.speech_threshold or segments.min_speech_ratio if they are speech.",
        counts=counts, utterances=ids[:MAX_DROPPED_IDS])


def second_opinion_guard(n: int, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The `speech_second_opinion` record: `n` utterances whose speech came from the second opinion."""
    return guards.guard(
        "speech_second_opinion",
        f"Silero VAD heard little or no speech in {n} utterance(s) that the energy + pitch second "
        f"opinion judged speech; their windows use both detectors' intervals (by source and emotion: "
        f"{counts}).", level="info", counts=counts)
