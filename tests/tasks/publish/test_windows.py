"""Classifier windows: their geometry (the window rule), speech ratio per window, utterance and noise windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.publish.windows import (
    check_windows,
    classifier_windows,
    noise_windows,
    speech_ratio,
    window_bounds,
)
from tasks.spec import SegmentSpec


# ------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (0.0, []),
        (0.4, [(0.0, 5.0, 0.4)]),
        (5.0, [(0.0, 5.0, 5.0)]),
        (5.0000004, [(0.0, 5.0, 5.0)]),  # float noise is not a remainder
        (7.5, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0)]),  # exact multiple of the hop
        (10.0, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (5.0, 10.0, 5.0)]),
        (8.499999, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0)]),  # tail just below 1 s: dropped
        (8.5, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (3.5, 8.5, 5.0)]),  # tail exactly 1 s: end-aligned
        (8.6, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (3.6, 8.6, 5.0)]),
        (6.0, [(0.0, 5.0, 5.0), (1.0, 6.0, 5.0)]),
        (5.9, [(0.0, 5.0, 5.0)]),
    ],
)
def test_window_bounds(duration: float, expected: list[tuple[float, float, float]]) -> None:
    assert window_bounds(duration) == expected


def test_window_bounds_floating_point_and_other_settings() -> None:
    # 0.1 * k accumulates error; starts must still be exact microsecond values
    windows = window_bounds(1.0 + 1e-9, window_s=0.3, hop_s=0.1, min_last_window_s=0.05)
    assert [w[0] for w in windows] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert all(round(e - s, 6) == 0.3 for s, e, _ in windows)
    # min_last_window_s = 0 keeps any tail but never duplicates an exact fit
    assert window_bounds(7.5, min_last_window_s=0.0)[-1] == (2.5, 7.5, 5.0)
    assert window_bounds(7.6, min_last_window_s=0.0)[-1] == (2.6, 7.6, 5.0)
    with pytest.raises(ValueError):
        window_bounds(3.0, hop_s=0)


def test_check_windows_accepts_rule_and_flags_breaks() -> None:
    spec = SegmentSpec()
    rows = [{"utterance_id": f"u{d}", "row_id": f"u{d}@{s:.2f}", "start_s": s, "end_s": e, "valid_s": v}
            for d in (0.7, 5.0, 8.6, 13.2) for s, e, v in window_bounds(d)]
    good = pd.DataFrame(rows)
    assert check_windows(good, spec) == []
    assert check_windows(good.drop(columns="utterance_id"), spec) == []
    bad = good.copy()
    bad.loc[1, "end_s"] = bad.loc[1, "start_s"] + 4.0  # u5.0: a 4 s window
    bad.loc[2, "valid_s"] = 2.0  # u8.6's first window padded although the utterance is long
    bad.loc[3, "valid_s"] = 6.0  # more real audio than the window holds
    problems = check_windows(bad, spec)
    assert len(problems) == 3
    assert any("padded" in p and "u8.6@0.00" in p for p in problems)


def test_speech_ratio_merges_overlaps_and_clips() -> None:
    assert speech_ratio([(1.0, 2.0), (1.5, 3.0)], 0.0, 5.0) == pytest.approx(0.4)
    assert speech_ratio([(4.0, 9.0)], 0.0, 5.0) == pytest.approx(0.2)
    assert speech_ratio([], 0.0, 5.0) == 0.0
    assert speech_ratio([(0, 1)], 2.0, 2.0) == 0.0


# ----------------------------------------------------------------------------- stage windows
def test_classifier_windows_map_intervals_by_speed_and_copy_columns() -> None:
    spec = SegmentSpec(min_speech_ratio=0.1)
    rows = pd.DataFrame([
        {"row_id": "a/1#0", "utterance_id": "a/1", "split": "train", "sentiment": "negative",
         "duration_s": 10.0, "speed": 1.05, "source_audio_uri": "/x.wav", "offset_s": 3.0,
         "speech_intervals": [(0.0, 1.05)]},  # 1.0 s of utterance time at speed 1.05
        {"row_id": "a/2#1", "utterance_id": "a/2", "split": "dev", "sentiment": "neutral",
         "duration_s": 2.0, "speed": 1.0, "source_audio_uri": "/y.wav", "offset_s": 0.0,
         "speech_intervals": [(0.5, 1.0)]},
    ])
    out = classifier_windows(rows, spec)
    assert "speech_intervals" not in out.columns
    a = out[out["utterance_id"] == "a/1"]
    assert a["row_id"].tolist() == ["a/1#0@0.00", "a/1#0@2.50", "a/1#0@5.00"]
    assert a.iloc[0]["speech_ratio"] == pytest.approx(1.0 / 5.0)
    assert a.iloc[0]["speech_present"] and a.iloc[0]["sentiment"] == "negative"
    assert a.iloc[0]["class_index"] == 0
    assert not a.iloc[1]["speech_present"] and pd.isna(a.iloc[1]["sentiment"])
    assert pd.isna(a.iloc[1]["class_index"])
    assert (a["source_audio_uri"] == "/x.wav").all() and (a["offset_s"] == 3.0).all()
    b = out[out["utterance_id"] == "a/2"].iloc[0]
    # a short utterance: one padded window; the ratio is over its 2 s of real audio
    assert (b["start_s"], b["end_s"], b["valid_s"]) == (0.0, 5.0, 2.0)
    assert b["speech_ratio"] == pytest.approx(0.25)
    assert out["row_id"].is_unique
    assert check_windows(out, spec) == []


def test_classifier_windows_accept_parquet_style_intervals() -> None:
    rows = pd.DataFrame([
        {"row_id": "a#0", "duration_s": 6.0, "speed": 1.0, "sentiment": "positive",
         "speech_intervals": np.array([np.array([0.0, 3.0]), np.array([5.0, 6.0])], dtype=object)},
        {"row_id": "b#0", "duration_s": 3.0, "speed": None, "sentiment": "neutral", "speech_intervals": None},
    ])
    out = classifier_windows(rows, SegmentSpec())
    assert out["speech_ratio"].tolist() == [pytest.approx(0.6), pytest.approx(0.6), 0.0]  # windows 0-5, 1-6
    assert out["speech_present"].tolist() == [True, True, False]


def test_classifier_windows_empty_input() -> None:
    rows = pd.DataFrame(columns=["row_id", "utterance_id", "duration_s", "speed", "speech_intervals", "sentiment"])
    out = classifier_windows(rows, SegmentSpec())
    assert out.empty and {"start_s", "speech_present"} <= set(out.columns)


def test_noise_windows_are_deterministic_non_speech_examples() -> None:
    spec = SegmentSpec(non_speech_windows_per_noise_file=2)
    files = [("n1", "/noise/n1.wav", 12.0, "train"), ("n2", "/noise/n2.wav", 3.0, "dev")]
    out = noise_windows(files, spec)
    assert out.equals(noise_windows(files, spec))
    n1 = out[out["utterance_id"] == "noise/n1"]
    assert n1["offset_s"].tolist() == [0.0, 7.0]  # first and end-aligned last candidate
    assert n1["row_id"].tolist() == ["noise/n1@0.00", "noise/n1@7.00"]
    n2 = out[out["utterance_id"] == "noise/n2"]
    assert len(n2) == 1 and n2.iloc[0]["valid_s"] == 3.0 and n2.iloc[0]["split"] == "dev"
    assert (out["source"] == "noise").all() and not out["speech_present"].any()
    assert out["sentiment"].isna().all() and (out["end_s"] - out["start_s"] == 5.0).all()
    assert check_windows(out, spec) == []
    assert noise_windows(files, SegmentSpec(non_speech_windows_per_noise_file=0)).empty
    three = noise_windows([("n3", "/n3.wav", 20.0, "train")], SegmentSpec(non_speech_windows_per_noise_file=3))
    assert three["offset_s"].tolist() == [0.0, 7.5, 15.0]


def _windows_by_record(rows: pd.DataFrame, spec: SegmentSpec) -> pd.DataFrame:
    """The record loop `classifier_windows` was before it was built a column at a time (the oracle)."""
    from manifests.schema import CLASS_INDEX
    from tasks.publish.windows import _as_intervals, _speed, window_bounds

    records: list[dict] = []
    for row in rows.to_dict("records"):
        speed = _speed(row.get("speed"))
        intervals = [(a / speed, b / speed) for a, b in _as_intervals(row.get("speech_intervals"))]
        base = {k: v for k, v in row.items() if k != "speech_intervals"}
        for start, end, valid in window_bounds(float(row["duration_s"]), spec.window_s, spec.hop_s,
                                               spec.min_last_window_s):
            ratio = round(speech_ratio(intervals, start, start + valid), 6)
            present = ratio >= spec.min_speech_ratio
            sentiment = row.get("sentiment") if present else None
            records.append({**base, "row_id": f"{row['row_id']}@{start:.2f}", "start_s": start, "end_s": end,
                            "valid_s": valid, "speech_ratio": ratio, "speech_present": present,
                            "sentiment": sentiment,
                            "class_index": CLASS_INDEX.get(sentiment) if isinstance(sentiment, str) else None})
    columns = [c for c in rows.columns if c != "speech_intervals"]
    columns += [c for c in ("start_s", "end_s", "valid_s", "speech_ratio", "speech_present", "class_index")
                if c not in columns]
    out = pd.DataFrame(records, columns=columns)
    out["speech_present"] = out["speech_present"].astype(bool)
    out["class_index"] = out["class_index"].astype("Int32")
    return out


@pytest.mark.parametrize("n", [0, 1, 60])
def test_classifier_windows_equal_the_record_loop(n: int) -> None:
    """Same rows, values and dtypes as the record loop, for every column kind a stage row carries
    (str with nulls, object bools with None, ints with None, Int64, lists, numpy arrays, NaN speeds)."""
    rng = np.random.default_rng(n)
    spec = SegmentSpec(window_s=2.0, hop_s=1.0, min_last_window_s=0.5, min_speech_ratio=0.3)
    durations = rng.choice([0.0, 0.4, 1.999, 2.0, 3.3, 7.25, float("nan")], n)
    rows = pd.DataFrame({
        "row_id": [f"u{i}/v{i % 3}" for i in range(n)],
        "utterance_id": pd.Series([f"u{i}" for i in range(n)], dtype="str"),
        "sentiment": pd.Series([("positive", None, "neutral", "odd")[i % 4] for i in range(n)], dtype="str"),
        "split": pd.Series([("train", None)[i % 2] for i in range(n)], dtype=object),
        "duration_s": durations,
        "speed": [(1.0, 1.1, None, float("nan"), 0.9)[i % 5] for i in range(n)],
        "recipe_applied": pd.Series([(True, False, None)[i % 3] for i in range(n)], dtype=object),
        "aug_seed": [(7, None)[i % 2] for i in range(n)],
        "count": pd.array([(1, None)[i % 2] for i in range(n)], dtype="Int64"),
        "speech_intervals": [([[0.0, 0.5], [1.0, 6.0]], None, np.array([[0.2, 1.4]]), [])[i % 4] for i in range(n)],
        "tags": [["a", "b"] if i % 2 else [] for i in range(n)],
    })
    got, expected = classifier_windows(rows, spec), _windows_by_record(rows, spec)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.dtypes) == list(expected.dtypes)
