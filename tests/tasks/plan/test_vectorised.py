"""The plan's column-wise rewrites give exactly what the old row-by-row code gave, on awkward frames.

Each `_old_*` below is the row-by-row code as it was before the rewrite (copied verbatim), kept here as
the oracle: nulls, NaN, empty strings, empty frames, missing columns, duplicates and unknown values
must come out the same, or a drift fails.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.core.rows import reject_row, rejects_frame
from tasks.plan import splits
from tasks.plan.splits import (
    POLICY_ORIGINS,
    _present,
    assign_splits,
    hashed_split,
    normalise_split,
    split_group,
    split_groups,
    split_leakage,
)
from tasks.plan.step import _require_labels
from tasks.spec import DatasetSpec, SplitSpec

NAN = float("nan")


# ----------------------------------------------------------------------------- oracles (old code)
def _old_require_labels(items: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    need_transcript = spec.labelers.transcripts != "none"
    keep = []
    for rec in items.itertuples(index=False):
        if pd.isna(rec.sentiment):
            rows.append(reject_row(rec.source, rec.utterance_id, "plan", "missing_label",
                                   f"{rec.utterance_id}: no sentiment after labelling (labelers.sentiment="
                                   f"{spec.labelers.sentiment}); give it a human label or enable a labeler"))
            keep.append(False)
        elif need_transcript and (pd.isna(rec.transcript) or not str(rec.transcript).strip()):
            rows.append(reject_row(rec.source, rec.utterance_id, "plan", "missing_label",
                                   f"{rec.utterance_id}: no transcript after labelling"))
            keep.append(False)
        else:
            keep.append(True)
    mask = pd.Series(keep, index=items.index, dtype=bool)
    return items[mask].reset_index(drop=True), rejects_frame(rows)


def _old_assign_splits(items: pd.DataFrame, spec: SplitSpec, seed: int) -> pd.DataFrame:
    out = items.copy()
    if out.empty:
        out["split"] = pd.Series(dtype=object)
        out["split_origin"] = pd.Series(dtype=object)
        return out
    splits_: list[str] = []
    origins: list[str] = []
    for row in out.to_dict("records"):
        value = row.get("split")
        if row.get("split_origin") in POLICY_ORIGINS and normalise_split(value) is not None:
            splits_.append(str(normalise_split(value)))
            origins.append(str(row["split_origin"]))
            continue
        official = normalise_split(value)
        if official is not None:
            splits_.append(official)
            origins.append("official")
            continue
        splits_.append(hashed_split(split_group(row), spec, seed))
        origins.append("hashed")
    out["split"] = pd.Series(splits_, index=out.index, dtype=object)
    out["split_origin"] = pd.Series(origins, index=out.index, dtype=object)
    return out


# ----------------------------------------------------------------------------- awkward frames
def _awkward(string_dtype: object = None) -> pd.DataFrame:
    """Rows hitting every branch: speaker, recording hash, uri, bare utterance; nulls of every kind."""
    frame = pd.DataFrame({
        "utterance_id": ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11"],
        "source": ["a", "a", "b", "b", None, "c", "c", "c", "a", "a", "b", "b"],
        "speaker_id": ["s1", None, "", NAN, "s2", "s1", None, None, "s1", "s1", "7", None],
        "audio_sha256": ["h1", "h2", None, "", "h3", NAN, None, "", "h1", "h9", None, None],
        "audio_uri": ["x.wav", "x.wav", "y.wav", None, "", "z.wav", None, "", "x.wav", "q", "", None],
        "split": ["train", None, "validation", "bogus", "", NAN, "TEST ", None, "dev", None, "eval", "val"],
        "split_origin": [None, None, "stratified", "source", None, "source", None, None, "official", "hashed",
                         "source", None],
        "sentiment": ["positive", None, "neutral", NAN, "negative", "positive", "neutral", "positive",
                      "negative", "neutral", "positive", "negative"],
        "transcript": ["hi", "yo", None, "x", "  ", "", "\t\n", NAN, "ok", "fine", "a b", "z"],
    })
    if string_dtype is not None:
        cols = [c for c in frame.columns]
        frame = frame.astype({c: string_dtype for c in cols})
    return frame


FRAMES = {
    "object": lambda: _awkward(object),
    "str": lambda: _awkward("str"),
    "arrow": lambda: _awkward(pd.ArrowDtype(__import__("pyarrow").string())),
    "duplicates": lambda: pd.concat([_awkward(), _awkward()], ignore_index=True),
    "numeric_speakers": lambda: _awkward().assign(speaker_id=[1.0, NAN, 3.0, NAN, 5.0, 1.0, NAN, NAN, 1.0,
                                                               2.0, 7.0, NAN]),
    "int_speakers": lambda: _awkward().assign(speaker_id=list(range(12))),
    "nullable_int_speakers": lambda: _awkward().assign(
        speaker_id=pd.array([1, None, 3, None, 5, 1, None, None, 1, 2, 7, None], dtype="Int64")),
    "no_speaker_column": lambda: _awkward().drop(columns=["speaker_id"]),
    "no_group_columns": lambda: _awkward().drop(columns=["speaker_id", "audio_sha256", "audio_uri"]),
    "no_split_columns": lambda: _awkward().drop(columns=["split", "split_origin"]),
    "odd_index": lambda: _awkward().set_axis(list(range(100, 112))),
    "empty": lambda: _awkward().iloc[0:0],
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_split_groups_equal_split_group_row_by_row(name: str) -> None:
    frame = FRAMES[name]()
    assert split_groups(frame) == [split_group(r) for r in frame.to_dict("records")]


def test_split_groups_pin_the_precedence() -> None:
    assert split_groups(_awkward().iloc[:5]) == ["a/s1", "a/file:h2", "b/uri:y.wav", "b/utt:u3", "nan/s2"]


@pytest.mark.parametrize("values", [["a", None, "", NAN], [1, 2], [1.5, NAN], [True, False], [b"", b"x"],
                                    [[1], [], None], [pd.NA, "x", ""], [pd.Timestamp(0), pd.NaT]])
def test_present_mask_equals_present(values: list) -> None:
    series = pd.Series(values, dtype=object)
    assert splits.present_mask(series) == [_present(v) for v in values]
    inferred = pd.Series(values)
    assert splits.present_mask(inferred) == [_present(v) for v in inferred.tolist()]


@pytest.mark.parametrize("name", sorted(FRAMES))
@pytest.mark.parametrize("seed", [0, 13])
def test_assign_splits_equals_the_row_by_row_code(name: str, seed: int) -> None:
    frame = FRAMES[name]()
    spec = SplitSpec(train=0.5, dev=0.25, test=0.25)
    pd.testing.assert_frame_equal(assign_splits(frame, spec, seed), _old_assign_splits(frame, spec, seed))


def test_assign_splits_pin() -> None:
    out = assign_splits(_awkward(), SplitSpec(train=0.5, dev=0.25, test=0.25), 13)
    assert out["split_origin"].tolist() == ["official", "hashed", "stratified", "hashed", "hashed", "hashed",
                                            "official", "hashed", "official", "hashed", "source", "official"]
    assert out["split"].tolist()[:3] == ["train", out["split"][1], "dev"]
    assert out["split"].tolist()[6] == "test"


def test_split_leakage_names_groups_as_before() -> None:
    frame = pd.concat([_awkward(), _awkward().assign(split="test", split_origin="hashed")], ignore_index=True)
    frame = assign_splits(frame.drop(columns=["split_origin"]), SplitSpec(), 0).assign(
        split=["train"] * 12 + ["test"] * 12, split_origin="hashed")
    problems = split_leakage(frame)
    assert "speaker a/s1 is in splits test, train (6 utterances)" in problems
    assert "recording a/file:h2 is in splits test, train (2 utterances)" in problems
    assert "speaker nan/s2 is in splits test, train (2 utterances)" in problems


@pytest.mark.parametrize("name", sorted(set(FRAMES) - {"no_split_columns"}))
@pytest.mark.parametrize("transcripts", ["whisper", "none"])
def test_require_labels_equals_the_row_by_row_code(name: str, transcripts: str) -> None:
    frame = FRAMES[name]()
    spec = DatasetSpec.model_validate({"name": "t", "output": "/tmp/o",
                                       "sources": [{"name": "a", "kind": "folder", "path": "/x"}],
                                       "labelers": {"transcripts": transcripts}})
    kept, rejects = _require_labels(frame, spec)
    old_kept, old_rejects = _old_require_labels(frame, spec)
    pd.testing.assert_frame_equal(kept, old_kept)
    pd.testing.assert_frame_equal(rejects, old_rejects)


def test_require_labels_pin() -> None:
    spec = DatasetSpec.model_validate({"name": "t", "output": "/tmp/o",
                                       "sources": [{"name": "a", "kind": "folder", "path": "/x"}],
                                       "labelers": {"transcripts": "whisper"}})
    kept, rejects = _require_labels(_awkward(), spec)
    assert kept["utterance_id"].tolist() == ["u0", "u8", "u9", "u10", "u11"]
    assert rejects["input_ref"].tolist() == ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]
    assert rejects["detail"][0].startswith("u1: no sentiment")
    assert rejects["detail"][1] == "u2: no transcript after labelling"
    assert math.isnan(np.nan)


# ----------------------------------------------------------------------------- stage rows and PII
def _old_variant_rows(utterances: pd.DataFrame, variants: pd.DataFrame, recipes: dict) -> pd.DataFrame:
    from tasks.plan.stage_rows import RECIPE_COLUMNS, recipe_key

    merged = variants.merge(utterances, on="utterance_id", how="left", validate="many_to_one")
    rows = pd.DataFrame({
        "row_id": [recipe_key(u, v) for u, v in zip(merged["utterance_id"], merged["variant"], strict=True)],
        "utterance_id": merged["utterance_id"], "variant": merged["variant"].astype(int),
        "source": merged["source"], "split": merged["split"], "sentiment": merged["sentiment"],
        "transcript": merged["transcript"], "source_audio_uri": merged["audio_uri"],
        "audio_uri": merged["audio_uri"], "offset_s": merged["offset_s"].astype(float),
        "duration_s": merged["duration_s"].astype(float), "recipe_applied": False,
        "sentiment_origin": merged["sentiment_origin"], "transcript_origin": merged["transcript_origin"],
    })
    recipe_cols: dict[str, list] = {c: [] for c in RECIPE_COLUMNS}
    for rid in rows["row_id"]:
        rec = recipes[rid].to_row()
        for c in RECIPE_COLUMNS:
            recipe_cols[c].append(rec[c])
    for c, values in recipe_cols.items():
        rows[c] = values
    return rows


def _utterances(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({
        "utterance_id": [f"u{i}" for i in range(n)], "source": ["a", "b", None, "a"][:n],
        "split": ["train", "dev", "test", None][:n], "sentiment": ["positive", None, "neutral", "negative"][:n],
        "transcript": ["hi", None, "", "x"][:n], "audio_uri": ["/a.wav", "/b.wav", None, "/d.wav"][:n],
        "offset_s": [0.0, 1.5, NAN, 2][:n], "duration_s": [1.0, 2, 3.25, NAN][:n],
        "sentiment_origin": ["human", "model", None, "human"][:n], "transcript_origin": ["whisper"] * n,
    })


@pytest.mark.parametrize("case", ["repeats", "unknown_utterance", "empty"])
def test_variant_rows_equal_the_row_by_row_code(case: str) -> None:
    from manifests.augmentation import Recipe
    from tasks.plan.stage_rows import recipe_key, variant_rows

    utterances = _utterances()
    variants = pd.DataFrame({"utterance_id": ["u0", "u0", "u1", "u3", "u2", "u3"],
                             "variant": pd.Series([0, 1, 0, 2, 0, 0], dtype="int64")})
    if case == "unknown_utterance":
        variants = pd.concat([variants, pd.DataFrame({"utterance_id": ["zz"], "variant": [0]})],
                             ignore_index=True)
    if case == "empty":
        variants = variants.iloc[0:0]
    shared = Recipe(speed=1.0, gain=1.0, aug_seed=5)
    recipes = {recipe_key(u, v): (shared if v == 0 else Recipe(speed=1.1, rir_id="r", noise_id=None,
                                                                 noise_offset_s=None, snr_db=3.5, aug_seed=v))
               for u, v in zip(variants["utterance_id"], variants["variant"], strict=True)}
    pd.testing.assert_frame_equal(variant_rows(utterances, variants, recipes),
                                  _old_variant_rows(utterances, variants, recipes))
    missing = variants.assign(variant=7)
    if len(missing):
        with pytest.raises(KeyError):
            variant_rows(utterances, missing, recipes)


def test_pii_flags_repeated_transcripts_like_single_ones() -> None:
    from tasks.plan.pii import detect_local, flag_items
    from tasks.spec import PiiSpec

    texts = ["call me at four one five five five five one two one two", "yes", None, "", "yes",
             "mail bob at example dot com", "call me at four one five five five five one two one two", NAN,
             "  ", "card 4111 1111 1111 1111"]
    items = pd.DataFrame({"utterance_id": [f"u{i}" for i in range(len(texts))], "source": ["a", "b"] * 5,
                          "transcript": texts})
    out, report = flag_items(items, PiiSpec(detect="local"))
    expected = [detect_local(t if isinstance(t, str) else None) for t in texts]
    assert out["pii_types"].fillna("").tolist() == [",".join(t) for t in expected]
    assert out["pii_types"].isna().tolist() == [not t for t in expected]
    assert out["pii_detected"].tolist() == [bool(t) for t in expected]
    assert report["flagged"] == 4 and report["checked"] == 6
    assert report["by_type"] == {"CREDIT_DEBIT_NUMBER": 1, "EMAIL": 1, "SPOKEN_NUMBER": 2}
    assert report["by_source"] == {"a": 2, "b": 2}


# ----------------------------------------------------------------------------- ASR picks
def _old_asr_variants(items: pd.DataFrame, groups: dict, limits: dict) -> pd.DataFrame:
    from tasks.plan import quota

    cands = items[items["_asr"]]
    uids, variants = [], []
    for uid, split, cls, source, rank in zip(*(cands[c].tolist() for c in ("utterance_id", "split", "sentiment",
                                                                            "source", "_rank")), strict=True):
        key = quota.group_key(split, cls, source)
        for v in range(quota.picks(groups.get(key), limits.get(key), rank)):
            uids.append(uid)
            variants.append(v)
    return pd.DataFrame({"utterance_id": pd.Series(uids, dtype=object), "variant": pd.Series(variants, dtype="int64")})


def _screened() -> pd.DataFrame:
    from tasks.core.hashing import seeded_hex

    n = 24
    return pd.DataFrame({
        "utterance_id": [f"u{i:02d}" for i in range(n)],
        "split": (["train", "dev", "test"] * 8)[:n],
        "sentiment": (["positive", "negative", "neutral", "positive"] * 6)[:n],
        "source": (["a", "b"] * 12)[:n],
        "_asr": [i % 5 != 0 for i in range(n)],
        "_rank": [seeded_hex(3, f"u{i:02d}") for i in range(n)],
    })


@pytest.mark.parametrize("empty", [False, True])
def test_asr_variants_equal_the_row_by_row_code(empty: bool) -> None:
    from tasks.plan.quota import group_key
    from tasks.plan.shard_step import asr_variants

    items = _screened().iloc[0:0] if empty else _screened()
    mid = sorted(items["_rank"])[len(items) // 2] if len(items) else None
    groups = {group_key("train", "positive", "a"): {"mode": "all", "take": 0, "copies": 1, "available": 3},
              group_key("dev", "negative", "b"): {"mode": "select", "take": 1, "copies": 1, "available": 3},
              group_key("test", "neutral", "a"): {"mode": "extra", "take": 1, "copies": 3, "available": 2},
              group_key("train", "positive", "b"): {"mode": "extra", "take": 0, "copies": 2, "available": 2},
              group_key("dev", "positive", "b"): {"mode": "select", "take": 5, "copies": 1, "available": 5},
              group_key("train", "negative", "a"): {"mode": "select", "take": 2, "copies": 1, "available": 4}}
    limits = {group_key("dev", "negative", "b"): mid, group_key("test", "neutral", "a"): mid}
    new, old = asr_variants(items, groups, limits), _old_asr_variants(items, groups, limits)
    pd.testing.assert_frame_equal(new, old)
    if not empty:
        assert len(new) > 10 and new["variant"].max() >= 3


@pytest.mark.parametrize("dtype", [None, object, "str"])
def test_duplicate_segments_with_blank_keys_resolve_as_before(dtype: object) -> None:
    from tasks.plan.splits import resolve_duplicate_segments

    items = pd.DataFrame({
        "utterance_id": ["u3", "u1", "u2", "u4", "u5", "u6", "u7"],
        "source": ["a", "b", "a", "b", "a", "a", "b"],
        "segment_key": ["k1", "k1", None, "", NAN, "k2", "k2"],
        "sentiment_origin": ["human", "model", "human", "human", "model", "model", "model"],
        "transcript_origin": ["whisper"] * 7,
    })
    if dtype is not None:
        items = items.astype({"segment_key": dtype})
    result = resolve_duplicate_segments(items)
    old_has_key = items["segment_key"].map(_present)
    assert old_has_key.tolist() == [True, True, False, False, False, True, True]
    assert result.items["utterance_id"].tolist() == ["u3", "u2", "u4", "u5", "u6"]
    assert result.rejects["input_ref"].tolist() == ["u1", "u7"]


def _old_duration_reason(duration: float | None, limits: object) -> str | None:
    if duration is None:
        return None
    if duration < limits.min_duration_s:
        return "too_short"
    if limits.max_duration_s is not None and duration > limits.max_duration_s:
        return "too_long"
    return None


def _old_rate_reason(chars: int | None, duration: float | None, spec: DatasetSpec) -> str | None:
    p = spec.plausibility
    if chars is None or duration is None or duration <= 0:
        return None
    rate = chars / duration
    if p.min_chars_per_s is not None and rate < p.min_chars_per_s:
        return "implausible_speaking_rate"
    if p.max_chars_per_s is not None and rate > p.max_chars_per_s:
        return "implausible_speaking_rate"
    return None


def _old_reasons(items: pd.DataFrame, spec: DatasetSpec) -> list[tuple[object, object]]:
    """The row-by-row plausibility rules as they were (verbatim, with the per-row helpers above)."""
    from tasks.label.transcripts import hallucination
    from tasks.plan import plausibility as pl

    texts = items["transcript"].tolist() if "transcript" in items.columns else [None] * len(items)
    hal_asr, hal_clf = hallucination.excluded(items, spec.labelers.whisper.hallucination)
    out = []
    for dur, text, h_asr, h_clf in zip(items["duration_s"].tolist(), texts, hal_asr.tolist(), hal_clf.tolist(),
                                       strict=True):
        duration = None if dur is None or pd.isna(dur) else float(dur)
        asr = _old_duration_reason(duration, spec.plausibility.asr)
        asr = asr or _old_rate_reason(pl.transcript_chars(text), duration, spec)
        asr = asr or ("hallucinated_transcript" if h_asr else None)
        clf = _old_duration_reason(duration, spec.plausibility.classifier) or (
            "hallucinated_transcript" if h_clf else None)
        out.append((asr, clf))
    return out


@pytest.mark.parametrize("limits", ["default", "loose", "no_max"])
def test_plausibility_reasons_equal_the_row_by_row_rules(limits: str) -> None:
    from tasks.plan import plausibility

    extra = {"default": {}, "loose": {"plausibility": {"min_chars_per_s": None, "max_chars_per_s": None}},
             "no_max": {"plausibility": {"asr": {"min_duration_s": 0.5, "max_duration_s": None},
                                         "max_chars_per_s": 3.0}}}[limits]
    spec = DatasetSpec.model_validate({"name": "t", "output": "/tmp/o", "seed": 1,
                                       "sources": [{"name": "s", "kind": "folder", "path": "/x"}], **extra})
    items = pd.DataFrame({
        "utterance_id": [f"s/{i}" for i in range(12)], "source": "s",
        "duration_s": [3.2, 1 / 16000, 6800.0, 1.0, 20.0, 2.0, NAN, None, 0.0, -1.0, 61.0, 0.3],
        "transcript": ["i am calling about it", "a clip", "thanks for watching", "x" * 60, "yes", None, "ok",
                       "a b", "words", "w", "\u00a0spaced\u2003text\u3000", NAN],
        "transcript_origin": ["whisper"] * 6 + ["human"] * 6,
        "avg_logprob": [-0.1, -0.1, -0.1, -0.1, -3.0, -3.0, -0.1, NAN, NAN, NAN, NAN, NAN],
        "sentiment_origin": ["comprehend", "human"] * 6,
    })
    why = plausibility.reasons(items, spec)
    assert list(zip(why["asr"], why["classifier"], strict=True)) == _old_reasons(items, spec)
    assert why.loc[4].tolist() == [*["implausible_speaking_rate"] * (limits != "loose"),
                                   *["hallucinated_transcript"] * (limits == "loose"), "hallucinated_transcript"]
    assert why.loc[5].tolist() == ["hallucinated_transcript", None]  # a human sentiment keeps the classifier row
    assert plausibility.transcript_chars("\u00a0spaced\u2003text\u3000") == 10
