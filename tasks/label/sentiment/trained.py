"""A text sentiment classifier trained in the run on the corpora's own human-labelled transcripts.

Why: VADER is a general-purpose lexicon; the corpora's human labels say what *this* data's
positive/neutral/negative look like (MELD's sitcom lines, podcast speech). A linear model over
TF-IDF word 1-2 grams and character 2-5 grams, fitted with multinomial logistic regression, is fast,
needs no download, and is easy to audit.

What it is trained on (`training_rows`): rows whose sentiment is a human label
(`settings.label_origins`: ``human`` and ``mapped_emotion`` by default), with a transcript, from a
source whose kind is not in `exclude_kinds` (RAVDESS and CREMA-D by default: their 2 and 12 scripted
sentences are spoken with every emotion, so their text carries no sentiment), and in the **train**
split. Splits are a pure function of (source, speaker, seed) (`tasks.plan.splits.assign_splits`), so the
rows are picked here, before `plan_stages` assigns splits, exactly as they will end up: dev and test
rows are never seen in training and stay a fair held-out set for `tasks.label.sentiment.agreement`.

The model is persisted as ``<hash>.joblib`` where the hash covers the training pairs, the settings and
the scikit-learn version: a re-run with the same data loads it instead of training again, and any
change gives a new file (and a new label-cache folder, since the hash is the model's identity).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import SENTIMENTS
from tasks.core import storage
from tasks.core.threads import pin_native_threads
from tasks.label.sentiment.common import label_from_scores
from tasks.spec import DatasetSpec
from tasks.spec_labelers import TrainedClassifierSettings

logger = logging.getLogger(__name__)

LABELER_NAME = "trained-tfidf"
MODEL_FORMAT = 1
_MODELS: dict[str, TrainedModel] = {}
_MODELS_LOCK = threading.Lock()


class InsufficientTrainingData(ValueError):
    """Too few usable human-labelled training rows (or a single class) to train the classifier."""


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    try:
        return not bool(pd.isna(value))
    except (TypeError, ValueError):
        return True


def primary_language(language: Any) -> str | None:
    """'en-US' -> 'en'; None for a missing language."""
    if not _present(language):
        return None
    return str(language).strip().lower().replace("_", "-").split("-", 1)[0]


def text_of(row: dict[str, Any]) -> str | None:
    """The text a text labeler reads: the normalised transcript, else the raw one."""
    for column in ("transcript", "transcript_raw"):
        value = row.get(column)
        if _present(value):
            return str(value)
    return None


def texts_of(frame: pd.DataFrame) -> list[str | None]:
    """`text_of` of every row, reading only the two transcript columns (not a record per row)."""
    missing = [None] * len(frame)
    transcript, raw = ((frame[c].tolist() if c in frame.columns else missing) for c in ("transcript", "transcript_raw"))
    return [str(t) if _present(t) else (str(r) if _present(r) else None) for t, r in zip(transcript, raw, strict=True)]


def human_labelled(items: pd.DataFrame, spec: DatasetSpec, splits: Sequence[str]) -> pd.DataFrame:
    """Rows with a human sentiment and a transcript (not a hallucinated Whisper one), from unscripted sources, in `splits`.

    Columns: utterance_id, source, language, split, text, sentiment. Splits already on the rows
    (official or assigned) are kept; missing ones are assigned as `plan_stages` will assign them.
    """
    from tasks.plan.splits import assign_splits

    trained = spec.labelers.text_classifier.trained
    columns = ["utterance_id", "source", "language", "split", "text", "sentiment"]
    if items.empty:
        return pd.DataFrame(columns=columns)
    kind_of = {s.name: s.kind for s in spec.sources}
    excluded = set(trained.exclude_kinds)
    frame = items.copy()
    for col in ("sentiment", "sentiment_origin", "transcript", "transcript_raw", "corpus", "language"):
        if col not in frame.columns:
            frame[col] = None
    kinds = [kind_of.get(str(s), c) for s, c in zip(frame["source"].tolist(), frame["corpus"].tolist(), strict=True)]
    keep = (
        frame["sentiment"].isin(SENTIMENTS)
        & frame["sentiment_origin"].isin(list(trained.label_origins))
        & pd.Series([k not in excluded for k in kinds], index=frame.index)
    )
    frame = frame[keep]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    from tasks.label.transcripts.hallucination import flagged

    frame = frame[~flagged(frame, spec.labelers.whisper.hallucination)]  # invented words teach nothing
    frame = frame.assign(text=texts_of(frame))
    frame = frame[frame["text"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    if "split" not in frame.columns or frame["split"].isna().any():
        frame = assign_splits(frame, spec.splits, spec.seed)
    frame = frame[frame["split"].isin(list(splits))]
    return frame[columns].sort_values("utterance_id").reset_index(drop=True)


def training_rows(items: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The rows the classifier is trained on: human-labelled, unscripted, train split."""
    return human_labelled(items, spec, ["train"])


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def training_hash(texts: Sequence[str], labels: Sequence[str], settings: TrainedClassifierSettings) -> str:
    """Identity of a model: sorted (text, label) pairs, settings, format and scikit-learn version."""
    digest = hashlib.sha256()
    header = {"format": MODEL_FORMAT, "sklearn": _sklearn_version(), "settings": settings.model_dump(mode="json")}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text, label in sorted(zip(texts, labels, strict=True)):
        digest.update(json.dumps([text, label], ensure_ascii=False).encode())
    return digest.hexdigest()[:24]


@dataclass
class TrainedModel:
    """A fitted pipeline plus what the label cache and the card need to know about it."""

    pipeline: Any
    classes: list[str]
    languages: list[str]
    model_id: str
    n_train: int
    class_counts: dict[str, int] = field(default_factory=dict)

    def supports(self, language: Any) -> bool:
        """A missing language is taken as the spec default, which the data was labelled in."""
        primary = primary_language(language)
        return primary is None or primary in self.languages

    def describe(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "n_train": self.n_train,
            "class_counts": dict(self.class_counts),
            "languages": list(self.languages),
        }


def _build_pipeline(settings: TrainedClassifierSettings) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = [
        TfidfVectorizer(
            ngram_range=tuple(settings.word_ngrams),
            min_df=settings.min_df,
            max_features=settings.max_features,
            sublinear_tf=True,
        )
    ]
    if settings.char_ngrams is not None:
        features.append(
            TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=tuple(settings.char_ngrams),
                min_df=settings.min_df,
                max_features=settings.max_features,
                sublinear_tf=True,
            )
        )
    # lbfgs fits one multinomial (softmax) model over all classes.
    classifier = LogisticRegression(
        C=settings.C,
        max_iter=settings.max_iter,
        class_weight="balanced" if settings.class_weight == "balanced" else None,
    )
    return make_pipeline(make_union(*features), classifier)


def fit(
    texts: Sequence[str],
    labels: Sequence[str],
    settings: TrainedClassifierSettings,
    languages: Sequence[str] = ("en",),
) -> TrainedModel:
    """Train on (text, label) pairs; raises InsufficientTrainingData below min_train_items or one class."""
    texts, labels = list(texts), list(labels)
    bad = sorted({lab for lab in labels if lab not in SENTIMENTS})
    if bad:
        raise ValueError(f"training labels must be {', '.join(SENTIMENTS)} (got {bad})")
    counts = {c: labels.count(c) for c in SENTIMENTS if c in labels}
    if len(texts) < settings.min_train_items or len(counts) < 2:
        raise InsufficientTrainingData(
            f"{len(texts)} usable human-labelled training transcript(s) with classes {counts}; the trained "
            f"classifier needs at least labelers.text_classifier.trained.min_train_items = "
            f"{settings.min_train_items} and two classes"
        )
    pipeline = _build_pipeline(settings)
    pin_native_threads()  # the solver's BLAS products must not follow OMP_NUM_THREADS (tasks/core/threads.py)
    pipeline.fit(texts, labels)
    return TrainedModel(
        pipeline=pipeline,
        classes=[str(c) for c in pipeline.classes_],
        languages=sorted({lang for lang in languages if lang}),
        model_id=training_hash(texts, labels, settings),
        n_train=len(texts),
        class_counts=counts,
    )


def predict(texts: Sequence[str], model: TrainedModel) -> list[dict[str, Any]]:
    """Per-class probabilities (a class the model never saw gets 0); the arg-max is the label."""
    if not texts:
        return []
    pin_native_threads()
    proba = np.asarray(model.pipeline.predict_proba(list(texts)), dtype=float)
    out = []
    for row in proba:
        scores = {c: 0.0 for c in SENTIMENTS}
        for cls, p in zip(model.classes, row, strict=True):
            scores[cls] = float(p)
        out.append(label_from_scores(scores))
    return out


def save(model: TrainedModel, uri: str) -> None:
    """joblib bytes written atomically through tasks.core.storage (local or s3)."""
    import joblib

    buf = io.BytesIO()
    joblib.dump({"format": MODEL_FORMAT, "sklearn": _sklearn_version(), "model": model}, buf, compress=3)
    storage.write_bytes(uri, buf.getvalue())
    with _MODELS_LOCK:
        _MODELS[uri] = model


def load(uri: str) -> TrainedModel:
    """The model saved at `uri`, loaded once per process.

    Only load files this pipeline wrote (joblib is pickle); they live under the run's own output.
    """
    with _MODELS_LOCK:
        model = _MODELS.get(uri)
    if model is not None:
        return model
    import joblib

    payload = joblib.load(io.BytesIO(storage.read_bytes(uri)))
    if payload.get("format") != MODEL_FORMAT or payload.get("sklearn") != _sklearn_version():
        raise ValueError(
            f"model {uri} was written by format {payload.get('format')} / scikit-learn "
            f"{payload.get('sklearn')}; this code needs format {MODEL_FORMAT} / {_sklearn_version()} "
            "(delete it and re-run to retrain)"
        )
    model = payload["model"]
    with _MODELS_LOCK:
        _MODELS[uri] = model
    return model


def train_or_load(rows: pd.DataFrame, settings: TrainedClassifierSettings, models_dir: str) -> tuple[str, bool]:
    """(model URI, reused) for training rows from `training_rows`; trains only when no file has the hash."""
    texts, labels = rows["text"].astype(str).tolist(), rows["sentiment"].astype(str).tolist()
    model_id = training_hash(texts, labels, settings)
    uri = storage.join(models_dir, f"{model_id}.joblib")
    if storage.exists(uri):
        try:
            load(uri)
            return uri, True
        except Exception as err:  # an unreadable or foreign-version file is replaced, never fatal
            logger.warning("trained classifier %s cannot be loaded (%s); training again", uri, err)
    languages = sorted({lang for lang in map(primary_language, rows["language"]) if lang})
    model = fit(texts, labels, settings, languages=languages or ["en"])
    save(model, uri)
    return uri, False
