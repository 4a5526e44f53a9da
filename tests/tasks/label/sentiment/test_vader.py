"""VADER: its decision convention, the confidence of a class, threshold checks and accuracy on real sentences."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.label.sentiment import text_classifier as tc
from tasks.label.sentiment import vader
from tasks.spec_labelers import TextClassifierSettings

REAL_TEXT = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real" / "text_sentiment"

HAPPY = "I am so happy, this is wonderful!"
ANGRY = "This is terrible and I hate it."
FLAT = "The train leaves at nine."


def test_classify_texts_follows_vader_convention() -> None:
    settings = TextClassifierSettings()
    happy, angry, flat, empty = tc.classify_texts([HAPPY, ANGRY, FLAT, ""], settings)
    assert happy["sentiment"] == "positive" and happy["compound"] >= 0.05
    assert angry["sentiment"] == "negative" and angry["compound"] <= -0.05
    assert flat["sentiment"] == "neutral" and flat["compound"] == 0.0
    for label in (happy, angry, flat, empty):
        total = label["p_negative"] + label["p_neutral"] + label["p_positive"]
        assert total == pytest.approx(1.0, abs=0.002)
        assert 0.5 <= label["sentiment_confidence"] <= 1.0
    assert happy["p_positive"] > happy["p_negative"] and angry["p_negative"] > angry["p_positive"]
    assert flat["sentiment_confidence"] == 1.0 and empty["p_neutral"] == 1.0  # dead centre of neutral
    # Moving the threshold moves the decision: 'good' (compound 0.44) is neutral under 0.5.
    assert (
        tc.classify_texts(["good"], TextClassifierSettings(positive_threshold=0.5))[0]["sentiment"]
        == "neutral"
    )


def test_confidence_is_half_at_boundaries_and_one_at_extremes() -> None:
    s = TextClassifierSettings(positive_threshold=0.2, negative_threshold=-0.4)
    assert vader.confidence(0.2, "positive", s) == pytest.approx(0.5)
    assert vader.confidence(1.0, "positive", s) == pytest.approx(1.0)
    assert vader.confidence(0.6, "positive", s) == pytest.approx(0.75)
    assert vader.confidence(-0.4, "negative", s) == pytest.approx(0.5)
    assert vader.confidence(-1.0, "negative", s) == pytest.approx(1.0)
    assert vader.confidence(0.0, "neutral", s) == pytest.approx(1.0)  # no sentiment evidence at all
    assert vader.confidence(0.2, "neutral", s) == pytest.approx(0.5)
    assert vader.confidence(-0.4, "neutral", s) == pytest.approx(0.5)
    assert vader.confidence(0.05, "neutral", s) == pytest.approx(
        0.875
    )  # each side scaled by its own threshold
    assert vader.confidence(-0.1, "neutral", s) == pytest.approx(0.875)
    shifted = TextClassifierSettings(positive_threshold=0.5, negative_threshold=0.1)  # band without 0
    assert vader.confidence(0.3, "neutral", shifted) == pytest.approx(1.0)
    assert vader.confidence(0.2, "neutral", shifted) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="negative_threshold < positive_threshold"):
        tc.classify_texts([HAPPY], TextClassifierSettings(positive_threshold=-0.1, negative_threshold=0.1))


def _read_uci(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sentence, score = line.rsplit("\t", 1)
            rows.append((sentence.strip(), "positive" if score.strip() == "1" else "negative"))
    return rows


@pytest.mark.realdata
def test_vader_accuracy_on_uci_sentiment_sentences() -> None:
    files = sorted(REAL_TEXT.glob("*_labelled.txt")) if REAL_TEXT.is_dir() else []
    if not files:
        pytest.skip(f"real text sentiment sample not found at {REAL_TEXT}")
    rows = [r for f in files for r in _read_uci(f)]
    assert len(rows) == 1000 * len(files)
    labels = tc.classify_texts([text for text, _ in rows], TextClassifierSettings())
    correct = sum(lab["sentiment"] == gold for lab, (_, gold) in zip(labels, rows, strict=True))
    decided = [
        (lab, gold) for lab, (_, gold) in zip(labels, rows, strict=True) if lab["sentiment"] != "neutral"
    ]
    accuracy = correct / len(rows)
    decided_accuracy = sum(lab["sentiment"] == gold for lab, gold in decided) / len(decided)
    print(
        f"VADER on {len(rows)} UCI sentences ({', '.join(f.name for f in files)}): accuracy {accuracy:.3f} "
        f"(neutral counts as wrong); {len(decided)} non-neutral, accuracy {decided_accuracy:.3f}"
    )
    # Measured here: 0.670 overall (Amazon 0.693, Yelp 0.646), 0.874 on the non-neutral predictions.
    assert accuracy > 0.64
    assert decided_accuracy > 0.84
