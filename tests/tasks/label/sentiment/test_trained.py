"""The classifier trained in the run: which rows it learns from, the model, persistence, pipeline wiring."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.label_cache import LabelCache, text_key
from tasks.core.shards import read_frame, write_frame
from tasks.label import steps as label_steps
from tasks.label.sentiment import text_classifier as tc
from tasks.label.sentiment import trained
from tasks.plan.splits import assign_splits
from tasks.spec import DatasetSpec
from tasks.spec_labelers import TextClassifierSettings, TrainedClassifierSettings

POS = ["great", "wonderful", "lovely", "fantastic", "excellent", "amazing", "delightful", "brilliant"]
NEG = ["terrible", "awful", "horrible", "dreadful", "disgusting", "miserable", "useless", "broken"]
NOUNS = ["service", "meal", "phone", "hotel", "movie", "driver", "screen", "battery", "room", "call"]
NEUTRAL = ["the {n} is on the second floor", "please send the {n} form by friday",
           "my {n} number ends in four", "the {n} opens at nine", "we talked about the {n} yesterday"]


def synthetic_corpus(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, sentiment) pairs whose sentiment is carried by the words, as in real reviews."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        noun = rng.choice(NOUNS)
        kind = ("positive", "negative", "neutral")[i % 3]
        if kind == "neutral":
            text = rng.choice(NEUTRAL).format(n=noun)
        else:
            adj = rng.choice(POS if kind == "positive" else NEG)
            text = rng.choice(["the {n} was {a}", "what a {a} {n}", "i found the {n} {a} today"]).format(n=noun, a=adj)
        out.append((text, kind))
    return out


def _spec(tmp_path: Path, **trained_overrides: object) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "name": "t",
            "output": str(tmp_path / "out"),
            "sources": [
                {"name": "calls", "kind": "folder", "path": str(tmp_path)},
                {"name": "acted", "kind": "ravdess", "path": str(tmp_path)},
            ],
            "labelers": {
                "sentiment": "text_classifier",
                "text_classifier": {"kind": "trained", "trained": {"min_train_items": 20, **trained_overrides}},
            },
        }
    )


def _row(uid: str, text: str | None, sentiment: str | None, origin: str | None, **fields: object) -> dict:
    base = {
        "utterance_id": f"calls/{uid}",
        "source": "calls",
        "corpus": "folder",
        "language": "en",
        "speaker_id": f"spk{uid}",
        "transcript": text,
        "transcript_raw": text,
        "sentiment": sentiment,
        "sentiment_origin": origin,
        "split": None,
    }
    return {**base, **fields}


def _items(n: int = 120) -> pd.DataFrame:
    rows = [_row(f"h{i}", t, s, "human") for i, (t, s) in enumerate(synthetic_corpus(n))]
    rows += [
        _row("mapped", "the meal was lovely", "positive", "mapped_emotion"),
        _row("acted", "kids are talking by the door", "negative", "mapped_emotion", source="acted",
             corpus="ravdess", utterance_id="acted/1"),
        _row("pseudo", "the call was great", "positive", "text_classifier"),
        _row("unlabelled", "the movie was awful", None, None),
        _row("no-text", None, "positive", "human"),
        _row("official-dev", "the hotel was brilliant", "positive", "human", split="validation"),
    ]
    return pd.DataFrame(rows)


def test_training_rows_are_human_unscripted_train_split_only(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    items = _items()
    rows = trained.training_rows(items, spec)
    ids = set(rows["utterance_id"])
    assert "acted/1" not in ids  # ravdess: scripted sentences, never trained on
    assert {"calls/pseudo", "calls/unlabelled", "calls/no-text", "calls/official-dev"}.isdisjoint(ids)
    assert set(rows["split"]) == {"train"}
    # Exactly the human rows plan_stages will put in train (splits are a pure function of the row).
    expected = assign_splits(items, spec.splits, spec.seed)
    expected = expected[(expected["split"] == "train") & expected["sentiment_origin"].isin(["human", "mapped_emotion"])
                        & (expected["source"] == "calls") & expected["transcript"].notna()]
    assert ids == set(expected["utterance_id"])
    assert 0 < len(rows) < 126
    only_human = _spec(tmp_path, label_origins=["human"])
    assert "calls/mapped" not in set(trained.training_rows(items, only_human)["utterance_id"])


def test_fit_predicts_probabilities_and_refuses_too_little_data() -> None:
    data = synthetic_corpus(150)
    settings = TrainedClassifierSettings(min_train_items=50)
    model = trained.fit([t for t, _ in data], [s for _, s in data], settings)
    assert model.classes == ["negative", "neutral", "positive"] and model.n_train == 150
    labels = trained.predict(["what a wonderful battery", "the driver was dreadful", "the room opens at nine"], model)
    assert [lab["sentiment"] for lab in labels] == ["positive", "negative", "neutral"]
    for lab in labels:
        assert lab["p_negative"] + lab["p_neutral"] + lab["p_positive"] == pytest.approx(1.0)
        assert lab["sentiment_confidence"] == max(lab["p_negative"], lab["p_neutral"], lab["p_positive"])
        assert lab["compound"] is None
    two = trained.fit([t for t, s in data if s != "neutral"], [s for _, s in data if s != "neutral"], settings)
    (lab,) = trained.predict(["a great meal"], two)
    assert lab["p_neutral"] == 0.0 and lab["sentiment"] == "positive"
    with pytest.raises(trained.InsufficientTrainingData, match="min_train_items = 50"):
        trained.fit([t for t, _ in data[:30]], [s for _, s in data[:30]], settings)
    with pytest.raises(trained.InsufficientTrainingData, match="two classes"):
        trained.fit(["good"] * 60, ["positive"] * 60, settings)


def test_training_hash_is_order_free_and_settings_bound() -> None:
    data = synthetic_corpus(30)
    texts, labels = [t for t, _ in data], [s for _, s in data]
    settings = TrainedClassifierSettings()
    h = trained.training_hash(texts, labels, settings)
    assert h == trained.training_hash(texts[::-1], labels[::-1], settings)
    assert h != trained.training_hash(texts, labels, TrainedClassifierSettings(C=1.0))
    assert h != trained.training_hash(texts[1:], labels[1:], settings)


def test_pipeline_trains_once_and_labels_shards_with_the_model(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    items = _items()
    shard_a, shard_b = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    write_frame(shard_a, items.iloc[:70])
    write_frame(shard_b, items.iloc[70:])
    messages: list[str] = []
    log = lambda fmt, *a: messages.append(fmt % a)  # noqa: E731
    uri = label_steps.train_text_classifier(spec, [shard_a, shard_b], log)
    assert uri is not None and uri.startswith(str(tmp_path / "out" / "work" / "models")) and uri.endswith(".joblib")
    assert Path(uri).is_file() and "trained" in messages[-1]
    again = label_steps.train_text_classifier(spec, [shard_a, shard_b], log)
    assert again == uri and "reused" in messages[-1]  # cached by training-data hash

    result = label_steps.sentiment_shard(spec, shard_b, log, model_uri=uri)
    out = read_frame(result["items_uri"]).set_index("utterance_id")
    assert out.loc["calls/unlabelled", "sentiment"] == "negative"
    assert out.loc["calls/unlabelled", "sentiment_origin"] == "text_classifier"
    assert 0.33 < out.loc["calls/unlabelled", "sentiment_confidence"] <= 1.0
    assert out.loc["calls/h100", "sentiment_origin"] == "human"  # human labels untouched
    cache_root = tmp_path / "out" / "cache" / "trained-tfidf"
    assert cache_root.is_dir() and not (tmp_path / "out" / "cache" / "vader").exists()
    model_id = trained.load(uri).model_id
    cache = LabelCache(str(tmp_path / "out" / "cache"), "trained-tfidf", {"kind": "trained", "model_id": model_id})
    assert cache.get_many([text_key("the movie was awful")])  # labels cached under the model's identity


def test_too_little_data_stops_or_falls_back_to_vader(tmp_path: Path) -> None:
    items = _items(6)
    shard = str(tmp_path / "s.parquet")
    write_frame(shard, items)
    with pytest.raises(trained.InsufficientTrainingData, match="min_train_items"):
        label_steps.train_text_classifier(_spec(tmp_path), [shard])
    spec = _spec(tmp_path, on_insufficient_data="vader")
    assert label_steps.train_text_classifier(spec, [shard]) is None
    out = read_frame(label_steps.sentiment_shard(spec, shard, model_uri=None)["items_uri"]).set_index("utterance_id")
    assert out.loc["calls/unlabelled", "sentiment"] == "negative"
    assert pd.notna(out.loc["calls/unlabelled", "sentiment_compound"])  # VADER's compound: VADER labelled it
    with pytest.raises(ValueError, match="needs the model trained in this run"):
        tc.fill_missing_sentiment(items, TextClassifierSettings(kind="trained"), cache=None)


def test_trained_model_rejects_languages_it_was_not_trained_on(tmp_path: Path) -> None:
    data = synthetic_corpus(60)
    model = trained.fit([t for t, _ in data], [s for _, s in data], TrainedClassifierSettings(min_train_items=10))
    uri = str(tmp_path / "m.joblib")
    trained.save(model, uri)
    items = pd.DataFrame([_row("fa", "من خیلی خوشحالم", None, None, language="fa"),
                          _row("en", "what a lovely phone", None, None, language="en-GB")])
    result = tc.fill_missing_sentiment(items, TextClassifierSettings(kind="trained"), None, model_uri=uri)
    assert result.items["utterance_id"].tolist() == ["calls/en"]
    assert result.items["sentiment"].tolist() == ["positive"]
    (reject,) = result.rejects.to_dict("records")
    assert reject["reason"] == "unsupported_language" and "trained-tfidf" in reject["detail"]


def test_hallucinated_whisper_transcripts_are_not_trained_on(tmp_path: Path) -> None:
    """A human sentiment kept beside an invented Whisper transcript must not teach the text classifier."""
    spec = _spec(tmp_path)
    items = _items()
    rows = trained.training_rows(items, spec)
    uid = rows["utterance_id"].iloc[0]
    weak = {"transcript_origin": "whisper", "transcript_confidence": 0.4, "avg_logprob": -1.1,
            "no_speech_prob": 0.1, "compression_ratio": 0.9}
    for column, value in weak.items():
        items.loc[items["utterance_id"] == uid, column] = value
    assert uid not in set(trained.training_rows(items, spec)["utterance_id"])
    assert len(trained.training_rows(items, spec)) == len(rows) - 1


@pytest.mark.parametrize("dtype", ["str", object])
def test_texts_of_equals_text_of_per_record(dtype):
    """The column-wise `texts_of` gives each row's `text_of` (transcript first, blank or missing falls back)."""
    from tasks.label.sentiment.trained import text_of, texts_of

    frame = pd.DataFrame({
        "transcript": pd.Series(["a", "  ", None, "", "é", None], dtype=dtype),
        "transcript_raw": pd.Series(["x", "raw", "raw2", None, "y", " \t"], dtype=dtype),
        "other": range(6),
    })
    assert texts_of(frame) == [text_of(r) for r in frame.to_dict("records")] == ["a", "raw", "raw2", None, "é", None]
    only_raw = frame.drop(columns=["transcript"])
    assert texts_of(only_raw) == [text_of(r) for r in only_raw.to_dict("records")]
