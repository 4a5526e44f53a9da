"""The contract's numeric rules, written independently of the pipeline (`tasks/`).

Why a second implementation: the validator (and a training job that wants to check a release)
must judge the manifests by the documented rule, not by re-running the code that wrote them, so a
bug in `tasks/publish/windows.py` or `tasks/publish/weights.py` shows up as a failed validation instead of being
copied into the check. `tests/manifests/test_rules.py` cross-checks both implementations.

- `window_bounds`: classifier windows of one utterance (docs/balance-and-splits.md, "Windows").
- `class_weights`: inverse-frequency class weights with `power` and `max_weight`.
- `utterance_duration`: an utterance's length in utterance time from its stage row.
- `source_cap`: the ASR balancer's per-source cap on a class.
"""

from __future__ import annotations

import math

RESAMPLE_SR = 16000  # the rate the augmentation recipe resamples at (speed changes length by it)
_EPS = 1e-6


def _us(x: float) -> float:
    """Round to microseconds (and turn -0.0 into 0.0), as the writer does."""
    return round(float(x), 6) + 0.0


def window_bounds(
    duration_s: float, window_s: float = 5.0, hop_s: float = 2.5, min_last_window_s: float = 1.0
) -> list[tuple[float, float, float]]:
    """(start_s, end_s, valid_s) of every window of an utterance `duration_s` long (utterance time).

    At most one window: (0, window, duration) padded. Longer: full windows at 0, hop, 2 hop, ...
    while they fit; then, if the tail after the last one is > 0 and >= min_last_window_s, one
    more full window ending at the utterance's end.
    """
    duration = _us(duration_s) if duration_s is not None and math.isfinite(duration_s) else 0.0
    window = _us(window_s)
    if duration <= 0 or window <= 0 or hop_s <= 0:
        return []
    if duration <= window + _EPS:
        return [(0.0, window, min(duration, window))]
    starts: list[float] = []
    k = 0
    while _us(_us(k * hop_s) + window) <= duration:
        starts.append(_us(k * hop_s))
        k += 1
    out = [(s, _us(s + window), window) for s in starts]
    tail = _us(duration - out[-1][1])
    if tail > 0 and tail >= _us(min_last_window_s):
        out.append((_us(duration - window), duration, window))
    return out


def utterance_duration(duration_s: float, speed: float, recipe_applied: bool) -> float:
    """Seconds the model hears: a materialised file is already the utterance; a lazy row's source
    segment is resampled by the recipe's speed to round(round(d * 16000) / speed) samples."""
    if recipe_applied:
        return float(duration_s)
    speed = speed if speed and math.isfinite(speed) and speed > 0 else 1.0
    n_in = round(float(duration_s) * RESAMPLE_SR)
    return math.floor(n_in / speed + 0.5) / RESAMPLE_SR  # manifests.augmentation.speed_output_length


def class_weights(counts: dict[str, int], power: float = 1.0, max_weight: float | None = None) -> dict[str, float]:
    """Weight per class from the speech-window counts of one split.

    w_c = (N / n_c) ** power, scaled so the mean over the N windows is 1. With `max_weight`, a class
    above the cap is fixed at the cap and the others rescaled to keep the mean at 1, until no
    class exceeds it; a cap below 1 cannot hold with mean 1, so then every class gets 1.0.
    """
    counts = {c: int(n) for c, n in counts.items() if n > 0}
    if not counts:
        return {}
    total = sum(counts.values())
    raw = {c: (total / n) ** power for c, n in counts.items()}
    scale = total / sum(counts[c] * raw[c] for c in counts)
    weights = {c: raw[c] * scale for c in counts}
    if max_weight is None:
        return weights
    if max_weight < 1.0:
        return dict.fromkeys(counts, 1.0)
    capped: set[str] = set()
    while True:
        over = {c for c in counts if c not in capped and weights[c] > max_weight + _EPS}
        if not over:
            return weights
        capped |= over
        free = [c for c in counts if c not in capped]
        budget = total - sum(counts[c] * max_weight for c in capped)
        if not free or budget <= 0:
            return dict.fromkeys(counts, 1.0)
        free_scale = budget / sum(counts[c] * raw[c] for c in free)
        weights = {c: (max_weight if c in capped else raw[c] * free_scale) for c in counts}


def source_cap(rows_per_class: int, max_source_share: float) -> int:
    """Most distinct items one source may give a balanced class while other sources can fill."""
    if max_source_share >= 1.0:
        return rows_per_class
    return max(1, math.floor(max_source_share * rows_per_class + 1e-9))
