"""A local Hugging Face sequence-classification model as the labeler: a real forward pass, offline.

The model is a tiny, randomly initialised BERT (2 layers, hidden 32) with a WordLevel tokenizer
built here with the `tokenizers` package and saved with `save_pretrained`, so the test needs no
download and still exercises loading, tokenising, batching and the label mapping for real.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.label.sentiment import hf_model
from tasks.label.sentiment import text_classifier as tc
from tasks.spec import SpecError, parse_spec
from tasks.spec_labelers import TextClassifierSettings

WORDS = "[PAD] [UNK] [CLS] [SEP] i am so happy this is terrible the train leaves at nine".split()


def save_tiny_model(folder: Path, id2label: dict[int, str], seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    ).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=len(id2label), id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # make the classes clearly different so the arg-max is meaningful
        model.classifier.bias.copy_(torch.linspace(-1.0, 1.0, len(id2label)))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def three_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Deliberately not in negative/neutral/positive order: the mapping must follow id2label.
    return save_tiny_model(tmp_path_factory.mktemp("hf3"), {0: "POSITIVE", 1: "Negative", 2: "neutral"})


def _reference_probs(folder: Path, texts: list[str]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    return torch.softmax(logits, dim=-1).tolist()


def test_forward_pass_probabilities_and_label_mapping(three_class: Path) -> None:
    settings = TextClassifierSettings(kind="hf_model", model_path=str(three_class), batch_size=2)
    texts = ["I am so happy", "this is terrible", "the train leaves at nine", "unknown words here"]
    labels = tc.classify_texts(texts, settings)
    reference = _reference_probs(three_class, texts)
    assert len(labels) == 4
    for label, ref in zip(labels, reference, strict=True):
        total = label["p_negative"] + label["p_neutral"] + label["p_positive"]
        assert total == pytest.approx(1.0, abs=1e-6)
        assert label["p_positive"] == pytest.approx(ref[0], abs=1e-5)  # id 0 is POSITIVE
        assert label["p_negative"] == pytest.approx(ref[1], abs=1e-5)
        assert label["p_neutral"] == pytest.approx(ref[2], abs=1e-5)
        best = max(("negative", "neutral", "positive"), key=lambda c, lab=label: lab[f"p_{c}"])
        assert label["sentiment"] == best
        assert label["sentiment_confidence"] == pytest.approx(label[f"p_{best}"])
        assert label["compound"] is None


def test_label_map_for_unnamed_labels(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "m", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValueError, match="LABEL_0.*label_map"):
        tc.classify_texts(["i am so happy"], TextClassifierSettings(kind="hf_model", model_path=str(folder)))
    settings = TextClassifierSettings(
        kind="hf_model", model_path=str(folder), label_map={"LABEL_0": "negative", "LABEL_1": "positive"}
    )
    (label,) = tc.classify_texts(["i am so happy"], settings)
    assert label["p_neutral"] == 0.0
    assert label["p_negative"] + label["p_positive"] == pytest.approx(1.0)
    assert hf_model.map_labels({0: "neg", 1: "other", 2: "pos"}, {"other": None}) == ["negative", None, "positive"]


def test_fill_with_cache_languages_and_model_identity(three_class: Path, tmp_path: Path) -> None:
    settings = TextClassifierSettings(kind="hf_model", model_path=str(three_class), languages=["en", "de"])
    items = pd.DataFrame(
        [
            {"utterance_id": "s/a", "source": "s", "language": "en", "transcript": "I am so happy", "sentiment": None},
            {"utterance_id": "s/b", "source": "s", "language": "de-AT", "transcript": "this is terrible",
             "sentiment": None},
            {"utterance_id": "s/c", "source": "s", "language": "fa", "transcript": "the train", "sentiment": None},
        ]
    )
    cache = tc.make_cache(str(tmp_path), settings)
    assert cache.labeler == "hf-model"
    first = tc.fill_missing_sentiment(items, settings, cache)
    assert first.items["utterance_id"].tolist() == ["s/a", "s/b"]
    assert set(first.items["sentiment_origin"]) == {"text_classifier"}
    assert first.rejects["reason"].tolist() == ["unsupported_language"]
    assert "hf-model" in first.rejects["detail"].iloc[0]
    assert cache.stats["writes"] == 2
    again = tc.fill_missing_sentiment(items, settings, cache)
    assert cache.stats["hits"] == 2 and cache.stats["writes"] == 2  # nothing classified again
    pd.testing.assert_frame_equal(first.items, again.items)
    other = save_tiny_model(tmp_path / "other", {0: "POSITIVE", 1: "Negative", 2: "neutral"}, seed=1)
    assert hf_model.model_identity(str(other)) != hf_model.model_identity(str(three_class))


def test_pickle_weights_are_refused_with_a_way_out(tmp_path: Path) -> None:
    """pytorch_model.bin would go through torch.load (a code-execution path for crafted files)."""
    import torch
    from safetensors.torch import load_file

    folder = save_tiny_model(tmp_path / "pickled", {0: "negative", 1: "positive"})
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")  # the legacy pickle format
    weights.unlink()
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    settings = TextClassifierSettings(kind="hf_model", model_path=str(folder))
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights \(it has pytorch_model\.bin"):
        hf_model.load(settings)
    from transformers import AutoModelForSequenceClassification

    before = hf_model.model_identity(str(folder))
    AutoModelForSequenceClassification.from_pretrained(folder).save_pretrained(folder)  # what the error says
    loaded = hf_model.load(settings)
    assert loaded.class_of == ["negative", "positive"]
    # converted in place, in the same process: a new identity (so new cache keys), not the memoised one
    assert loaded.model_id == hf_model.model_identity(str(folder)) != before


def test_spec_requires_a_model_path() -> None:
    base = {"name": "x", "output": "/tmp/x", "sources": [{"name": "a", "kind": "folder", "path": "/tmp"}]}
    with pytest.raises(SpecError, match="model_path"):
        parse_spec({**base, "labelers": {"text_classifier": {"kind": "hf_model"}}})
