"""The validator's column-wise window check (`validate_rows._clear_passes`) only accepts what the rule accepts.

Why: it replaced a Python loop per utterance; a group it clears is never looked at again, so a false
"clear" would let a broken release through. The oracle is the per-utterance rule (`rules.window_bounds`
compared with the validator's own tolerance), on seeded random utterances at rounding boundaries,
with lazy and materialised speeds, and with one window broken in many of them.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from manifests import rules
from manifests.validate_report import ValidationReport
from manifests.validate_rows import _check_windows, _clear_passes, _groups, _same_windows

SETTINGS = [(5.0, 2.5, 1.0), (0.3, 0.1, 0.05), (4.0, 1.3, 0.0), (2.0, 2.0, 2.0)]


def _duration(rng: random.Random, window: float, hop: float, mixed: bool) -> float:
    kind = rng.random() if mixed else 1.0
    if kind < 0.3:  # exactly on the grid of window ends, or a microsecond either side
        k = rng.randint(0, 12)
        return round(k * hop + window, 6) + rng.choice([0.0, 1e-6, -1e-6, 5e-7, -5e-7])
    if kind < 0.4:  # half a microsecond: where numpy's and Python's rounding may part
        return rng.randint(1, 40_000_000) / 1e6 + 5e-7
    if kind < 0.5:
        return window + rng.choice([0.0, 1e-6, -1e-6, 1e-7])
    return rng.uniform(0.01, 40.0)


def _rows(n: int, seed: int, window: float, hop: float, min_last: float,
          mixed: bool = True) -> tuple[pd.DataFrame, set[str]]:
    """Classifier rows of n utterances; returns the frame and the ids whose windows were broken."""
    rng = random.Random(seed)
    rows, broken = [], set()
    for i in range(n):
        dur = _duration(rng, window, hop, mixed)
        applied = rng.random() < 0.5
        speed = rng.choice([1.0, 0.95, 1.05, 0.9])
        length = rules.utterance_duration(dur, speed, applied) if rng.random() < 0.8 else dur / speed
        wins = [list(w) for w in rules.window_bounds(length, window, hop, min_last)]
        uid = f"u{i}"
        if wins and rng.random() < 0.3:
            broken.add(uid)
            j, c = rng.randrange(len(wins)), rng.randrange(3)
            wins[j][c] += rng.choice([2e-4, -2e-4, 1e-4, 0.5, 1e-3])
            if rng.random() < 0.2:
                wins.pop(j) if len(wins) > 1 else wins.append(list(wins[0]))
        rng.shuffle(wins)
        for j, (s, e, v) in enumerate(wins):
            rows.append({"utterance_id": uid, "audio_uri": f"a/{i}.wav", "offset_s": 0.0, "duration_s": dur,
                         "speed": speed, "recipe_applied": applied, "row_id": f"{uid}@{j}", "start_s": s,
                         "end_s": e, "valid_s": v})
    return pd.DataFrame(rows), broken


def _rule_accepts(key: tuple, rows: np.ndarray, frame: pd.DataFrame, window: float, hop: float,
                  min_last: float) -> bool:
    _, _, _, dur, speed, applied = key
    actual = sorted(zip(frame["start_s"].to_numpy()[rows].tolist(), frame["end_s"].to_numpy()[rows].tolist(),
                        frame["valid_s"].to_numpy()[rows].tolist(), strict=True))
    lengths = {rules.utterance_duration(float(dur), float(speed), applied), float(dur) / float(speed)}
    return any(_same_windows(actual, rules.window_bounds(d, window, hop, min_last)) for d in lengths)


@pytest.mark.parametrize("mixed", [True, False])
def test_clear_passes_never_accept_what_the_rule_rejects(mixed: bool) -> None:
    keys = ["utterance_id", "audio_uri", "offset_s", "duration_s", "speed", "recipe_applied"]
    for n, (window, hop, min_last) in enumerate(SETTINGS):
        frame, broken = _rows(1_200, seed=n, window=window, hop=hop, min_last=min_last, mixed=mixed)
        groups = _groups(frame, keys)
        clear = _clear_passes(groups, *(frame[c].to_numpy(dtype=float) for c in ("start_s", "end_s", "valid_s")),
                              window, hop, min_last)
        accepted = [_rule_accepts(k, r, frame, window, hop, min_last) for k, r in groups]
        false_clear = [k[0] for (k, _), c, a in zip(groups, clear, accepted, strict=True) if c and not a]
        assert not false_clear, (window, hop, min_last, false_clear[:5])
        assert sum(accepted) < len(groups)  # broken groups were made and the rule rejects them
        # ... and it clears the intact groups (all of them away from rounding boundaries), or it would
        # not be worth having
        intact = [k[0] not in broken for k, _ in groups]
        cleared = sum(c and i for c, i in zip(clear, intact, strict=True))
        assert cleared >= (0.8 if mixed else 1.0) * sum(intact), (window, hop, min_last, cleared, sum(intact))


def test_the_report_is_the_rule_s_report() -> None:
    spec = {"segments": {"window_s": 5.0, "hop_s": 2.5, "min_last_window_s": 1.0}}
    frame, broken = _rows(2_000, seed=11, window=5.0, hop=2.5, min_last=1.0)
    report = ValidationReport(release="x")
    _check_windows(frame, spec, report)
    assert len(report.problems) == 1 and "do not follow the window rule" in report.problems[0]
    named = {p.split(" (")[0] for p in report.problems[0].split(": ", 1)[1].split("; ")}
    assert named and named <= broken
    clean = frame[~frame["utterance_id"].isin(broken)]
    report = ValidationReport(release="x")
    _check_windows(clean, spec, report)
    assert report.problems == [] and report.checks


@pytest.mark.parametrize("dtype", [object, "str"])
@pytest.mark.parametrize("seed", range(4))
def test_balance_counts_equal_the_row_loop(dtype: object, seed: int) -> None:
    """`validate_columns.key_counts` (codes, no Python per row) gives what the row loop gave: null keys left
    out, null ids not counted (a key whose ids are all null still appears with 0), repeats counted once."""
    from manifests.validate_columns import key_counts as _counts
    from manifests.validate_columns import key_counts_by_row as _counts_by_row

    rng = random.Random(seed)
    n = rng.randint(1, 400)
    frame = pd.DataFrame({
        "split": pd.Series([rng.choice(["train", "dev", "test", None]) for _ in range(n)], dtype=dtype),
        "sentiment": pd.Series([rng.choice(["positive", "neutral", "negative", None, "odd"]) for _ in range(n)],
                               dtype=dtype),
        "source": pd.Series([rng.choice(["a", "b", "é", ""]) for _ in range(n)], dtype=dtype),
        "utterance_id": pd.Series([rng.choice([f"u{rng.randint(0, n // 3)}", None]) for _ in range(n)], dtype=dtype),
    })
    for keys in (["split", "sentiment"], ["split", "sentiment", "source"]):
        for distinct in (False, True):
            assert _counts(frame, keys, distinct) == _counts_by_row(frame, keys, distinct)
    lone = pd.DataFrame({"split": ["train"], "sentiment": ["positive"], "source": ["a"], "utterance_id": [None]})
    assert _counts(lone, ["split", "sentiment", "source"], True) == {("train", "positive", "a"): 0}
    assert _counts(frame.iloc[:0], ["split"], True) == {}
