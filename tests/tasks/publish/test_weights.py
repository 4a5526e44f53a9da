"""Inverse-frequency class weights and the validator's check of them."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.publish.weights import check_weights, inverse_frequency_weights
from tasks.spec import WeightSpec


def _windows() -> pd.DataFrame:
    rows = []
    for split, counts in {"train": {"negative": 10, "neutral": 60, "positive": 30},
                          "dev": {"negative": 4, "positive": 1}}.items():
        for cls, n in counts.items():
            rows += [{"split": split, "sentiment": cls, "speech_present": True}] * n
        rows += [{"split": split, "sentiment": None, "speech_present": False}] * 7
    return pd.DataFrame(rows)


def test_default_weights_times_frequency_constant_and_mean_one() -> None:
    windows = _windows()
    weights, report = inverse_frequency_weights(windows, WeightSpec())
    windows["class_weight"] = weights
    speech = windows[windows["speech_present"]]
    for _split, grp in speech.groupby("split"):
        freq = grp["sentiment"].map(grp["sentiment"].value_counts(normalize=True))
        product = grp["class_weight"] * freq
        assert product.max() - product.min() < 1e-9
        assert grp["class_weight"].mean() == pytest.approx(1.0, abs=1e-12)
    assert (windows.loc[~windows["speech_present"], "class_weight"] == 1.0).all()
    # train: freq 0.1/0.6/0.3 -> 1/freq 10, 1.67, 3.33 scaled so mean is 1 (scale = 1/3)
    assert report["train"]["negative"]["weight"] == pytest.approx(10 / 3)
    assert report["train"]["neutral"] == {"weight": pytest.approx(100 / 180), "count": 60}
    assert set(report["dev"]) == {"negative", "positive"}
    assert check_weights(windows, WeightSpec()) == []


def test_check_weights_catches_wrong_weights() -> None:
    windows = _windows()
    windows["class_weight"], _ = inverse_frequency_weights(windows, WeightSpec())
    broken = windows.copy()
    broken.loc[broken["sentiment"] == "negative", "class_weight"] *= 1.01
    problems = check_weights(broken, WeightSpec())
    assert any("not constant" in p for p in problems)
    noisy = windows.copy()
    noisy.loc[~noisy["speech_present"], "class_weight"] = 2.0
    assert any("non-speech" in p for p in check_weights(noisy, WeightSpec()))


def test_power_softens_weights() -> None:
    windows = _windows()
    full, _ = inverse_frequency_weights(windows, WeightSpec())
    half, report = inverse_frequency_weights(windows, WeightSpec(power=0.5))
    train = windows["split"] == "train"
    neg = train & (windows["sentiment"] == "negative")
    assert 1.0 < half[neg].iloc[0] < full[neg].iloc[0]
    assert half[train & windows["speech_present"]].mean() == pytest.approx(1.0)
    ratio = report["train"]["negative"]["weight"] / report["train"]["neutral"]["weight"]
    assert ratio == pytest.approx((0.6 / 0.1) ** 0.5)
    windows["class_weight"] = half
    assert check_weights(windows, WeightSpec(power=0.5)) == []
    assert check_weights(windows, WeightSpec()) != []  # default rule does not hold for power 0.5


def test_max_weight_caps_then_keeps_mean_one() -> None:
    windows = _windows()
    weights, report = inverse_frequency_weights(windows, WeightSpec(max_weight=2.0))
    speech = windows["speech_present"]
    for split in ("train", "dev"):
        mask = speech & (windows["split"] == split)
        assert weights[mask].max() <= 2.0 + 1e-9
        assert weights[mask].mean() == pytest.approx(1.0)
    assert report["train"]["negative"]["weight"] == pytest.approx(2.0)
    # uncapped classes keep their 1/freq ratio to each other
    assert report["train"]["positive"]["weight"] / report["train"]["neutral"]["weight"] == pytest.approx(2.0)
    windows["class_weight"] = weights
    assert check_weights(windows, WeightSpec(max_weight=2.0)) == []


def test_cap_below_one_gives_uniform_weights_with_warning() -> None:
    weights, report = inverse_frequency_weights(_windows(), WeightSpec(max_weight=0.5))
    assert (weights == 1.0).all()
    assert any("below 1" in w for w in report["warnings"])


def test_speech_window_without_sentiment_and_empty_frame() -> None:
    windows = pd.DataFrame([
        {"split": "train", "sentiment": "positive", "speech_present": True},
        {"split": "train", "sentiment": None, "speech_present": True},
    ])
    weights, report = inverse_frequency_weights(windows, WeightSpec())
    assert weights.tolist() == [1.0, 1.0]
    assert report == {"train": {"positive": {"weight": 1.0, "count": 1}}}
    empty, _ = inverse_frequency_weights(windows.iloc[0:0], WeightSpec())
    assert empty.empty


@pytest.mark.parametrize("spec", [WeightSpec(), WeightSpec(power=0.5, max_weight=2.0)])
def test_weights_from_merged_shard_counts_equal_the_whole_table_weights(spec: WeightSpec) -> None:
    """Publish weights each shard's windows from the merged per-shard counts: the same weights and
    report as weighting all windows at once (no process needs the whole table)."""
    from tasks.publish.weights import apply_weights, merge_counts, weights_from_counts, window_counts

    windows = _windows().sample(frac=1.0, random_state=7).reset_index(drop=True)
    whole, whole_report = inverse_frequency_weights(windows, spec)
    shards = [windows.iloc[i::3] for i in range(3)]
    table, report = weights_from_counts(merge_counts([window_counts(s) for s in shards]), spec)
    per_shard = pd.concat([apply_weights(s, table) for s in shards]).sort_index()
    pd.testing.assert_series_equal(per_shard, whole, check_names=False)
    assert report == whole_report
    assert window_counts(shards[0]) != window_counts(windows)  # the shards really were partial
