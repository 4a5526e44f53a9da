"""ASR-stage sampling: uniform train classes, stable choices, repeats as variants, source caps."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.plan.balance import eligible, pick_order, sample_asr_rows
from tasks.spec import BalanceSpec, EligibilitySpec


def _rows(counts: dict[tuple[str, str, str], int], tag: str = "") -> pd.DataFrame:
    """counts: (split, source, sentiment) -> number of utterances."""
    rows = []
    for (split, source, sentiment), n in counts.items():
        for i in range(n):
            rows.append(
                {"utterance_id": f"{source}/{split}_{sentiment}_{tag}{i}", "source": source,
                 "split": split, "sentiment": sentiment}
            )
    return pd.DataFrame(rows)


IMBALANCED = {
    ("train", "a", "negative"): 100, ("train", "a", "neutral"): 150, ("train", "a", "positive"): 220,
    ("dev", "a", "negative"): 5, ("dev", "a", "neutral"): 20, ("dev", "a", "positive"): 9,
    ("test", "a", "positive"): 7,
}


def _train_counts(out: pd.DataFrame) -> dict[str, int]:
    return out[out["split"] == "train"]["sentiment"].value_counts().to_dict()


def test_undersample_uniform_train_natural_dev_test() -> None:
    items = _rows(IMBALANCED)
    items.loc[len(items)] = {"utterance_id": "a/unlabelled", "source": "a", "split": "train", "sentiment": None}
    out, report = sample_asr_rows(items, BalanceSpec(), seed=13)
    assert _train_counts(out) == {"negative": 100, "neutral": 100, "positive": 100}
    assert out[out["split"] == "dev"]["sentiment"].value_counts().to_dict() == {
        "negative": 5, "neutral": 20, "positive": 9}
    assert (out[out["split"] != "train"]["variant"] == 0).all()
    assert out["utterance_id"].is_unique and (out["variant"] == 0).all()
    assert "a/unlabelled" not in set(out["utterance_id"])
    assert report["excluded"] == {"null_sentiment": 1, "no_split": 0, "ineligible": 0, "not_selected": 50 + 120}
    assert report["splits"]["train"]["classes"]["positive"] == {"available": 220, "selected": 100, "distinct": 100}
    assert report["by_source"]["train"]["a"]["neutral"] == {"available": 150, "selected": 100}
    # test has only positives: natural distribution, no balancing, no error
    assert report["splits"]["test"]["balanced"] is False


def test_undersample_is_deterministic_and_depends_on_seed() -> None:
    items = _rows(IMBALANCED)
    a, _ = sample_asr_rows(items, BalanceSpec(), seed=1)
    b, _ = sample_asr_rows(items.sample(frac=1.0, random_state=4), BalanceSpec(), seed=1)
    c, _ = sample_asr_rows(items, BalanceSpec(), seed=2)
    assert a["utterance_id"].tolist() == b["utterance_id"].tolist()
    assert set(a["utterance_id"]) != set(c["utterance_id"])


def test_stable_under_inserts() -> None:
    items = _rows(IMBALANCED)
    before, _ = sample_asr_rows(items, BalanceSpec(), seed=13)
    extra = _rows({k: max(1, v // 10) for k, v in IMBALANCED.items()}, tag="new")
    after, _ = sample_asr_rows(pd.concat([items, extra], ignore_index=True), BalanceSpec(), seed=13)
    chosen_before = set(before.loc[before["split"] == "train", "utterance_id"])
    chosen_after = set(after.loc[after["split"] == "train", "utterance_id"])
    assert len(chosen_after) == 330  # 110 per class now
    dropped = chosen_before - chosen_after
    assert len(dropped) <= 6, f"{len(dropped)} earlier choices changed"


def test_oversample_repeats_are_distinct_variants() -> None:
    items = _rows({("train", "a", "negative"): 7, ("train", "a", "neutral"): 20, ("train", "a", "positive"): 12})
    out, report = sample_asr_rows(items, BalanceSpec(method="oversample"), seed=5)
    assert _train_counts(out) == {"negative": 20, "neutral": 20, "positive": 20}
    assert not out.duplicated(["utterance_id", "variant"]).any()
    neg = out[out["sentiment"] == "negative"]
    uses = neg["utterance_id"].value_counts()
    assert set(uses.index) == set(items.loc[items["sentiment"] == "negative", "utterance_id"])
    assert uses.max() - uses.min() <= 1  # repeats cycle evenly
    for _, grp in neg.groupby("utterance_id"):
        assert sorted(grp["variant"]) == list(range(len(grp)))
    assert report["splits"]["train"]["classes"]["negative"] == {"available": 7, "selected": 20, "distinct": 7}


def test_target_size_under_and_oversamples() -> None:
    items = _rows({("train", "a", "negative"): 4, ("train", "a", "neutral"): 15, ("train", "a", "positive"): 10})
    out, _ = sample_asr_rows(items, BalanceSpec(method="target_size", target_per_class=10), seed=5)
    assert _train_counts(out) == {"negative": 10, "neutral": 10, "positive": 10}
    assert out[out["sentiment"] == "negative"]["variant"].max() == 2
    assert (out[out["sentiment"] == "neutral"]["variant"] == 0).all()
    with pytest.raises(ValueError, match="target_per_class"):
        sample_asr_rows(items, BalanceSpec(method="target_size"), seed=5)


def test_missing_class_error_or_balance_existing() -> None:
    items = _rows({("train", "a", "negative"): 5, ("train", "a", "positive"): 9})
    with pytest.raises(ValueError, match=r"split 'train' has no 'neutral'"):
        sample_asr_rows(items, BalanceSpec(on_missing_class="error"), seed=1)
    out, report = sample_asr_rows(items, BalanceSpec(on_missing_class="balance_existing"), seed=1)
    assert _train_counts(out) == {"negative": 5, "positive": 5}
    assert any("no neutral" in w for w in report["warnings"])


def test_source_share_cap_when_others_can_fill() -> None:
    counts = {
        ("train", "big", "negative"): 90, ("train", "small", "negative"): 30,
        ("train", "big", "neutral"): 200, ("train", "small", "neutral"): 10,
        ("train", "big", "positive"): 60, ("train", "small", "positive"): 60,
    }
    items = _rows(counts)
    out, report = sample_asr_rows(items, BalanceSpec(max_source_share=0.6), seed=9)
    assert _train_counts(out) == {"negative": 120, "neutral": 120, "positive": 120}
    share = out.groupby("sentiment")["source"].value_counts().unstack(fill_value=0)
    # negative: all 120 are needed (cap cannot bind); positive: capped at 72 per source
    assert share.loc["positive", "big"] <= 72 and share.loc["positive", "small"] <= 72
    # neutral: small has only 10 items, so big fills the rest and the report says so
    assert share.loc["neutral", "small"] == 10 and share.loc["neutral", "big"] == 110
    assert any("neutral" in w and "big" in w for w in report["warnings"])
    # without the cap, round-robin still takes from both sources alternately
    free, _ = sample_asr_rows(items, BalanceSpec(), seed=9)
    assert free[free["sentiment"] == "positive"]["source"].value_counts().to_dict() == {"big": 60, "small": 60}


def test_pick_order_round_robin_respects_cap_then_lifts_it() -> None:
    order = pick_order({"x": ["x1", "x2", "x3", "x4"], "y": ["y1"]}, n=4, cap=2, seed=0)
    assert len(order) == 4 and "y1" in order and len(set(order)) == 4
    assert sum(o.startswith("x") for o in order[:3]) == 2  # cap holds while y can fill


def test_empty_input() -> None:
    items = pd.DataFrame(columns=["utterance_id", "source", "split", "sentiment"])
    out, report = sample_asr_rows(items, BalanceSpec(), seed=1)
    assert out.empty and "variant" in out.columns


def _with_origins(items: pd.DataFrame) -> pd.DataFrame:
    """Every third row pseudo-labelled, every fifth with a Whisper transcript, one null origin."""
    out = items.copy()
    out["sentiment_origin"] = ["text_classifier" if i % 3 == 0 else "human" for i in range(len(out))]
    out["transcript_origin"] = ["whisper" if i % 5 == 0 else "human" for i in range(len(out))]
    out.loc[out.index[1], "sentiment_origin"] = None
    return out


def test_eligible_masks_by_stage_split_and_origin_and_counts_exclusions() -> None:
    items = _with_origins(_rows({("train", "a", "neutral"): 30, ("test", "a", "neutral"): 30}))
    rules = EligibilitySpec.model_validate(
        {"asr": {"test": {"sentiment_origin": ["human"], "transcript_origin": ["human"]}},
         "classifier": {"test": ["human", "mapped_emotion"]}}
    )
    mask, report = eligible(items, "asr", rules)
    test = items["split"] == "test"
    bad = test & ((items["sentiment_origin"] != "human") | (items["transcript_origin"] != "human"))
    assert mask.tolist() == (~bad).tolist()  # train has no rule: all eligible
    assert report["total"] == int(bad.sum()) == report["by_split"]["test"]["total"]
    n_pseudo = int((test & (items["sentiment_origin"] == "text_classifier")).sum())
    assert report["by_split"]["test"]["sentiment_origin"] == {"text_classifier": n_pseudo}
    assert "train" not in report["by_split"]
    # classifier: transcripts do not matter; the null origin in train is fine (no train rule)
    clf_mask, clf_report = eligible(items, "classifier", rules)
    assert clf_report["total"] == n_pseudo and clf_mask[~test].all()
    # a dict spec works, no rules means everything, an unknown stage is an error
    assert eligible(items, "asr", {"asr": {"train": ["human"]}})[1]["by_split"]["train"]["sentiment_origin"] == {
        "text_classifier": 10, "unknown": 1}
    assert eligible(items, "asr", None)[0].all()
    with pytest.raises(ValueError, match="unknown stage"):
        eligible(items, "tts", rules)


def test_sampling_applies_eligibility_before_balancing() -> None:
    items = _with_origins(_rows(IMBALANCED))
    rules = {"asr": {"train": ["human"], "test": ["human"]}}
    out, report = sample_asr_rows(items, BalanceSpec(), seed=13, eligibility=rules)
    assert set(out[out["split"] != "dev"]["sentiment_origin"]) == {"human"}
    assert report["excluded"]["ineligible"] == report["eligibility"]["total"] > 0
    counts = _train_counts(out)
    assert len(set(counts.values())) == 1  # uniform among the eligible rows
    human_train = items[(items["split"] == "train") & (items["sentiment_origin"] == "human")]
    assert counts["negative"] == human_train["sentiment"].value_counts().min()
    # dev has no rule: its pseudo-labelled rows stay
    assert (out[out["split"] == "dev"]["sentiment_origin"] == "text_classifier").any()


def test_impossible_balance_after_eligibility_names_split_and_class() -> None:
    items = _rows({("train", "a", "negative"): 4, ("train", "a", "neutral"): 4, ("train", "a", "positive"): 4})
    items["sentiment_origin"] = ["human"] * 8 + ["text_classifier"] * 4  # positives all pseudo
    rules = {"asr": {"train": ["human"]}}
    with pytest.raises(ValueError, match=r"split 'train' has no 'positive' utterances eligible.*eligibility.asr.train"):
        sample_asr_rows(items, BalanceSpec(on_missing_class="error"), seed=1, eligibility=rules)
    out, report = sample_asr_rows(items, BalanceSpec(), seed=1, eligibility=rules)
    assert _train_counts(out) == {"negative": 4, "neutral": 4}
    assert any("no positive" in w for w in report["warnings"])


def test_spec_can_balance_dev_too() -> None:
    items = _rows(IMBALANCED)
    out, report = sample_asr_rows(items, BalanceSpec(splits=["train", "dev"]), seed=3)
    assert out[out["split"] == "dev"]["sentiment"].value_counts().to_dict() == {
        "negative": 5, "neutral": 5, "positive": 5}
    assert report["balanced_splits"] == ["train", "dev"] and report["splits"]["dev"]["balanced"]
    assert report["splits"]["test"]["balanced"] is False


def test_recipe_signature_ignores_only_the_seed() -> None:
    from manifests.augmentation import Recipe
    from tasks.plan.balance import recipe_signature

    a = Recipe(speed=1.05, rir_id="r1", aug_seed=1)
    assert recipe_signature(a) == recipe_signature(Recipe(speed=1.05, rir_id="r1", aug_seed=2))
    assert recipe_signature(a) != recipe_signature(Recipe(speed=0.95, rir_id="r1", aug_seed=1))
    assert recipe_signature({"speed": 1.0, "gain": 1.0, "aug_seed": 3}) == recipe_signature(
        {"gain": 1.0, "speed": 1.0})
