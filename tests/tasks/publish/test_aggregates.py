"""Card, plots and label sections from per-part aggregates: the same whatever the number of parts."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from manifests.schema import ASR_STAGE_SCHEMA, CLASSIFIER_STAGE_SCHEMA, REJECTS_SCHEMA, UTTERANCES_SCHEMA
from tasks.core import reduce
from tasks.core.shards import stable_hash
from tasks.label import speech_presence
from tasks.label.transcripts.language import card_section
from tasks.label.transcripts.quality import transcript_quality
from tasks.publish import aggregates_labels as labels
from tasks.publish import changes, plots
from tasks.publish.aggregates import merge_aggregates, shard_aggregates
from tasks.publish.card import build_card, build_card_from_aggregates
from tasks.publish.releases import release_changes
from tasks.spec import DatasetSpec, SourceSpec

SOURCES = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return DatasetSpec(name="parts", seed=11, output="/tmp/out",
                       sources=[SourceSpec(name=s, kind="folder", path=f"/data/{s}") for s in SOURCES])


def _tables(n: int = 160, seed: int = 5) -> dict[str, pd.DataFrame]:
    """A small release with every kind of value the card counts: nulls, repeats, noise windows, rejects."""
    rng = random.Random(seed)
    utts, asr, clf, rej = [], [], [], []
    for i in range(n):
        uid, src = f"{rng.choice(SOURCES)}/{i:04d}", None
        src = uid.split("/")[0]
        split = rng.choice(["train", "train", "dev", "test", None])
        sentiment = rng.choice(["negative", "neutral", "positive", None])
        human = rng.random() < 0.5
        detector = rng.choice(["vad", "vad", "second_opinion", "none", None])
        utts.append({
            "utterance_id": uid, "source": src, "corpus": "folder", "audio_uri": f"/d/{uid}.wav", "offset_s": 0.0,
            "duration_s": rng.choice([None, round(rng.uniform(0.5, 12.0), 3), 2.5]), "sample_rate": 16000,
            "num_channels": 1, "sentiment": sentiment, "transcript": f"words {i % 7} here",
            "transcript_raw": f"Words {i % 7} here", "transcript_origin": "human" if human else "whisper",
            "sentiment_origin": rng.choice(["human", "mapped_emotion", "vader"]), "gender": rng.choice(["f", "m", None]),
            "age_bucket": rng.choice(["20s", "30s", None]), "accent": rng.choice(["us", "uk", None]),
            "language": rng.choice(["en", "de", None]), "language_origin": rng.choice(["declared", "detected"]),
            "language_probability": rng.choice([None, round(rng.random(), 4)]), "license": rng.choice(["CC0", "CC-BY"]),
            "split": split, "segment_key": f"seg{rng.randrange(n * 2)}" if rng.random() < 0.9 else None,
            "speech_detector": detector, "emotion": rng.choice(["angry", "happy", None]),
            "asr_hypothesis": rng.choice([None, f"words {i % 5} here"]) if human and rng.random() < 0.6 else None,
            "asr_hypothesis_origin": "whisper" if human and rng.random() < 0.6 else None,
        })
        for k in range(rng.choice([0, 1, 1, 2])):
            asr.append({"row_id": f"{uid}#{k}", "utterance_id": uid, "source": src, "split": split,
                        "sentiment": sentiment, "audio_uri": f"/d/{uid}.wav", "offset_s": 0.0,
                        "duration_s": rng.uniform(0.5, 12.0), "recipe_applied": rng.random() < 0.3,
                        "speed": rng.choice([0.9, 1.0, 1.1]), "snr_db": rng.choice([None, round(rng.uniform(5, 20), 2)])})
        for k in range(rng.choice([0, 1, 2, 3])):
            clf.append({"row_id": f"{uid}@{k}", "utterance_id": uid, "source": src, "split": split,
                        "sentiment": sentiment, "speech_present": rng.random() < 0.7, "valid_s": rng.uniform(1, 5),
                        "class_weight": rng.choice([None, 0.75, 1.5, 1.0 / 3.0])})
    for k in range(9):
        clf.append({"row_id": f"noise/n{k}@0", "utterance_id": None, "source": "noise", "split": "train",
                    "sentiment": None, "speech_present": False, "valid_s": 5.0, "class_weight": 1.0})
    for k in range(45):
        rej.append({"source": rng.choice(SOURCES), "input_ref": f"/in/{k % 17:03d}.wav", "stage": rng.choice(["ingest", "plan"]),
                    "reason": rng.choice(["duplicate_segment", "too_short", "unreadable_audio"]),
                    "detail": rng.choice([None, f"detail {k}"])})

    def frame(rows: list[dict], schema) -> pd.DataFrame:
        cols = list(dict.fromkeys([*schema.names, *(k for r in rows for k in r)]))
        return pd.DataFrame(rows, columns=cols)

    return {"utterances": frame(utts, UTTERANCES_SCHEMA), "asr": frame(asr, ASR_STAGE_SCHEMA),
            "classifier": frame(clf, CLASSIFIER_STAGE_SCHEMA), "rejects": frame(rej, REJECTS_SCHEMA)}


def _parts(t: dict[str, pd.DataFrame], n: int) -> list[dict[str, pd.DataFrame]]:
    """Split like publish's parts: an utterance's stage rows in its part; other rows anywhere."""
    def part(key: str) -> int:
        return int(stable_hash(key)[:12], 16) % n

    u_part = t["utterances"]["utterance_id"].map(part)
    out = []
    for i in range(n):
        ids = set(t["utterances"]["utterance_id"][u_part == i])
        clf = t["classifier"]
        own = clf["utterance_id"].isin(ids) | (clf["utterance_id"].isna() & (clf["row_id"].map(part) == i))
        out.append({"utterances": t["utterances"][u_part == i], "asr": t["asr"][t["asr"]["utterance_id"].isin(ids)],
                    "classifier": clf[own], "rejects": t["rejects"][t["rejects"]["input_ref"].map(part) == i]})
    return out


def _aggs(spec, t: dict[str, pd.DataFrame], n: int) -> list[dict]:
    return [shard_aggregates(spec, p["utterances"], p["asr"], p["classifier"], p["rejects"]) for p in _parts(t, n)]


def _card(spec, agg) -> dict:
    card = build_card_from_aggregates(spec, "r1", agg, {"alpha": 70, "beta": 60, "gamma": 70}, {"timings": {}})
    card.pop("built_at")
    return card


def test_card_and_plot_data_do_not_depend_on_the_number_of_parts(spec):
    t = _tables()
    one = merge_aggregates(_aggs(spec, t, 1))
    five = _aggs(spec, t, 5)
    assert len({len(p["utterances"]) for p in _parts(t, 5)}) > 1  # really different parts
    merged = merge_aggregates(five)
    assert _card(spec, merged) == _card(spec, one)
    assert plots.plot_data(merged) == plots.plot_data(one)
    # Any order and any grouping of the merge gives the same aggregate.
    regrouped = merge_aggregates([merge_aggregates(five[3:]), merge_aggregates(five[:3][::-1])])
    assert reduce.canonical(regrouped) == reduce.canonical(merged)
    card = _card(spec, merged)
    assert card["utterances"]["total"] == len(t["utterances"]) and card["rejects"]["total"] == 45
    assert card["classifier_stage"]["windows"] == len(t["classifier"])
    assert card["leakage"]["segment_keys_repeated"] > 0  # the fixture repeats keys across parts
    assert len(card["rejects"]["examples"]) == 20


def test_frame_card_is_the_one_part_aggregate_card(spec):
    t = _tables(60, seed=9)
    frame_card = build_card(spec=spec, release="r1", utterances=t["utterances"], asr=t["asr"],
                            classifier=t["classifier"], rejects=t["rejects"],
                            found={"alpha": 70, "beta": 60, "gamma": 70}, extra={"timings": {}})
    frame_card.pop("built_at")
    assert frame_card == _card(spec, merge_aggregates(_aggs(spec, t, 4)))


def test_label_sections_equal_the_frame_based_ones(spec):
    t = _tables()
    u, c = t["utterances"], t["classifier"]
    agg = merge_aggregates(_aggs(spec, t, 6))
    assert labels.language_section(agg) == card_section(u)
    assert labels.speech_section(agg) == speech_presence.speech_section(u, c)
    assert labels.speech_guards(agg) == speech_presence.label_guards(u, c)
    small = spec.model_copy(update={"labelers": spec.labelers.model_copy(update={"quality_sample_per_source": 3})})
    agg3 = merge_aggregates(_aggs(small, t, 6))
    expected = transcript_quality(u, n=3, seed=spec.seed)
    assert labels.quality_section(small, agg3) == expected
    assert sum(s["utterances"] for s in expected["sources"].values()) == 9  # 3 per source, capped across parts


def test_agreement_section_equals_the_frame_report_with_a_capped_training_sample(tmp_path):
    from tasks.label.sentiment import agreement
    from tests.tasks.label.sentiment.test_agreement import _spec, _utterances

    base = _spec(tmp_path)
    spec = base.model_copy(update={"labelers": base.labelers.model_copy(update={"agreement_train_max_rows": 100})})
    utts = _utterances()
    parts = [utts[utts["utterance_id"].map(lambda u, i=i: int(stable_hash(u)[:8], 16) % 4 == i)] for i in range(4)]
    empty = pd.DataFrame()
    agg = merge_aggregates([shard_aggregates(spec, p, empty, empty, empty) for p in parts])
    section = labels.agreement_section(spec, agg, None)
    expected = agreement.agreement_report(utts, spec, max_per_source=labels.HELDOUT_PER_SOURCE)
    assert section == expected
    assert section["trained_model"]["training"]["sampled"] is True
    assert section["trained_model"]["training"]["trained_rows"] == 100


def test_agreement_heldout_cut_per_part_equals_the_frame_report(tmp_path, monkeypatch):
    """Each part keeps records only for its k lowest keys per source (`_candidates`): with a cut that
    binds in every part, the merged pick is still the whole frame's."""
    from tasks.label.sentiment import agreement
    from tests.tasks.label.sentiment.test_agreement import _spec, _utterances

    spec = _spec(tmp_path)
    utts = _utterances()
    monkeypatch.setattr(labels, "HELDOUT_PER_SOURCE", 3)
    parts = [utts[utts["utterance_id"].map(lambda u, i=i: int(stable_hash(u)[:8], 16) % 3 == i)] for i in range(3)]
    aggs = [shard_aggregates(spec, p, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()) for p in parts]
    assert all(len(rows) <= 3 for a in aggs for rows in a["top"]["agreement_heldout"]["groups"].values())
    section = labels.agreement_section(spec, merge_aggregates(aggs), None)
    assert section == agreement.agreement_report(utts, spec, max_per_source=3)


def test_release_changes_by_buckets_equal_the_whole_table_comparison(tmp_path):
    t = _tables(120, seed=2)
    before = t["utterances"]
    after = _tables(120, seed=2)["utterances"].iloc[15:].copy()  # 15 removed
    after.loc[after.index[:10], "transcript"] = "edited"  # 10 changed
    extra = before.iloc[:5].assign(utterance_id=lambda f: f["utterance_id"] + "-new")  # 5 added
    after = pd.concat([after, extra], ignore_index=True)
    expected = release_changes(before, after, "r0")
    for n_buckets in (1, 3, 7):
        got = changes.release_changes_by_parts(
            (before.iloc[i:i + 40] for i in range(0, len(before), 40)),
            (after.iloc[i:i + 25] for i in range(0, len(after), 25)), "r0", str(tmp_path / "w"), n_buckets)
        assert got == expected
        assert not (tmp_path / "w").exists()
    assert expected["added"] == 5 and expected["removed"] == 15 and expected["changed"] == 10
    none = changes.release_changes_by_parts(None, [after.iloc[:7], after.iloc[7:]], None, str(tmp_path / "w"), 2)
    assert none == release_changes(None, after, None)
    known = changes.release_changes_by_parts(None, iter(()), None, str(tmp_path / "w"), 2, current_rows=len(after))
    assert known == none  # a first release with its row count known reads no part


@pytest.mark.parametrize("dtype", ["str", "string", object])
def test_labels_names_nulls_and_yields_python_strings_for_every_string_dtype(dtype):
    """`labels` of a string column (the fast path) equals the general rule: object Series of str, nulls named."""
    from tasks.publish.aggregates import labels as column_labels

    df = pd.DataFrame({"s": pd.Series(["a", None, "é", "", "a"], dtype=dtype, index=[5, 3, 9, 1, 0])})
    got = column_labels(df, "s", null="?")
    col = df["s"]
    expected = col.astype(object).where(col.notna(), "?").map(str).astype(object)
    pd.testing.assert_series_equal(got, expected, check_names=False)
    assert got.dtype == object and [type(v) for v in got] == [str] * 5
    assert list(got) == ["a", "?", "é", "", "a"]
