"""The dataset card: numbers that prove accounting, balance and group sizes, and a readable render."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from manifests.schema import (
    ASR_STAGE_SCHEMA,
    CLASSIFIER_STAGE_SCHEMA,
    REJECTS_SCHEMA,
    UTTERANCES_SCHEMA,
)
from tasks.publish.card import PLOT_FILES, build_card, make_plots, render_markdown, render_summary
from tasks.spec import DatasetSpec, SourceSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _frame(rows: list[dict], schema) -> pd.DataFrame:
    """Rows with every contract column present (missing ones null), like the real manifests."""
    return pd.DataFrame(rows, columns=list(schema.names))


def _utt(
    uid,
    source,
    split,
    sentiment,
    duration,
    gender,
    age_bucket,
    accent,
    t_origin="whisper",
    s_origin="text_classifier",
):
    return {
        "utterance_id": uid,
        "source": source,
        "corpus": "folder",
        "audio_uri": f"/data/{uid}.wav",
        "offset_s": 0.0,
        "duration_s": duration,
        "sample_rate": 16000,
        "num_channels": 1,
        "sentiment": sentiment,
        "transcript_origin": t_origin,
        "sentiment_origin": s_origin,
        "gender": gender,
        "age_bucket": age_bucket,
        "accent": accent,
        "language": "en",
        "license": "CC-BY-4.0",
        "split": split,
    }


def _stage(uid, source, split, sentiment, duration, **more):
    return {
        "row_id": f"{uid}#{more.pop('n', 0)}",
        "utterance_id": uid,
        "source": source,
        "split": split,
        "sentiment": sentiment,
        "audio_uri": f"/data/{uid}.wav",
        "offset_s": 0.0,
        "duration_s": duration,
        "recipe_applied": more.pop("recipe_applied", False),
        "speed": 1.0,
        **more,
    }


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec(
        name="tiny",
        seed=7,
        output="/tmp/out",
        sources=[
            SourceSpec(name="alpha", kind="folder", path="/data/alpha"),
            SourceSpec(name="beta", kind="ravdess", path="/data/beta"),
        ],
    )


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    utterances = _frame(
        [
            _utt("alpha/1", "alpha", "train", "positive", 1800.0, "female", "20s", "us", t_origin="human"),
            _utt("alpha/2", "alpha", "train", "negative", 1800.0, "female", "20s", "us"),
            _utt("alpha/3", "alpha", "train", "neutral", 900.0, "male", "30s", "uk"),
            _utt("alpha/4", "alpha", "dev", "positive", 900.0, "male", None, "uk"),
            _utt(
                "beta/1", "beta", "train", "negative", 360.0, "female", "20s", None, s_origin="mapped_emotion"
            ),
            _utt("beta/2", "beta", "test", "neutral", 360.0, None, None, None, s_origin="mapped_emotion"),
        ],
        UTTERANCES_SCHEMA,
    )
    asr = _frame(
        [
            _stage(
                "alpha/1",
                "alpha",
                "train",
                "positive",
                1710.0,
                recipe_applied=True,
                target_text="Positive hi",
            ),
            _stage("alpha/2", "alpha", "train", "negative", 1800.0, target_text="Negative no"),
            _stage("alpha/3", "alpha", "train", "neutral", 900.0, target_text="Neutral ok"),
            _stage("alpha/4", "alpha", "dev", "positive", 900.0, target_text="Positive yes"),
        ],
        ASR_STAGE_SCHEMA,
    )
    classifier = _frame(
        [
            _stage(
                "alpha/1",
                "alpha",
                "train",
                "positive",
                5.0,
                n=0,
                speech_present=True,
                class_weight=0.75,
                valid_s=5.0,
            ),
            _stage(
                "alpha/1",
                "alpha",
                "train",
                "positive",
                5.0,
                n=1,
                speech_present=True,
                class_weight=0.75,
                valid_s=5.0,
            ),
            _stage(
                "alpha/2",
                "alpha",
                "train",
                "negative",
                5.0,
                n=0,
                speech_present=True,
                class_weight=1.5,
                valid_s=3.0,
            ),
            _stage(
                "noise/n1",
                "noise",
                "train",
                None,
                5.0,
                n=0,
                speech_present=False,
                class_weight=1.0,
                valid_s=5.0,
            ),
            _stage(
                "alpha/4",
                "alpha",
                "dev",
                "positive",
                5.0,
                n=0,
                speech_present=True,
                class_weight=1.0,
                valid_s=5.0,
            ),
        ],
        CLASSIFIER_STAGE_SCHEMA,
    )
    rejects = _frame(
        [
            {
                "source": "alpha",
                "input_ref": "/data/alpha/x.wav",
                "stage": "ingest",
                "reason": "missing_audio",
                "detail": "file /data/alpha/x.wav is listed in metadata.csv but does not exist",
            },
            {
                "source": "beta",
                "input_ref": "beta/9",
                "stage": "ingest",
                "reason": "unmapped_label",
                "detail": "emotion 'surprised' of beta/9 has no sentiment mapping; add it to emotion_map",
            },
        ],
        REJECTS_SCHEMA,
    )
    return {"utterances": utterances, "asr": asr, "classifier": classifier, "rejects": rejects}


EXTRA = {
    "min_group_size": 3,
    "timings": {"ingest": 1.25, "label": np.float64(3.5)},
    "transcript_quality": {"wer": float("nan"), "n": np.int64(0)},
    "lineage": {"spec_hash": "abc123", "code_version": "0.1.0"},
    "labelers": {"transcripts": {"name": "whisper", "model": "tiny.en"}},
}


def _card(spec, tables, found=None, extra=None):
    return build_card(
        spec=spec,
        release="2024-01-01T00-00-00Z",
        utterances=tables["utterances"],
        asr=tables["asr"],
        classifier=tables["classifier"],
        rejects=tables["rejects"],
        found={"alpha": 5, "beta": 4} if found is None else found,
        extra=EXTRA if extra is None else extra,
    )


def test_counts_per_source_and_accounting(spec, tables):
    card = _card(spec, tables)
    alpha, beta = card["counts"]["sources"]["alpha"], card["counts"]["sources"]["beta"]
    assert alpha == {
        "found": 5,
        "accepted": 4,
        "rejected": 1,
        "excluded_from_asr": 0,
        "excluded_from_classifier": 1,
        "hours": 1.5,
        "accounted": True,
    }
    # beta: 2 accepted + 1 rejected != 4 found -> flagged; both its utterances were left out of ASR.
    assert beta == {
        "found": 4,
        "accepted": 2,
        "rejected": 1,
        "excluded_from_asr": 2,
        "excluded_from_classifier": 2,
        "hours": 0.2,
        "accounted": False,
    }
    totals = card["counts"]["totals"]
    assert (totals["found"], totals["accepted"], totals["rejected"], totals["excluded_from_asr"]) == (
        9,
        6,
        2,
        2,
    )
    assert totals["hours"] == pytest.approx(1.7)
    assert totals["accounted"] is False
    assert _card(spec, tables, found={"alpha": 5, "beta": 3})["counts"]["totals"]["accounted"] is True


def test_header_spec_and_json(spec, tables):
    card = _card(spec, tables)
    assert (card["name"], card["release"], card["seed"]) == ("tiny", "2024-01-01T00-00-00Z", 7)
    assert card["built_at"].endswith("+00:00")
    assert card["class_index"] == {"negative": 0, "neutral": 1, "positive": 2}
    assert card["spec"]["sources"][1]["kind"] == "ravdess"
    assert "schema_version" not in card and "content_sha256" not in card
    text = json.dumps(card, allow_nan=False)  # raises on NaN or numpy types
    assert json.loads(text)["transcript_quality"] == {"wer": None, "n": 0}
    assert card["timings"] == {"ingest": 1.25, "label": 3.5}
    assert card["lineage"]["spec_hash"] == "abc123"
    assert "min_group_size" not in card  # a parameter, not a section


def test_rejects_section(spec, tables):
    rej = _card(spec, tables)["rejects"]
    assert rej["total"] == 2
    assert rej["by_source_reason"] == {"alpha": {"missing_audio": 1}, "beta": {"unmapped_label": 1}}
    assert rej["by_reason"] == {"missing_audio": 1, "unmapped_label": 1}
    assert [e["input_ref"] for e in rej["examples"]] == ["/data/alpha/x.wav", "beta/9"]
    assert rej["examples"][1]["detail"].startswith("emotion 'surprised'")


def test_reject_examples_capped_and_cover_every_reason(spec, tables):
    many = [
        {
            "source": "alpha",
            "input_ref": f"/a/{i:02d}.wav",
            "stage": "ingest",
            "reason": "unreadable_audio",
            "detail": f"/a/{i:02d}.wav cannot be decoded",
        }
        for i in range(30)
    ]
    many.append(
        {
            "source": "beta",
            "input_ref": "beta/x",
            "stage": "label",
            "reason": "low_confidence_sentiment",
            "detail": "beta/x scored 0.2",
        }
    )
    rejects = _frame(many, REJECTS_SCHEMA)
    card = _card(spec, {**tables, "rejects": rejects})
    examples = card["rejects"]["examples"]
    assert len(examples) == 20
    assert {e["reason"] for e in examples} == {"unreadable_audio", "low_confidence_sentiment"}
    assert card["rejects"]["by_source_reason"]["alpha"] == {"unreadable_audio": 30}
    assert card["counts"]["sources"]["alpha"]["rejected"] == 30


def test_utterances_section(spec, tables):
    utt = _card(spec, tables)["utterances"]
    assert utt["by_split"] == {
        "train": {"count": 4, "hours": 1.35},
        "dev": {"count": 1, "hours": 0.25},
        "test": {"count": 1, "hours": 0.1},
    }
    assert utt["sentiment_by_split"]["train"] == {"negative": 2, "neutral": 1, "positive": 1}
    assert utt["sentiment_by_split"]["test"] == {"negative": 0, "neutral": 1, "positive": 0}
    assert utt["label_origins"]["transcript_origin"] == {"whisper": 5, "human": 1}
    assert utt["label_origins"]["sentiment_origin"] == {"text_classifier": 4, "mapped_emotion": 2}
    assert utt["duration_s"]["min"] == 360.0 and utt["duration_s"]["max"] == 1800.0
    assert utt["duration_s"]["median"] == 900.0


def test_asr_stage_section(spec, tables):
    asr = _card(spec, tables)["asr_stage"]
    assert asr["by_split_sentiment"]["train"] == {"negative": 1, "neutral": 1, "positive": 1}
    assert asr["train_balanced"] is True and asr["train_missing_classes"] == []
    assert asr["by_source_sentiment"] == {"alpha": {"negative": 1, "neutral": 1, "positive": 2}}
    assert asr["excluded_by_split"] == {"train": 1, "dev": 0, "test": 1}
    assert (asr["rows"], asr["unique_utterances"], asr["recipe_applied"]) == (4, 4, 1)
    missing_neutral = tables["asr"].iloc[[0, 1, 3]]
    asr2 = _card(spec, {**tables, "asr": missing_neutral})["asr_stage"]
    assert asr2["train_balanced"] is True and asr2["train_missing_classes"] == ["neutral"]
    # Two extra positive rows (oversampling gone wrong): spread 2 is more than rounding.
    skewed = tables["asr"].iloc[[0, 1, 2, 3, 0, 0]].assign(row_id=[f"r{i}" for i in range(6)])
    asr3 = _card(spec, {**tables, "asr": skewed})["asr_stage"]
    assert asr3["train_balanced"] is False and asr3["unique_utterances"] == 4


def test_classifier_stage_section(spec, tables):
    clf = _card(spec, tables)["classifier_stage"]
    assert clf["windows"] == 5
    assert clf["by_split_sentiment"]["train"] == {"negative": 1, "neutral": 0, "positive": 2, "non_speech": 1}
    assert clf["speech"]["speech"] == 4 and clf["speech"]["non_speech"] == 1
    assert clf["speech"]["by_split"]["train"] == {"speech": 3, "non_speech": 1}
    assert clf["class_weights"] == {"train": {"negative": 1.5, "positive": 0.75}, "dev": {"positive": 1.0}}
    assert clf["valid_hours"] == pytest.approx(23.0 / 3600, abs=1e-6)


def test_cross_sections_and_small_groups(spec, tables):
    cross = _card(spec, tables)["cross_sections"]
    assert cross["min_group_size"] == 3
    gender = cross["gender"]
    assert gender["female"]["count"] == 3 and gender["female"]["small"] is False
    assert gender["female"]["sentiment"] == {"negative": 2, "neutral": 0, "positive": 1}
    assert gender["female"]["hours"] == pytest.approx(1.1)
    assert gender["male"] == {
        "count": 2,
        "hours": 0.5,
        "sentiment": {"negative": 0, "neutral": 1, "positive": 1},
        "label_origin": {
            "sentiment": {"by_origin": {"text_classifier": 2}, "human": 0},
            "transcript": {"by_origin": {"whisper": 2}, "human": 0},
        },
        "small": True,
    }
    # label origin per group: alpha/1 has a human transcript; beta's sentiment is a mapped emotion (human)
    female = gender["female"]["label_origin"]
    assert female["sentiment"] == {"by_origin": {"text_classifier": 2, "mapped_emotion": 1}, "human": 1}
    assert female["transcript"] == {"by_origin": {"whisper": 2, "human": 1}, "human": 1}
    assert cross["source"]["beta"]["label_origin"]["sentiment"]["human"] == 2
    assert gender["unknown"]["count"] == 1 and gender["unknown"]["small"] is True
    assert cross["age_bucket"]["20s"]["count"] == 3 and cross["age_bucket"]["unknown"]["count"] == 2
    assert cross["accent"]["unknown"]["count"] == 2
    assert list(cross["split"]) == ["train", "dev", "test"]
    assert cross["source"]["alpha"]["small"] is False and cross["source"]["beta"]["small"] is True
    default = _card(spec, tables, extra={})["cross_sections"]
    assert default["min_group_size"] == 20 and all(g["small"] for g in default["gender"].values())


def test_extra_sections_cannot_overwrite_computed_ones(spec, tables):
    with pytest.raises(ValueError, match="counts"):
        _card(spec, tables, extra={"counts": {}})


def test_markdown_has_summary_tables_and_plot_links(spec, tables):
    card = _card(spec, tables)
    card["schema_version"] = "1"
    card["content_sha256"] = "f" * 64
    md = render_markdown(card, [f"/rel/plots/{name}" for name in PLOT_FILES], report_html="report.html")
    assert md.startswith("# Dataset card: tiny")
    assert "**schema_version**: 1" in md and "f" * 64 in md and "[report.html](report.html)" in md
    assert md.index("## Summary") < md.index("## Hours per source, split and class") < md.index("## Sources")
    assert md.index("## Sources") < md.index("## How to use")
    # Hours read h:mm:ss everywhere (1.7 h accepted), never 0.004593.
    assert "missing_audio 1" in md and "1:42:00" in md and "beta [ravdess]" in md
    assert "- `alpha`: folder corpus at `/data/alpha`" in md
    assert "WARNING" in md and "beta" in md
    assert "| alpha | 5 | 4 | 1 | 0 | 1 | 1:30:00 | yes |" in md
    assert "| beta | 4 | 2 | 1 | 2 | 2 | 0:12:00 | no |" in md
    assert "| source | missing_audio | unmapped_label | total |" in md
    assert "| male | 2 | 0:30:00 | 0 | 1 | 1 | 0 (0%) | 0 (0%) | yes |" in md
    assert "| female | 3 | 1:06:00 | 2 | 0 | 1 | 1 (33%) | 1 (33%) | no |" in md
    assert "## Leakage" in md and "Duplicate segments resolved: 0" in md and "DNS-Challenge" in md
    assert "| train | 1 (33%) | 1 (33%) | 1 (33%) | 3 |" in md  # the uniform ASR train split
    for name in PLOT_FILES:
        assert f"(plots/{name})" in md
    assert "## Timings (seconds per stage)" in md and "| ingest | 1.25 |" in md
    # Machine-only sections are named, not flattened into ~120 rows of dotted keys.
    assert "| transcripts.model | tiny.en |" not in md and "| field | value |" not in md
    assert "- `labelers`: Labelers" in md
    assert "not both" in md and "recipe_applied" in md


def test_markdown_without_plots_and_without_data(spec):
    empty = {
        "utterances": _frame([], UTTERANCES_SCHEMA),
        "asr": _frame([], ASR_STAGE_SCHEMA),
        "classifier": _frame([], CLASSIFIER_STAGE_SCHEMA),
        "rejects": _frame([], REJECTS_SCHEMA),
    }
    card = _card(spec, empty, found={"alpha": 0, "beta": 0}, extra={})
    json.dumps(card, allow_nan=False)
    assert card["counts"]["totals"]["accounted"] is True
    assert card["utterances"]["duration_s"]["median"] is None
    assert card["asr_stage"]["train_balanced"] is None
    md = render_markdown(card, [])
    assert "![" not in md and "## Plots" not in md
    assert "No rejects." in md and "## How to use" in md
    assert "schema_version" not in md


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def test_plots_are_valid_deterministic_pngs(spec, tables, tmp_path):
    card = _card(spec, tables)
    first = make_plots(card, tables["utterances"], tables["asr"], str(tmp_path / "a" / "plots"))
    second = make_plots(card, tables["utterances"], tables["asr"], str(tmp_path / "b"))
    assert [Path(p).name for p in first] == [n for n in PLOT_FILES if n in {Path(p).name for p in first}]
    assert "hours_by_source.png" in {Path(p).name for p in first}
    for a, b in zip(first, second, strict=True):
        pa, pb = Path(a), Path(b)
        assert pa.stat().st_size > 0
        width, height = _png_size(pa)
        assert width >= 750 and height >= 400  # readable: no more 600x400 thumbnails
        assert pa.read_bytes() == pb.read_bytes()  # rebuilds are byte-stable
    md = render_markdown(card, first)
    assert "![sentiment distribution](plots/sentiment_distribution.png)" in md


def test_plots_with_empty_tables(spec, tmp_path):
    empty_u, empty_a = _frame([], UTTERANCES_SCHEMA), _frame([], ASR_STAGE_SCHEMA)
    card = _card(
        spec,
        {
            "utterances": empty_u,
            "asr": empty_a,
            "classifier": _frame([], CLASSIFIER_STAGE_SCHEMA),
            "rejects": _frame([], REJECTS_SCHEMA),
        },
        found={},
        extra={},
    )
    # Nothing to show: no plot is drawn (an empty panel tells a person nothing).
    assert make_plots(card, empty_u, empty_a, str(tmp_path)) == []


def test_duplicates_and_leakage_reach_the_card(spec, tables):
    utt = tables["utterances"].copy()
    utt["segment_key"] = [f"k{i}" for i in range(len(utt))]
    dup = {"source": "beta", "input_ref": "beta/7", "stage": "splits", "reason": "duplicate_segment",
           "detail": "beta/7 is the same audio (segment k0) as alpha/1, which was kept"}
    rejects = pd.concat([tables["rejects"], _frame([dup], REJECTS_SCHEMA)], ignore_index=True)
    card = _card(spec, {**tables, "utterances": utt, "rejects": rejects}, found={"alpha": 5, "beta": 4})
    leak = card["leakage"]
    assert leak["duplicate_segments_resolved"] == 1 and leak["duplicates_by_source"] == {"beta": 1}
    assert leak["segment_keys_in_two_splits"] == 0 and "smallest utterance_id" in leak["rule"]
    md = render_markdown(card, [])
    assert "1 duplicate segments resolved" in md and "Duplicate segments resolved: 1 (beta 1)" in md
    # a leak (same key in train and test) is counted, so the card can never hide one
    utt.loc[5, "segment_key"] = "k0"
    leaked = _card(spec, {**tables, "utterances": utt, "rejects": rejects})["leakage"]
    assert leaked["segment_keys_in_two_splits"] == 1 and leaked["segment_keys_repeated"] == 1


def test_eligibility_and_agreement_hooks(spec, tables):
    extra = {
        **EXTRA,
        "eligibility": {"asr": {"total": 2, "by_split": {"test": {"total": 2}}},
                        "classifier": {"total": 1, "by_split": {}}, "rules": {"asr": {"test": {}}}},
        "agreement": {"by_source": {"alpha": {"accuracy": 0.8, "n": 10}}},
    }
    card = _card(spec, tables, extra=extra)
    assert card["eligibility"]["asr"]["total"] == 2
    assert card["cross_sections"]["source"]["alpha"]["agreement"] == {"accuracy": 0.8, "n": 10}
    assert "agreement" not in card["cross_sections"]["source"]["beta"]
    md = render_markdown(card, [])
    assert "2 utterances excluded from the ASR stage and 1 from the classifier stage" in md
    assert "- `eligibility`: Eligibility (label origins each stage and split may use)" in md
    assert "- `agreement`: Pseudo-label agreement with human labels" in md
    assert '| alpha | 4 | 1:30:00 | 1 | 1 | 2 | 0 (0%) | 1 (25%) | {"accuracy":0.8,"n":10} | no |' in md
    # the shape tasks.label.sentiment.agreement writes: labelers -> per_source scores
    real = {**EXTRA, "sentiment_agreement": {"labelers": {"vader": {
        "overall": {"n": 3}, "per_source": {"beta": {"n": 3, "accuracy": 0.6667, "macro_f1": 0.5, "f1": {}}}}}}}
    cross = _card(spec, tables, extra=real)["cross_sections"]["source"]
    assert cross["beta"]["agreement"] == {"vader": {"n": 3, "accuracy": 0.6667, "macro_f1": 0.5}}
    assert "agreement" not in cross["alpha"]


def test_summary_promises_reject_examples_only_where_they_follow(spec, tables):
    card = _card(spec, tables)
    # The Markdown card prints the examples table after the summary: "below" is true there.
    md = render_markdown(card, [])
    assert "examples below." in md and md.index("examples below.") < md.index("Examples:")
    # Anywhere else (console, Prefect artifact) nothing follows: list them, or point at the card.
    assert "below" not in render_summary(card)
    assert "examples in the dataset card (Rejects)" in render_summary(card)
    console = render_summary(card, max_examples=1)
    assert "below" not in console and "; for example:" in console
    listed = [line for line in console.splitlines() if line.startswith("  - ")]
    first = card["rejects"]["examples"][0]
    assert len(listed) == 1 and f"`{first['input_ref']}` ({first['reason']})" in listed[0]


def test_source_notes_reach_the_per_source_counts_summary_and_markdown(spec, tables):
    note = "metadata file /data/alpha/metadata.csv: column(s) text are not read"
    card = _card(spec, tables, extra={**EXTRA, "source_notes": {"alpha": [note]}})
    assert card["counts"]["sources"]["alpha"]["notes"] == [note]
    assert "notes" not in card["counts"]["sources"]["beta"] and "source_notes" not in card
    assert f"- **Note** (alpha): {note}" in render_summary(card)
    assert f"- `alpha`: {note}" in render_markdown(card, [])


def test_empty_stages_say_why(spec, tables):
    empty = {
        "utterances": _frame([], UTTERANCES_SCHEMA),
        "asr": _frame([], ASR_STAGE_SCHEMA),
        "classifier": _frame([], CLASSIFIER_STAGE_SCHEMA),
        "rejects": tables["rejects"],
    }
    # Nothing accepted: the reason names the reject reasons and one example detail.
    card = _card(spec, empty, found={"alpha": 1, "beta": 1}, extra={})
    for stage in ("asr_stage", "classifier_stage"):
        assert card[stage]["empty_reason"].startswith("no utterance was accepted: all 2 found item(s) were rejected")
        assert "missing_audio 1" in card[stage]["empty_reason"] and "; e.g. " in card[stage]["empty_reason"]
    summary = render_summary(card)  # one line when both stages are empty for the same reason
    assert "**Both stages are empty**: no utterance was accepted" in summary and "**ASR stage is empty" not in summary
    assert "**Empty**:" in render_markdown(card, []) and "**No utterance windows**:" in render_markdown(card, [])
    # Nothing found at all.
    nothing = _card(spec, {**empty, "rejects": _frame([], REJECTS_SCHEMA)}, found={"alpha": 0}, extra={})
    assert "the sources hold no items" in nothing["asr_stage"]["empty_reason"]
    # Accepted utterances that sampling, eligibility and PII left out; noise windows are not utterance rows.
    noise = _frame([_stage("noise/n1", "noise", "train", None, 5.0, speech_present=False)], CLASSIFIER_STAGE_SCHEMA)
    extra = {"balance": {"excluded": {"null_sentiment": 0, "ineligible": 3, "not_selected": 1}},
             "pii": {"asr_excluded": 2}, "eligibility": {"classifier": {"total": 6}}}
    left_out = _card(spec, {**tables, "asr": empty["asr"], "classifier": noise}, extra=extra)
    asr_reason = left_out["asr_stage"]["empty_reason"]
    assert asr_reason.startswith("all 6 accepted utterance(s) were left out of the ASR stage")
    assert "(ineligible 3, not_selected 1, pii_excluded 2" in asr_reason
    assert "**ASR stage is empty**: all 6" in render_summary(left_out)
    assert "**Classifier stage has no utterance windows**: all 6" in render_summary(left_out)
    clf_reason = left_out["classifier_stage"]["empty_reason"]
    assert "6 by label-origin eligibility rules" in clf_reason and "only 1 non-speech window(s)" in clf_reason
    # A stage with rows has no reason.
    full = _card(spec, tables)
    assert "empty_reason" not in full["asr_stage"] and "empty_reason" not in full["classifier_stage"]


def test_small_durations_read_in_minutes():
    from tasks.publish.card import fmt_hours

    assert fmt_hours(0.0) == "0.00 h"
    assert fmt_hours(0.0125) == "0.8 min"  # 45 s: not "0.01 h"
    assert fmt_hours(0.1) == "0.10 h" and fmt_hours(12.345) == "12.35 h"


def test_card_shows_every_guard_first_including_derived_ones(spec, tables):
    from tasks.core import guards
    from tasks.publish.markdown import render_warnings
    from tests.tasks.publish.test_report_parts import AGREEMENT


    other = guards.guard("split_skewed", "dev holds 2% of the hours, asked 10%")  # another area's guard
    acted = guards.guard("duration_limits", "3 items over 30 s excluded", level="info")
    card = _card(spec, tables, extra={**EXTRA, "sentiment_agreement": AGREEMENT, "guards": [other, acted]})
    names = [r["guard"] for r in card["guards"]]
    assert names == ["low_labeler_agreement", "split_skewed", "duration_limits"]  # warnings, then infos
    md = render_markdown(card, [])
    top = md.index("## ⚠ Warnings")
    assert top < md.index("## Summary") and md.index("low_labeler_agreement") < md.index("## Summary")
    assert md.index("split_skewed") < md.index("## Summary") and "- **Warnings**: 2" in md
    assert "| vader | tess | 40 | 0.17 | 0.17 | 1 |" in md  # agreement as a table, not JSON
    assert "split_skewed" in render_warnings(card) and "duration_limits" not in render_warnings(card)
    assert render_warnings({"guards": [acted]}) == "No warnings."
