"""Speaker-disjoint split assignment, leakage checks and duplicate-segment resolution."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.plan.split_report import split_shares
from tasks.plan.splits import (
    apply_source_policy,
    assign_splits,
    empty_split_warnings,
    resolve_duplicate_segments,
    split_counts,
    split_leakage,
)
from tasks.spec import DatasetSpec, SourceSpec, SplitSpec


def _items(n_speakers: int = 60, per_speaker: int = 5, source: str = "corpus") -> pd.DataFrame:
    rows = []
    for s in range(n_speakers):
        for u in range(per_speaker):
            rows.append(
                {
                    "utterance_id": f"{source}/spk{s}_utt{u}",
                    "source": source,
                    "speaker_id": f"spk{s}",
                    "audio_sha256": f"sha{s}_{u}",
                    "segment_key": f"sha{s}_{u}:0:3",
                    "split": None,
                    "sentiment": ["negative", "neutral", "positive"][u % 3],
                }
            )
    return pd.DataFrame(rows)


def test_speakers_never_in_two_splits_and_fractions_roughly_hold() -> None:
    items = _items(n_speakers=400, per_speaker=3)
    out = assign_splits(items, SplitSpec(), seed=13)
    per_speaker = out.groupby("speaker_id")["split"].nunique()
    assert per_speaker.max() == 1
    share = out.drop_duplicates("speaker_id")["split"].value_counts(normalize=True)
    assert 0.72 < share["train"] < 0.88
    assert 0.05 < share["dev"] < 0.15 and 0.05 < share["test"] < 0.15
    assert set(out["split_origin"]) == {"hashed"}
    assert split_leakage(out) == []


def test_assignment_is_deterministic_and_seeded() -> None:
    items = _items()
    a = assign_splits(items, SplitSpec(), seed=13)
    b = assign_splits(items.sample(frac=1.0, random_state=1), SplitSpec(), seed=13).loc[a.index]
    assert a["split"].tolist() == b["split"].tolist()
    c = assign_splits(items, SplitSpec(), seed=14)
    assert a["split"].tolist() != c["split"].tolist()


def test_adding_speakers_never_moves_existing_ones() -> None:
    items = _items(n_speakers=50)
    before = assign_splits(items, SplitSpec(), seed=3).set_index("utterance_id")["split"]
    more = pd.concat([items, _items(n_speakers=80).iloc[250:]], ignore_index=True)
    after = assign_splits(more, SplitSpec(), seed=3).set_index("utterance_id")["split"]
    assert after.loc[before.index].tolist() == before.tolist()


def test_official_split_kept_and_aliases_normalised() -> None:
    items = _items(n_speakers=4, per_speaker=2)
    items.loc[0, "split"] = "test"
    items.loc[1, "split"] = "validation"
    items.loc[2, "split"] = "holdout"  # unknown: hash-assigned instead
    out = assign_splits(items, SplitSpec(train=0.0, dev=0.0, test=1.0), seed=1)
    assert out.loc[0, "split"] == "test" and out.loc[0, "split_origin"] == "official"
    assert out.loc[1, "split"] == "dev" and out.loc[1, "split_origin"] == "official"
    assert out.loc[2, "split_origin"] == "hashed"
    assert set(out.loc[2:, "split"]) == {"test"}


def test_official_splits_may_share_speakers_but_hashed_may_not() -> None:
    items = _items(n_speakers=2, per_speaker=2)
    items["split"] = ["train", "dev", "train", "test"]
    out = assign_splits(items, SplitSpec(), seed=1)
    assert split_leakage(out) == []  # official: allowed
    out.loc[:, "split_origin"] = "hashed"
    problems = split_leakage(out)
    assert len(problems) == 2 and all(p.startswith("speaker corpus/spk") for p in problems)


def test_segment_key_in_two_splits_is_always_reported() -> None:
    items = _items(n_speakers=2, per_speaker=1)
    items["split"] = ["train", "test"]
    items["segment_key"] = "same:0:3"
    problems = split_leakage(assign_splits(items, SplitSpec(), seed=1))
    assert problems and "segment_key same:0:3" in problems[0]


def test_rows_without_speaker_group_by_recording() -> None:
    rows = [
        {"utterance_id": f"c/f{f}_crop{k}", "source": "c", "speaker_id": None,
         "audio_sha256": f"file{f}", "segment_key": f"file{f}:{k}:1", "split": None}
        for f in range(40) for k in range(4)
    ]
    out = assign_splits(pd.DataFrame(rows), SplitSpec(train=0.5, dev=0.25, test=0.25), seed=7)
    assert out.groupby("audio_sha256")["split"].nunique().max() == 1
    assert out["split"].nunique() == 3
    assert split_leakage(out) == []
    broken = out.copy()
    broken.loc[0, "split"] = "test" if out.loc[0, "split"] != "test" else "train"
    assert any(p.startswith("recording c/file:file0") for p in split_leakage(broken))


def test_few_speakers_can_leave_dev_empty_and_counts_show_it() -> None:
    items = _items(n_speakers=2, per_speaker=3)
    out = assign_splits(items, SplitSpec(train=0.9, dev=0.05, test=0.05), seed=0)
    counts = split_counts(out)
    assert counts["all"]["train"] + counts["all"]["dev"] + counts["all"]["test"] == 6
    assert set(counts["corpus"]) == {"train", "dev", "test"}
    empty = [s for s in ("train", "dev", "test") if counts["all"][s] == 0]
    warnings = empty_split_warnings(out)
    assert empty and all(any(f"split {s} is empty" in w for w in warnings) for s in empty)


def test_duplicate_segments_keep_human_labels_then_smallest_id() -> None:
    base = {"segment_key": "k1", "split": None, "speaker_id": "s", "audio_sha256": "k"}
    items = pd.DataFrame(
        [
            {**base, "utterance_id": "a/1", "source": "a", "sentiment_origin": "text_classifier",
             "transcript_origin": "human"},
            {**base, "utterance_id": "b/9", "source": "b", "sentiment_origin": "human",
             "transcript_origin": "whisper"},
            {**base, "utterance_id": "c/2", "source": "c", "sentiment_origin": "text_classifier",
             "transcript_origin": "whisper"},
            {**base, "utterance_id": "d/1", "source": "d", "segment_key": "k2", "sentiment_origin": "mapped_emotion",
             "transcript_origin": "whisper"},
            {**base, "utterance_id": "e/1", "source": "e", "segment_key": "k2", "sentiment_origin": "mapped_emotion",
             "transcript_origin": "whisper"},
            {**base, "utterance_id": "f/1", "source": "f", "segment_key": None, "sentiment_origin": None,
             "transcript_origin": None},
        ]
    )
    result = resolve_duplicate_segments(items)
    assert sorted(result.items["utterance_id"]) == ["b/9", "d/1", "f/1"]
    rej = result.rejects.set_index("input_ref")
    assert sorted(rej.index) == ["a/1", "c/2", "e/1"]
    assert set(rej["reason"]) == {"duplicate_segment"}
    assert "b/9" in rej.loc["a/1", "detail"] and "d/1" in rej.loc["e/1", "detail"]
    assert rej.loc["a/1", "source"] == "a"
    assert len(result.items) + len(result.rejects) == len(items)


@pytest.mark.parametrize("empty", [True, False])
def test_empty_input_is_fine(empty: bool) -> None:
    items = _items(n_speakers=1, per_speaker=1).iloc[0:0] if empty else _items(1, 1)
    out = assign_splits(items, SplitSpec(), seed=1)
    assert len(out) == len(items)
    assert resolve_duplicate_segments(out).rejects.empty


# ------------------------------------------------------------------ per-source split policies (issue 15 item 6)


def _tess_like(n_per: int = 20) -> pd.DataFrame:
    """Two speakers, two emotions, `n_per` utterances each: TESS's shape in miniature."""
    rows = []
    for spk in ("OAF", "YAF"):
        for emotion in ("angry", "happy"):
            for u in range(n_per):
                rows.append({"utterance_id": f"tess/{spk}_{emotion}_{u}", "source": "tess", "speaker_id": spk,
                             "emotion": emotion, "audio_sha256": f"{spk}{emotion}{u}", "split": None,
                             "segment_key": f"{spk}{emotion}{u}:0:2"})
    return pd.DataFrame(rows)


def _spec_with(**source: object) -> DatasetSpec:
    return DatasetSpec(name="t", output="/tmp/o",
                       sources=[SourceSpec(name="tess", kind="folder", path="/x", **source)])  # type: ignore[arg-type]


def test_two_speaker_corpus_skews_and_the_card_warns() -> None:
    """TESS: speaker-disjoint assignment of 2 speakers cannot give 80/10/10; split_skew says so."""
    spec = _spec_with()
    items = assign_splits(apply_source_policy(_tess_like(), spec.sources[0], spec.splits, spec.seed),
                          spec.splits, spec.seed)
    section, fired = split_shares(items, spec)
    entry = section["by_source"]["tess"]
    assert entry["policy"] == "speaker" and entry["groups"] == 2 and entry["skewed"]
    assert entry["max_deviation"] > spec.splits.max_skew
    assert [g["guard"] for g in fired] == ["split_skew"] and fired[0]["level"] == "warning"
    assert "split_policy: utterance_stratified" in fired[0]["message"]


def test_utterance_stratified_splits_every_speaker_and_emotion_by_the_fractions() -> None:
    spec = _spec_with(split_policy="utterance_stratified")
    items = apply_source_policy(_tess_like(), spec.sources[0], spec.splits, spec.seed)
    items = assign_splits(items, spec.splits, spec.seed)
    assert set(items["split_origin"]) == {"stratified"}
    per_stratum = items.groupby(["speaker_id", "emotion"])["split"].value_counts().unstack()
    assert (per_stratum["train"] == 16).all() and (per_stratum["dev"] == 2).all() and (per_stratum["test"] == 2).all()
    assert split_leakage(items) == []  # speakers shared by design: not a hashed-group leak
    section, fired = split_shares(items, spec)
    assert not section["by_source"]["tess"]["skewed"]
    assert section["by_source"]["tess"]["shares"] == {"train": 0.8, "dev": 0.1, "test": 0.1}
    assert [(g["guard"], g["level"]) for g in fired] == [("split_policy", "info")]
    again = apply_source_policy(_tess_like(), spec.sources[0], spec.splits, spec.seed)
    assert list(again["split"]) == list(items["split"])  # deterministic


def test_whole_source_into_one_split() -> None:
    spec = _spec_with(split="train")
    items = _tess_like()
    items.loc[0, "split"] = "test"  # even an official split yields to the spec
    items = assign_splits(apply_source_policy(items, spec.sources[0], spec.splits, spec.seed), spec.splits, spec.seed)
    assert set(items["split"]) == {"train"} and set(items["split_origin"]) == {"source"}
    section, fired = split_shares(items, spec)
    assert section["by_source"]["tess"]["policy"] == "split:train"
    assert [(g["guard"], g["level"]) for g in fired] == [("split_policy", "info")]


def test_split_and_split_policy_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either split"):
        SourceSpec(name="tess", kind="folder", path="/x", split="train", split_policy="utterance_stratified")
