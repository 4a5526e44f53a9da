"""The contract's rules, reimplemented in manifests/, agree with the pipeline's implementation."""

from __future__ import annotations

import random

import pytest

from manifests import rules
from manifests.augmentation import speed_output_length
from tasks.plan.balance import _source_cap
from tasks.plan.stage_rows import utterance_duration_after
from tasks.publish.weights import class_weights as pipeline_weights
from tasks.publish.windows import window_bounds as pipeline_windows
from tasks.spec import WeightSpec


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (3.0, [(0.0, 5.0, 3.0)]),
        (5.0, [(0.0, 5.0, 5.0)]),
        (5.5, [(0.0, 5.0, 5.0)]),  # tail 0.5 < 1 s: dropped
        (6.0, [(0.0, 5.0, 5.0), (1.0, 6.0, 5.0)]),  # tail 1 s: a last window aligned to the end
        (7.5, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0)]),
        (9.0, [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (4.0, 9.0, 5.0)]),
        (0.0, []),
    ],
)
def test_window_bounds_by_hand(duration, expected):
    assert rules.window_bounds(duration) == expected


def test_window_bounds_agree_with_the_pipeline():
    rng = random.Random(5)
    for _ in range(3000):
        duration = round(rng.uniform(0.01, 40.0), rng.choice([2, 3, 6]))
        window = rng.choice([5.0, 4.0, 3.0, 2.0])
        hop = rng.choice([window / 2, window, 1.0, 0.7])
        last = rng.choice([0.0, 0.5, 1.0, 2.0])
        assert rules.window_bounds(duration, window, hop, last) == pipeline_windows(duration, window, hop, last), (
            duration, window, hop, last)


def test_class_weights_agree_with_the_pipeline():
    rng = random.Random(7)
    for _ in range(2000):
        counts = {c: rng.choice([0, 1, 2, 5, 40, 900]) for c in ("negative", "neutral", "positive")}
        power = rng.choice([1.0, 0.5, 2.0, 0.3])
        cap = rng.choice([None, 0.5, 1.0, 1.3, 2.0, 10.0])
        ours = rules.class_weights(counts, power, cap)
        theirs, _ = pipeline_weights(counts, WeightSpec(power=power, max_weight=cap))
        assert ours.keys() == theirs.keys()
        for c in ours:
            assert ours[c] == pytest.approx(theirs[c], rel=1e-12), (counts, power, cap)
        n = sum(counts.values())
        if n:
            assert sum(counts[c] * w for c, w in ours.items()) / n == pytest.approx(1.0)
            if cap is not None and cap >= 1.0:
                assert max(ours.values()) <= cap + 1e-9


def test_default_weights_times_frequency_is_constant():
    counts = {"negative": 10, "neutral": 70, "positive": 20}
    w = rules.class_weights(counts)
    products = {c: w[c] * counts[c] / 100 for c in counts}
    assert max(products.values()) == pytest.approx(min(products.values()))


def test_utterance_duration_matches_the_pipeline_and_the_dsp():
    rng = random.Random(3)
    for _ in range(2000):
        d = round(rng.uniform(0.1, 30.0), rng.choice([3, 6]))
        speed = rng.choice([0.95, 1.0, 1.05, 0.9, 1.1])
        ours = rules.utterance_duration(d, speed, recipe_applied=False)
        assert ours == pytest.approx(utterance_duration_after(d, speed), abs=1e-12)
        assert ours == speed_output_length(round(d * 16000), speed) / 16000
    assert rules.utterance_duration(2.5, 0.95, recipe_applied=True) == 2.5  # a materialised file as is


def test_source_cap_matches_the_balancer():
    for n in (1, 2, 3, 10, 77):
        for share in (0.1, 0.25, 1 / 3, 0.5, 0.6, 1.0):
            assert rules.source_cap(n, share) == _source_cap(n, share)
