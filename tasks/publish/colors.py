"""One colour per class, label origin and split, the same in every plot, page and run.

A person learns "red is negative, blue is a human label" once; a colour that moves between builds
(matplotlib's cycle follows the order values happen to appear) makes every plot a new puzzle.
Known values have hand-picked colours (colour-blind-safe Okabe-Ito hues where they matter);
an unknown value gets one from a fixed palette chosen by a hash of its name, so it is stable too.
"""

from __future__ import annotations

import hashlib

from manifests.schema import SENTIMENT_ORIGINS, SENTIMENTS, SPLITS, TRANSCRIPT_ORIGINS

# Classes: negative red, neutral grey, positive green; windows without speech dark slate.
CLASS_COLOURS: dict[str, str] = {
    "negative": "#d55e00",
    "neutral": "#8c8c8c",
    "positive": "#009e73",
    "non_speech": "#34495e",
    "unknown": "#cccccc",
}
# Origins: people in blues, machines in warm colours; the same name has the same colour wherever
# it appears (a transcript origin and a sentiment origin never share a name but "human").
ORIGIN_COLOURS: dict[str, str] = {
    "human": "#0072b2",
    "mapped_emotion": "#56b4e9",
    "whisper": "#e69f00",
    "aws_transcribe": "#cc79a7",
    "text_classifier": "#e69f00",
    "aws_comprehend": "#cc79a7",
    "vader": "#f0e442",
    "trained": "#e69f00",
    "hf_model": "#a6761d",
    "unknown": "#cccccc",
}
SPLIT_COLOURS: dict[str, str] = {"train": "#4c72b0", "dev": "#dd8452", "test": "#55a868", "unknown": "#cccccc"}
_FALLBACK: tuple[str, ...] = ("#7570b3", "#1b9e77", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
                              "#666666", "#1f78b4", "#b2df8a")
KNOWN_ORIGINS: tuple[str, ...] = tuple(dict.fromkeys((*SENTIMENT_ORIGINS, *TRANSCRIPT_ORIGINS)))


def _fallback(value: str) -> str:
    return _FALLBACK[int(hashlib.sha256(value.encode()).hexdigest()[:8], 16) % len(_FALLBACK)]


def class_colour(value: str) -> str:
    """The colour of a sentiment class (or non_speech / unknown)."""
    return CLASS_COLOURS.get(value) or _fallback(value)


def origin_colour(value: str) -> str:
    """The colour of a label origin (human, mapped_emotion, whisper, ...)."""
    return ORIGIN_COLOURS.get(value) or _fallback(value)


def split_colour(value: str) -> str:
    return SPLIT_COLOURS.get(value) or _fallback(value)


def colour(kind: str, value: str) -> str:
    """`kind` is "class", "origin" or "split"."""
    return {"class": class_colour, "origin": origin_colour, "split": split_colour}[kind](value)


CLASS_ORDER: tuple[str, ...] = (*SENTIMENTS, "non_speech", "unknown")
SPLIT_ORDER: tuple[str, ...] = (*SPLITS, "unknown")
