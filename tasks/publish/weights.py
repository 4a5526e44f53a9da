"""Classifier-stage class weights: rare sentiments count more, per split.

Why per split and mean 1: a training job can use `class_weight` directly in the loss (or a
weighted sampler) without rescaling the learning rate, and dev/test weights describe their own
distribution.

Exact order, per split, over speech windows (speech_present true and sentiment not null):
1. freq_c = count_c / N (N = speech windows of the split);
2. raw_c = (1 / freq_c) ** power;
3. normalise: w_c = raw_c * N / sum_c(count_c * raw_c), so the mean weight over the N rows is 1;
4. only with max_weight: classes above it are fixed at max_weight and the remaining classes are
   rescaled so the mean stays 1; repeated until no class exceeds the cap (water-filling). Capped
   classes keep the cap, so after step 4 both "mean 1" and "<= max_weight" hold. A cap below 1
   cannot hold with mean 1: then every class gets 1.0 (a warning says so).
Non-speech windows and speech windows without a sentiment get 1.0.
With the defaults (power 1, no cap) class_weight x freq is the same for every class of a split;
`check_weights` checks that, and for other settings recomputes the weights and compares.
"""

from __future__ import annotations

import math

import pandas as pd

from tasks.spec import WeightSpec

_TOL = 1e-6


def _split_key(value: object) -> str:
    return "null" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def speech_mask(windows: pd.DataFrame) -> pd.Series:
    """Windows that carry a class: speech present and a sentiment."""
    present = windows["speech_present"].fillna(False).astype(bool)
    return present & windows["sentiment"].notna()


def class_weights(counts: dict[str, int], spec: WeightSpec) -> tuple[dict[str, float], list[str]]:
    """Per-class weights for one split's speech-window counts (see the module docstring)."""
    counts = {c: n for c, n in counts.items() if n > 0}
    warnings: list[str] = []
    if not counts:
        return {}, warnings
    total = sum(counts.values())
    raw = {c: (total / n) ** spec.power for c, n in counts.items()}
    scale = total / sum(counts[c] * raw[c] for c in counts)
    weights = {c: raw[c] * scale for c in counts}
    cap = spec.max_weight
    if cap is None:
        return weights, warnings
    if cap < 1.0:
        warnings.append(f"max_weight {cap:g} is below 1, which cannot hold with mean weight 1; all weights are 1.0")
        return dict.fromkeys(counts, 1.0), warnings
    capped: set[str] = set()
    while True:
        over = {c for c in counts if c not in capped and weights[c] > cap + _TOL}
        if not over:
            break
        capped |= over
        free = [c for c in counts if c not in capped]
        budget = total - sum(counts[c] * cap for c in capped)
        if not free or budget <= 0:
            return dict.fromkeys(counts, 1.0), warnings
        free_scale = budget / sum(counts[c] * raw[c] for c in free)
        weights = {c: (cap if c in capped else raw[c] * free_scale) for c in counts}
    return weights, warnings


def inverse_frequency_weights(windows: pd.DataFrame, spec: WeightSpec) -> tuple[pd.Series, dict]:
    """`class_weight` for every window (aligned to `windows.index`) and {split: {class: {weight, count}}}."""
    weights = pd.Series(1.0, index=windows.index, dtype="float64", name="class_weight")
    report: dict = {}
    if windows.empty:
        return weights, report
    speech = speech_mask(windows)
    split_keys = windows["split"].map(_split_key) if "split" in windows.columns else pd.Series("null", index=windows.index)
    for split in sorted(set(split_keys[speech])):
        rows = windows[speech & (split_keys == split)]
        counts = {str(c): int(n) for c, n in rows["sentiment"].value_counts().items()}
        per_class, warnings = class_weights(counts, spec)
        weights.loc[rows.index] = rows["sentiment"].map(per_class).astype("float64")
        report[split] = {c: {"weight": per_class[c], "count": counts[c]} for c in sorted(per_class)}
        if warnings:
            report.setdefault("warnings", []).extend(f"split {split}: {w}" for w in warnings)
    return weights, report


def window_counts(windows: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{split: {class: speech windows}}: the small, mergeable reduction the weights need (one per shard)."""
    if windows.empty:
        return {}
    speech = windows[speech_mask(windows)]
    keys = speech["split"].map(_split_key) if "split" in speech.columns else pd.Series("null", index=speech.index)
    out: dict[str, dict[str, int]] = {}
    for (split, cls), n in speech.groupby([keys, speech["sentiment"]]).size().items():
        out.setdefault(str(split), {})[str(cls)] = int(n)
    return out


def merge_counts(parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum per-shard `window_counts`."""
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for split, per_class in part.items():
            for cls, n in per_class.items():
                total.setdefault(split, {})[cls] = total.setdefault(split, {}).get(cls, 0) + int(n)
    return total


def weights_from_counts(counts: dict[str, dict[str, int]], spec: WeightSpec) -> tuple[dict[str, dict[str, float]], dict]:
    """{split: {class: weight}} and the weight report from global speech-window counts.

    What `inverse_frequency_weights` computes, from a reduction instead of the windows, so each
    shard's publish task weights its own windows."""
    table: dict[str, dict[str, float]] = {}
    report: dict = {}
    for split in sorted(counts):
        per_class, warnings = class_weights(dict(counts[split]), spec)
        table[split] = per_class
        kept = {c: n for c, n in counts[split].items() if n > 0}
        report[split] = {c: {"weight": per_class[c], "count": kept[c]} for c in sorted(per_class)}
        if warnings:
            report.setdefault("warnings", []).extend(f"split {split}: {w}" for w in warnings)
    return table, report


def apply_weights(windows: pd.DataFrame, table: dict[str, dict[str, float]]) -> pd.Series:
    """`class_weight` per window from `weights_from_counts`' table (1.0 for non-speech windows)."""
    weights = pd.Series(1.0, index=windows.index, dtype="float64", name="class_weight")
    if windows.empty:
        return weights
    speech = speech_mask(windows)
    keys = windows["split"].map(_split_key) if "split" in windows.columns else pd.Series("null", index=windows.index)
    for split, per_class in table.items():
        rows = windows[speech & (keys == split)]
        if len(rows):
            weights.loc[rows.index] = rows["sentiment"].map(per_class).astype("float64")
    return weights


def check_weights(windows: pd.DataFrame, spec: WeightSpec) -> list[str]:
    """Sentences describing windows whose `class_weight` breaks the documented rule (empty = fine)."""
    problems: list[str] = []
    if windows.empty:
        return problems
    if "class_weight" not in windows.columns:
        return ["classifier windows have no class_weight column"]
    actual = windows["class_weight"].astype("float64")
    speech = speech_mask(windows)
    bad_other = windows[~speech & ((actual - 1.0).abs() > _TOL)]
    if not bad_other.empty:
        problems.append(f"{len(bad_other)} non-speech or unlabelled windows have class_weight != 1.0")
    split_keys = windows["split"].map(_split_key) if "split" in windows.columns else pd.Series("null", index=windows.index)
    expected, _ = inverse_frequency_weights(windows, spec)
    default_rule = spec.power == 1.0 and spec.max_weight is None
    for split in sorted(set(split_keys[speech])):
        mask = speech & (split_keys == split)
        rows = windows[mask]
        if default_rule:
            freq = rows["sentiment"].map(rows["sentiment"].value_counts(normalize=True))
            product = actual[mask] * freq
            spread = float(product.max() - product.min())
            if spread > _TOL * max(1.0, float(product.abs().mean())):
                problems.append(
                    f"split {split}: class_weight x frequency is not constant (spread {spread:.3g})"
                )
        diff = (actual[mask] - expected[mask]).abs()
        if float(diff.max()) > _TOL * max(1.0, float(expected[mask].abs().max())):
            problems.append(
                f"split {split}: class_weight differs from (1/freq)**{spec.power:g}"
                f"{'' if spec.max_weight is None else f' capped at {spec.max_weight:g}'} with mean 1 "
                f"(largest difference {float(diff.max()):.3g})"
            )
        mean = float(actual[mask].mean())
        if abs(mean - 1.0) > _TOL:
            problems.append(f"split {split}: mean class_weight over speech windows is {mean:.6f}, not 1")
    return problems
