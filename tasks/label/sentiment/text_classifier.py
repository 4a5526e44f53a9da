"""Fill missing sentiment from the transcript with an offline text classifier (VADER by default).

Rows that already carry a sentiment (``human`` or ``mapped_emotion``) are never touched; the others
get one from their transcript with origin ``text_classifier``, or become a reject row that says why.
Labels are looked up in the label cache first; only the misses are classified.

Kinds (`settings.kind`), dispatched by `classify_texts`:
``vader`` (default) -- VADER's lexicon (`tasks.label.sentiment.vader`: decision, scores and
confidence; its compound goes to the extra column ``sentiment_compound``, so the decision can be
re-made with other thresholds without re-labelling);
``trained`` -- TF-IDF + logistic regression trained in the run (`tasks.label.sentiment.trained`; the
pipeline passes the saved model's URI); ``hf_model`` -- a local Hugging Face model folder
(`tasks.label.sentiment.hf_model`). Their ``p_*`` are class probabilities, the confidence is the chosen
class's probability, and ``sentiment_compound`` stays null. Each kind has its own label-cache folder
whose settings include the model's identity, so a retrained model never serves stale labels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from tasks.core.label_cache import LabelCache, settings_hash, text_key
from tasks.core.rows import StageResult, rejects_frame
from tasks.label.sentiment import vader
from tasks.label.sentiment.common import is_missing, stage_reject, text_of
from tasks.spec_labelers import TextClassifierSettings

logger = logging.getLogger(__name__)

ORIGIN = "text_classifier"
# Columns this stage fills; `sentiment_compound` is an extra (allowed) column so the VADER decision
# can be re-made with other thresholds without re-labelling.
SCORE_COLUMNS: tuple[str, ...] = ("p_negative", "p_neutral", "p_positive", "sentiment_confidence")
COMPOUND_COLUMN = "sentiment_compound"
LABEL_FIELDS = frozenset({"sentiment", *SCORE_COLUMNS, "compound"})  # what classify_texts returns

# One entry per `TextClassifierSettings.kind`; new labelers plug in here behind `classify_texts`.
_CLASSIFIERS: dict[str, Callable[[Sequence[str], TextClassifierSettings], list[dict[str, Any]]]] = {
    "vader": vader.classify,
}


_LABELER_NAMES = {"vader": vader.LABELER_NAME, "trained": "trained-tfidf", "hf_model": "hf-model"}


def labeler_name(settings: TextClassifierSettings) -> str:
    """The label-cache folder (and the name in reject details) of the configured kind."""
    return _LABELER_NAMES[settings.kind]


def _trained_model(model_uri: str | None) -> Any:
    from tasks.label.sentiment import trained

    if not model_uri:
        raise ValueError(
            "labelers.text_classifier.kind 'trained' needs the model trained in this run "
            "(pipeline.train_text_classifier returns its model_uri)"
        )
    return trained.load(model_uri)


def classify_texts(
    texts: Sequence[str], settings: TextClassifierSettings, model_uri: str | None = None
) -> list[dict[str, Any]]:
    """Label each text: p_negative, p_neutral, p_positive, sentiment, sentiment_confidence, compound.

    `model_uri` is the trained model for kind ``trained`` (ignored otherwise).
    """
    vader.check_thresholds(settings)
    if settings.kind == "trained":
        from tasks.label.sentiment import trained

        return trained.predict(list(texts), _trained_model(model_uri))
    if settings.kind == "hf_model":
        from tasks.label.sentiment import hf_model

        return hf_model.classify(list(texts), settings)
    return _CLASSIFIERS[settings.kind](list(texts), settings)


def cache_settings(settings: TextClassifierSettings, model_uri: str | None = None) -> dict[str, Any]:
    """What identifies this labeler's labels in the cache.

    VADER: every setting (thresholds decide the class). Trained and HF models: the model's identity
    (plus what changes their output); thresholds are applied after the cache, so they are left out.
    """
    if settings.kind == "trained":
        return {"kind": "trained", "model_id": _trained_model(model_uri).model_id}
    if settings.kind == "hf_model":
        from tasks.label.sentiment import hf_model

        return hf_model.cache_identity(settings)
    return settings.model_dump()


def make_cache(root_uri: str, settings: TextClassifierSettings, model_uri: str | None = None) -> LabelCache:
    """The process-wide label cache for these settings under `root_uri` (local path or s3:// URI)."""
    return LabelCache.shared(root_uri, labeler_name(settings), cache_settings(settings, model_uri))


def supports_language(language: Any, settings: TextClassifierSettings, model_uri: str | None) -> bool:
    """VADER: English; trained: the languages it was trained on; hf_model: settings.languages."""
    if settings.kind == "trained":
        return bool(_trained_model(model_uri).supports(language))
    if settings.kind == "hf_model":
        from tasks.label.sentiment import hf_model

        return hf_model.supports(language, settings)
    return vader.is_english(language)


def _labels_for(
    texts: list[str], settings: TextClassifierSettings, cache: LabelCache | None, model_uri: str | None = None
) -> dict[str, dict[str, Any]]:
    """Labels of the distinct texts by text key: from the cache, classifying (and caching) the rest."""
    by_key = {text_key(t): t for t in texts}
    cached = cache.get_many(by_key) if cache is not None else {}
    labels = {k: v for k, v in cached.items() if LABEL_FIELDS <= v.keys()}  # else: an older format
    todo = [k for k in by_key if k not in labels]
    fresh = dict(zip(todo, classify_texts([by_key[k] for k in todo], settings, model_uri), strict=True))
    if cache is not None:
        cache.put_many(fresh)
    labels.update(fresh)
    logger.info(
        "%s: %d distinct texts, %d from cache, %d classified",
        labeler_name(settings),
        len(by_key),
        len(by_key) - len(todo),
        len(todo),
    )
    return labels


def _check_cache(cache: LabelCache, settings: TextClassifierSettings, model_uri: str | None = None) -> None:
    expected_settings = cache_settings(settings, model_uri)
    name = labeler_name(settings)
    if not cache.belongs_to(name, expected_settings):
        expected = settings_hash(expected_settings)
        raise ValueError(
            f"{cache!r} does not belong to labeler {name!r} with these settings "
            f"(expected settings_hash {expected}); build it with make_cache(root_uri, settings, model_uri)"
        )


def _unlabellable(
    row: dict[str, Any], settings: TextClassifierSettings, model_uri: str | None = None
) -> dict[str, str] | None:
    """The reject for a row the classifier must not label, or None when it can be classified."""
    uid, language = row.get("utterance_id"), row.get("language")
    if not supports_language(language, settings, model_uri):
        from tasks.label.sentiment.languages import unsupported_hint

        scope = "English-only" if settings.kind == "vader" else "not made for that language"
        detail = unsupported_hint(row, f"the {labeler_name(settings)} text classifier is {scope}")
        return stage_reject(row, "unsupported_language", detail)
    if text_of(row) is None:
        detail = (
            f"utterance {uid} has no sentiment and no transcript to classify; supply a transcript "
            "or sentiment in the corpus metadata, or enable labelers.transcripts"
        )
        return stage_reject(row, "missing_label", detail)
    return None


def _weak(
    row: dict[str, Any], label: dict[str, Any], settings: TextClassifierSettings
) -> dict[str, str] | None:
    """The low-confidence reject for a label under its class's minimum, or None."""
    sentiment, confidence = label["sentiment"], float(label["sentiment_confidence"])
    threshold = float(settings.min_confidence.get(sentiment, 0.0))
    if confidence >= threshold:
        return None
    compound = "" if label.get("compound") is None else f" (compound {label['compound']:+.3f})"
    detail = (
        f"utterance {row.get('utterance_id')}: {labeler_name(settings)} labelled the transcript {sentiment} "
        f"with confidence {confidence:.3f}{compound}, below "
        f"labelers.text_classifier.min_confidence.{sentiment} = {threshold:g}"
    )
    return stage_reject(row, "low_confidence_sentiment", detail)


def fill_missing_sentiment(
    items: pd.DataFrame,
    settings: TextClassifierSettings,
    cache: LabelCache | None,
    model_uri: str | None = None,
) -> StageResult:
    """Label rows without a sentiment from their transcript; rows that cannot be labelled are rejects.

    All texts of the shard are looked up in `cache` at once, and only the misses are classified
    (each distinct text once) and written back as one cache segment. `model_uri` is the trained
    model for kind ``trained``.
    """
    vader.check_thresholds(settings)
    if cache is not None:
        _check_cache(cache, settings, model_uri)
    rows = items.to_dict("records")
    rejects: list[dict[str, str]] = []
    keep = [True] * len(rows)
    pending: dict[int, str] = {}  # row position -> text to classify
    for pos, row in enumerate(rows):
        if not is_missing(row.get("sentiment")):
            continue
        reject = _unlabellable(row, settings, model_uri)
        if reject is None:
            pending[pos] = str(text_of(row))
        else:
            keep[pos] = False
            rejects.append(reject)

    labels = _labels_for(list(dict.fromkeys(pending.values())), settings, cache, model_uri) if pending else {}
    filled = {
        col: (items[col].tolist() if col in items.columns else [None] * len(rows))
        for col in ("sentiment", "sentiment_origin", *SCORE_COLUMNS, COMPOUND_COLUMN)
    }
    for pos, text in pending.items():
        label = labels[text_key(text)]
        reject = _weak(rows[pos], label, settings)
        if reject is not None:
            keep[pos] = False
            rejects.append(reject)
            continue
        filled["sentiment"][pos] = label["sentiment"]
        filled["sentiment_origin"][pos] = ORIGIN
        for col in SCORE_COLUMNS:
            filled[col][pos] = label[col]
        filled[COMPOUND_COLUMN][pos] = label.get("compound")

    out = items.copy()
    for col, values in filled.items():
        if col in ("sentiment", "sentiment_origin"):
            out[col] = pd.Series(
                [None if is_missing(v) else v for v in values], index=items.index, dtype=object
            )
        else:
            out[col] = pd.Series(
                [math.nan if v is None else v for v in values], index=items.index, dtype="float64"
            )
    kept = out[pd.Series(keep, index=items.index, dtype=bool)].reset_index(drop=True)
    return StageResult(items=kept, rejects=rejects_frame(rejects))
