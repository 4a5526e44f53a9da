"""Agreement of the labelers with held-out human labels: metrics, the card section, real sentences."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from tasks.label.sentiment import agreement, trained
from tasks.spec import DatasetSpec
from tasks.spec_labelers import TextClassifierSettings, TrainedClassifierSettings

REAL_TEXT = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real" / "text_sentiment"

# Call-centre outcomes: the sentiment is in domain words a general lexicon does not score.
GOOD = ["resolved", "refunded", "upgraded", "sorted out", "credited", "reconnected"]
BAD = ["escalated", "overcharged", "cancelled", "disconnected", "delayed again", "double billed"]
NOUNS = ["order", "account", "ticket", "contract", "invoice", "line", "router", "plan"]


def _call_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = ("positive", "negative", "neutral")[i % 3]
        noun = rng.choice(NOUNS)
        if kind == "neutral":
            text = f"my {noun} number is {rng.randint(100, 999)}"
        else:
            verb = rng.choice(GOOD if kind == "positive" else BAD)
            text = rng.choice(["the {n} was {v}", "they {v} my {n}", "so my {n} got {v} today"]).format(n=noun, v=verb)
        out.append((text, kind))
    return out


def test_scores_by_hand() -> None:
    gold = ["positive", "positive", "negative", "neutral", "neutral"]
    pred = ["positive", "neutral", "negative", "neutral", None]
    s = agreement.scores(gold, pred)
    assert s["n"] == 5 and s["accuracy"] == 0.6 and s["coverage"] == 0.8
    # F1: positive 2*1/(2+0+1) = 0.667, negative 1.0, neutral 2*1/(2+1+1) = 0.5 -> macro 0.7222
    assert s["f1"] == {"negative": 1.0, "neutral": 0.5, "positive": 0.6667}
    assert s["macro_f1"] == pytest.approx(0.7222, abs=1e-4)
    assert s["confusion"]["positive"] == {"negative": 0, "neutral": 1, "positive": 1, "none": 0}
    assert s["confusion"]["neutral"]["none"] == 1
    with pytest.raises(ValueError):
        agreement.scores(gold, pred[:2])


def test_sentiment_agreement_per_source_and_winner() -> None:
    items = pd.DataFrame(
        {
            "source": ["a", "a", "b", "b"],
            "sentiment": ["positive", "negative", "neutral", "positive"],
            "text": ["x", "y", "z", "w"],
        }
    )
    result = agreement.sentiment_agreement(
        items,
        {
            "perfect": list(items["sentiment"]),
            "always_neutral": lambda df: ["neutral"] * len(df),
        },
    )
    json.dumps(result)  # card-ready
    assert result["winner"] == "perfect" and result["ranking"] == ["perfect", "always_neutral"]
    assert result["labelers"]["always_neutral"]["per_source"]["b"]["accuracy"] == 0.5
    assert result["labelers"]["perfect"]["overall"]["macro_f1"] == 1.0


def _spec(tmp_path: Path, **tc: object) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "name": "t",
            "output": str(tmp_path),
            "sources": [{"name": "calls", "kind": "folder", "path": str(tmp_path)},
                        {"name": "acted", "kind": "cremad", "path": str(tmp_path)}],
            "labelers": {"text_classifier": {"trained": {"min_train_items": 30}, **tc}},
        }
    )


def _utterances(n: int = 600) -> pd.DataFrame:
    rows = []
    for i, (text, sentiment) in enumerate(_call_corpus(n, seed=1)):
        rows.append({"utterance_id": f"calls/{i}", "source": "calls", "corpus": "folder", "language": "en",
                     "speaker_id": f"s{i}", "transcript": text, "sentiment": sentiment,
                     "sentiment_origin": "human", "split": ("train", "train", "train", "dev", "test")[i % 5]})
    for i in range(40):  # scripted: must never count
        rows.append({"utterance_id": f"acted/{i}", "source": "acted", "corpus": "cremad", "language": "en",
                     "speaker_id": "a", "transcript": "it's eleven o'clock", "sentiment": "negative",
                     "sentiment_origin": "mapped_emotion", "split": "test"})
    rows.append({"utterance_id": "calls/pseudo", "source": "calls", "corpus": "folder", "language": "en",
                 "speaker_id": "p", "transcript": "the order was refunded", "sentiment": "positive",
                 "sentiment_origin": "text_classifier", "split": "test"})
    return pd.DataFrame(rows)


def test_agreement_report_compares_trained_with_vader_on_heldout_rows(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    utterances = _utterances()
    section = agreement.agreement_report(utterances, spec, model_uri=None)
    json.dumps(section)
    assert section["available"] is True and section["labeler_in_use"] == "vader"
    assert section["heldout"]["per_source"] == {"calls": 240}  # dev + test only; no scripted, no pseudo
    assert section["trained_model"]["n_train"] == 360
    assert set(section["labelers"]) == {"vader", "trained"}
    duel = section["trained_vs_vader"]
    assert duel["winner"] == "trained"  # domain words VADER does not know
    assert duel["macro_f1"]["trained"] > 0.9 > duel["macro_f1"]["vader"]
    assert section["winner"] == "trained"
    print(f"synthetic call-centre text: trained {duel['macro_f1']['trained']}, VADER {duel['macro_f1']['vader']}")

    # The run's own model is used when given (and is the one described).
    rows = trained.training_rows(utterances, spec)
    model = trained.fit(rows["text"], rows["sentiment"], spec.labelers.text_classifier.trained)
    uri = str(tmp_path / "model.joblib")
    trained.save(model, uri)
    with_model = agreement.agreement_report(utterances, spec, model_uri=uri)
    assert with_model["trained_model"]["uri"] == uri
    assert with_model["labelers"]["trained"] == section["labelers"]["trained"]

    capped = agreement.agreement_report(utterances, spec, max_per_source=50)
    assert capped["heldout"]["n_items"] == 50


def test_agreement_report_without_heldout_or_training_data(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    utterances = _utterances(12)
    section = agreement.agreement_report(utterances[utterances["split"] == "train"], spec)
    assert section["available"] is False and "dev/test" in section["reason"]
    small = agreement.agreement_report(utterances, spec)  # 5 training rows: no trained model, VADER only
    assert small["available"] is True and set(small["labelers"]) == {"vader"}
    assert small["trained_model"]["available"] is False
    assert "trained_vs_vader" not in small


def test_comprehend_summary_in_the_section(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.labelers.sentiment = "aws_comprehend"
    utterances = _utterances(30)
    extra = pd.DataFrame([
        {"utterance_id": "calls/c1", "source": "calls", "sentiment": "neutral", "sentiment_origin": "aws_comprehend",
         "comprehend_sentiment": "MIXED", "p_mixed": 0.6, "split": "train"},
        {"utterance_id": "calls/c2", "source": "calls", "sentiment": "positive", "sentiment_origin": "aws_comprehend",
         "comprehend_sentiment": "POSITIVE", "p_mixed": 0.0, "split": "train"},
    ])
    section = agreement.agreement_report(pd.concat([utterances, extra], ignore_index=True), spec)
    assert section["labeler_in_use"] == "aws_comprehend"
    assert section["aws_comprehend"]["labelled"] == 2 and section["aws_comprehend"]["mixed_mapped"] == 1
    assert section["aws_comprehend"]["answers"] == {"MIXED": 1, "POSITIVE": 1}
    assert section["aws_comprehend"]["mean_p_mixed"] == 0.3


def test_report_classifier_trains_on_a_capped_stratified_seeded_sample(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    utterances = _utterances()  # 360 train rows, 120 per class
    full = agreement.agreement_report(utterances, spec)["trained_model"]
    assert full["training"] == {"available_rows": 360, "trained_rows": 360, "sampled": False, "max_rows": 20_000,
                                "stratified_by": "sentiment", "seed": spec.seed}
    spec.labelers.agreement_train_max_rows = 90
    section = agreement.agreement_report(utterances, spec)
    json.dumps(section)
    described = section["trained_model"]
    assert described["n_train"] == 90 and described["class_counts"] == {"negative": 30, "neutral": 30, "positive": 30}
    assert described["training"]["trained_rows"] == 90 and described["training"]["sampled"] is True
    assert described["training"]["available_rows"] == 360
    assert section["labelers"]["trained"]["overall"]["n"] == 240  # the held-out rows are not sampled

    rows = trained.training_rows(utterances, spec)
    picked = agreement.training_sample(rows, 90, seed=7)
    again = agreement.training_sample(rows.sample(frac=1.0, random_state=3), 90, seed=7)
    assert sorted(picked["utterance_id"]) == sorted(again["utterance_id"])  # input row order does not matter
    other = agreement.training_sample(rows, 90, seed=8)
    assert set(other["utterance_id"]) != set(picked["utterance_id"])
    assert set(picked["utterance_id"]) <= set(rows["utterance_id"])
    assert agreement.training_sample(rows, None, seed=7) is rows
    assert agreement.training_sample(rows, 360, seed=7) is rows


def test_training_sample_is_proportional_and_keeps_every_class() -> None:
    def frame(counts: dict[str, int]) -> pd.DataFrame:
        labels = [c for c, n in counts.items() for _ in range(n)]
        return pd.DataFrame({"utterance_id": [f"u{i}" for i in range(len(labels))], "sentiment": labels,
                             "text": "t", "language": "en"})

    skewed = agreement.training_sample(frame({"neutral": 700, "positive": 200, "negative": 100}), 100, seed=1)
    assert skewed["sentiment"].value_counts().to_dict() == {"neutral": 70, "positive": 20, "negative": 10}
    # 1,000 x 3 / 1,001 each: the largest remainders get the spare rows, ties by name -> exactly the cap.
    even = agreement.training_sample(frame({"neutral": 1001, "positive": 1001, "negative": 1001}), 1000, seed=1)
    assert even["sentiment"].value_counts().to_dict() == {"negative": 334, "neutral": 333, "positive": 333}
    rare = agreement.training_sample(frame({"neutral": 998, "positive": 1, "negative": 1}), 10, seed=1)
    assert rare["sentiment"].value_counts().to_dict() == {"neutral": 8, "positive": 1, "negative": 1}


def _read_uci(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sentence, score = line.rsplit("\t", 1)
            rows.append((path.stem.split("_")[0], sentence.strip(), "positive" if score.strip() == "1" else "negative"))
    return rows


@pytest.mark.realdata
def test_trained_vs_vader_on_uci_sentences() -> None:
    files = sorted(REAL_TEXT.glob("*_labelled.txt")) if REAL_TEXT.is_dir() else []
    if not files:
        pytest.skip(f"real text sentiment sample not found at {REAL_TEXT}")
    rows = [r for f in files for r in _read_uci(f)]
    random.Random(13).shuffle(rows)
    cut = int(len(rows) * 0.7)
    train, test = rows[:cut], rows[cut:]
    model = trained.fit([t for _, t, _ in train], [s for _, _, s in train], TrainedClassifierSettings())
    items = pd.DataFrame({"source": [s for s, _, _ in test], "text": [t for _, t, _ in test],
                          "sentiment": [g for _, _, g in test], "language": "en"})
    result = agreement.sentiment_agreement(
        items,
        {"vader": agreement.offline_predictor(TextClassifierSettings()), "trained": agreement.trained_predictor(model)},
    )
    for name in ("vader", "trained"):
        overall = result["labelers"][name]["overall"]
        per = {s: r["accuracy"] for s, r in result["labelers"][name]["per_source"].items()}
        print(f"UCI held-out ({len(test)} sentences, trained on {len(train)}): {name} accuracy "
              f"{overall['accuracy']} macro-F1 {overall['macro_f1']} per source {per}")
    # Measured here: trained 0.84 accuracy; VADER 0.68 (its neutral answers count as wrong on 2 classes).
    assert result["winner"] == "trained"
    assert result["labelers"]["trained"]["overall"]["accuracy"] > 0.78
    assert result["labelers"]["vader"]["overall"]["accuracy"] > 0.6
