"""How well each sentiment labeler agrees with human labels: how users choose a labeler.

Measured on **held-out** human labels only: rows whose sentiment is a human label (origins
``human``/``mapped_emotion``, as the trained classifier uses), with a transcript, from unscripted
sources (not `trained.exclude_kinds`), in the **dev and test** splits, so the trained-in-run
classifier (fitted on train) is never scored on its own training data. Per source, at most
`max_per_source` rows are scored (a deterministic hash sample), so publishing stays fast.

Metrics per labeler, overall and per source: ``accuracy``; ``macro_f1`` (the mean F1 over the
classes seen in the gold labels or the predictions); ``coverage`` (share the labeler would label:
text in a language it does not support is an abstention, counted wrong) and the confusion matrix
``confusion[gold][predicted]`` (``none`` = abstained). The labeler with the best macro-F1 (ties:
accuracy) is the ``winner``; ``trained_vs_vader`` answers the question the card must answer.

Only offline labelers run here (VADER, the trained classifier, a configured HF model): scoring
Comprehend would cost calls, so for it the card gets a summary of what it labelled instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from manifests.schema import SENTIMENTS
from tasks.core.hashing import seeded_hex
from tasks.spec import DatasetSpec

logger = logging.getLogger(__name__)

ABSTAIN = "none"
MAX_DISAGREEMENTS = 50  # per labeler, kept in the card for the report's "listen to the disagreements"
HELDOUT_SPLITS: tuple[str, ...] = ("dev", "test")
Predictor = Callable[[pd.DataFrame], Sequence[str | None]]


def scores(gold: Sequence[str], predicted: Sequence[str | None]) -> dict[str, Any]:
    """accuracy, macro-F1, per-class F1, coverage and the confusion matrix of one labeler."""
    gold, predicted = list(gold), [p if p in SENTIMENTS else None for p in predicted]
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    n = len(gold)
    classes = [c for c in SENTIMENTS if c in gold or c in predicted]
    confusion = {g: {p: 0 for p in [*SENTIMENTS, ABSTAIN]} for g in SENTIMENTS}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p or ABSTAIN] += 1
    f1 = {}
    for c in classes:
        tp = confusion[c][c]
        fp = sum(confusion[g][c] for g in SENTIMENTS if g != c)
        fn = sum(v for p, v in confusion[c].items() if p != c)
        f1[c] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    correct = sum(confusion[c][c] for c in SENTIMENTS)
    return {
        "n": n,
        "coverage": round(sum(p is not None for p in predicted) / n, 4) if n else None,
        "accuracy": round(correct / n, 4) if n else None,
        "macro_f1": round(sum(f1.values()) / len(f1), 4) if f1 else None,
        "f1": {c: round(v, 4) for c, v in f1.items()},
        "confusion": {g: row for g, row in confusion.items() if g in gold},
    }


def _rank_key(name: str, result: dict[str, Any]) -> tuple[float, float, str]:
    overall = result["overall"]
    return (-(overall["macro_f1"] or 0.0), -(overall["accuracy"] or 0.0), name)


def sentiment_agreement(
    items: pd.DataFrame, labelers: Mapping[str, Predictor | Sequence[str | None]]
) -> dict[str, Any]:
    """Agreement of each labeler with `items["sentiment"]`, overall and per `items["source"]`.

    A labeler is either predictions aligned with `items`, or a callable that takes `items` (with a
    ``text`` column) and returns them. JSON-able, for the dataset card.
    """
    items = items.reset_index(drop=True)
    gold = items["sentiment"].astype(str).tolist()
    sources = items["source"].astype(str).tolist() if "source" in items.columns else ["all"] * len(items)
    out: dict[str, Any] = {"n_items": len(items), "labelers": {}}
    for name, labeler in labelers.items():
        predicted = list(labeler(items) if callable(labeler) else labeler)
        result = {"overall": scores(gold, predicted), "per_source": {}}
        for source in sorted(set(sources)):
            idx = [i for i, s in enumerate(sources) if s == source]
            result["per_source"][source] = scores([gold[i] for i in idx], [predicted[i] for i in idx])
        result["disagreements"] = disagreements(items, gold, predicted)
        out["labelers"][name] = result
    ranked = sorted(out["labelers"], key=lambda n: _rank_key(n, out["labelers"][n]))
    out["ranking"] = ranked
    out["winner"] = ranked[0] if ranked and len(items) else None
    return out


def _severity(gold: str, predicted: str | None) -> int:
    """2 for opposite poles (negative <-> positive), 1 for any other miss (neutral, abstained)."""
    return 2 if {gold, predicted} == {"negative", "positive"} else 1


def disagreements(items: pd.DataFrame, gold: Sequence[str], predicted: Sequence[str | None],
                  limit: int = MAX_DISAGREEMENTS) -> list[dict[str, Any]]:
    """Rows where the labeler and the human label differ, worst first (opposite poles, then the rest).

    Each is {utterance_id, source, human, predicted, severity}; `predicted` "none" = abstained.
    """
    ids = items["utterance_id"].astype(str).tolist() if "utterance_id" in items.columns else [""] * len(gold)
    sources = items["source"].astype(str).tolist() if "source" in items.columns else ["all"] * len(gold)
    out = [{"utterance_id": ids[i], "source": sources[i], "human": g, "predicted": p or ABSTAIN,
            "severity": _severity(g, p)}
           for i, (g, p) in enumerate(zip(gold, [p if p in SENTIMENTS else None for p in predicted],
                                          strict=True)) if g != p]
    return sorted(out, key=lambda d: (-d["severity"], d["source"], d["utterance_id"]))[:limit]


def _sample(rows: pd.DataFrame, max_per_source: int, seed: int) -> pd.DataFrame:
    """At most `max_per_source` rows per source, chosen by a seeded hash (stable across runs)."""
    if rows.empty:
        return rows
    order = rows["utterance_id"].map(lambda u: seeded_hex(seed, u))
    rows = rows.assign(_order=order).sort_values(["source", "_order"])
    return rows.groupby("source", sort=True).head(max_per_source).drop(columns="_order").reset_index(drop=True)


def offline_predictor(settings: Any, model_uri: str | None = None) -> Predictor:
    """A predictor from a text-classifier configuration: unsupported languages abstain (None)."""
    from tasks.label.sentiment import text_classifier as tc

    def predict(items: pd.DataFrame) -> list[str | None]:
        supported = [tc.supports_language(lang, settings, model_uri) for lang in items["language"]]
        texts = [t for t, ok in zip(items["text"], supported, strict=True) if ok]
        labels = iter(tc.classify_texts(texts, settings, model_uri))
        return [next(labels)["sentiment"] if ok else None for ok in supported]

    return predict


def trained_predictor(model: Any) -> Predictor:
    """A predictor from a fitted `trained.TrainedModel` (no file needed)."""
    from tasks.label.sentiment import trained

    def predict(items: pd.DataFrame) -> list[str | None]:
        supported = [model.supports(lang) for lang in items["language"]]
        texts = [t for t, ok in zip(items["text"], supported, strict=True) if ok]
        labels = iter(trained.predict(texts, model))
        return [next(labels)["sentiment"] if ok else None for ok in supported]

    return predict


def _trained_for_report(
    sample: pd.DataFrame, available_rows: int, languages: list[str], spec: DatasetSpec, model_uri: str | None
) -> tuple[Any, dict[str, Any]]:
    """(model or None, description): the run's model, or one trained now on the release's train split.

    Trained now, it sees at most `labelers.agreement_train_max_rows` rows (`sample`, from
    `training_sample`/`sample_from_ranked` over the `available_rows` train rows), so the cost of this
    report stops growing with the release; the description says how many and whether they were
    sampled. `languages`: the primary languages of the whole train split.
    """
    from tasks.label.sentiment import trained

    if model_uri:
        model = trained.load(model_uri)
        return model, {**model.describe(), "source": "trained in the run", "uri": model_uri}
    cap = spec.labelers.agreement_train_max_rows
    training = {
        "available_rows": int(available_rows),
        "trained_rows": int(len(sample)),
        "sampled": len(sample) < available_rows,
        "max_rows": cap,
        "stratified_by": "sentiment",
        "seed": spec.seed,
    }
    # Languages of the whole split: a rare language left out of the sample is still scored, not abstained.
    try:
        model = trained.fit(sample["text"].tolist(), sample["sentiment"].tolist(),
                            spec.labelers.text_classifier.trained, languages or ["en"])
    except trained.InsufficientTrainingData as err:
        return None, {"available": False, "reason": str(err), "training": training}
    return model, {**model.describe(), "source": "trained at publish on the release's train split",
                   "training": training}


def _stratum_quotas(counts: Mapping[str, int], total: int) -> dict[str, int]:
    """`total` split over the strata in proportion to `counts` (largest remainder, ties by name).

    Every non-empty stratum keeps at least one row when `total` allows, so the sampled classifier
    knows the same classes as one trained on everything.
    """
    n = sum(counts.values())
    quotas = {k: total * c // n for k, c in counts.items()}
    rest = total - sum(quotas.values())
    for k in sorted(counts, key=lambda k: (-(total * counts[k] % n), k))[:rest]:
        quotas[k] += 1
    for k in sorted(counts):
        if quotas[k] == 0 and counts[k] > 0:
            donor = max(sorted(quotas), key=lambda d: quotas[d])
            if quotas[donor] > 1:
                quotas[donor] -= 1
                quotas[k] = 1
    return quotas


def training_sample(rows: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` of `rows`, stratified by ``sentiment`` in proportion, chosen by a seeded hash.

    Which rows are picked depends only on the seed and the utterance ids (not on row order), so two
    builds of one release train the same report classifier; kept rows stay in their original order.
    """
    if max_rows is None or len(rows) <= max_rows:
        return rows
    rows = rows.reset_index(drop=True)
    counts = {str(k): int(v) for k, v in rows["sentiment"].astype(str).value_counts().items()}
    quotas = _stratum_quotas(counts, max_rows)
    order = rows["utterance_id"].map(lambda u: seeded_hex(seed, "report-train", u))
    ranked = rows.assign(_stratum=rows["sentiment"].astype(str), _order=order)
    ranked = ranked.sort_values(["_stratum", "_order", "utterance_id"], kind="mergesort")
    rank = ranked.groupby("_stratum", sort=False).cumcount()
    keep = rank < ranked["_stratum"].map(quotas)
    return rows.loc[sorted(ranked.index[keep])].reset_index(drop=True)


def sample_from_ranked(pool: pd.DataFrame, strata: Mapping[str, int], max_rows: int | None, seed: int) -> pd.DataFrame:
    """`training_sample` from a pool holding, per sentiment, at least its `max_rows` lowest-ranked rows.

    `strata` counts every train row per sentiment; the pick equals `training_sample` over all rows,
    in utterance_id order (the order of `trained.human_labelled`), so partial aggregates of any shard
    layout train the same report classifier.
    """
    if pool.empty:
        return pool.reset_index(drop=True)
    total = sum(strata.values())
    if max_rows is not None and total > max_rows:
        quotas = _stratum_quotas(dict(strata), max_rows)
        order = pool["utterance_id"].map(lambda u: seeded_hex(seed, "report-train", u))
        ranked = pool.assign(_stratum=pool["sentiment"].astype(str), _order=order)
        ranked = ranked.sort_values(["_stratum", "_order", "utterance_id"], kind="mergesort")
        keep = ranked.groupby("_stratum", sort=False).cumcount() < ranked["_stratum"].map(quotas)
        pool = ranked[keep].drop(columns=["_stratum", "_order"])
    return pool.sort_values("utterance_id", kind="mergesort").reset_index(drop=True)


def _comprehend_summary(utterances: pd.DataFrame) -> dict[str, Any] | None:
    if "sentiment_origin" not in utterances.columns:
        return None
    rows = utterances[utterances["sentiment_origin"] == "aws_comprehend"]
    if rows.empty:
        return None
    raw = rows["comprehend_sentiment"] if "comprehend_sentiment" in rows.columns else pd.Series(dtype=object)
    mixed = rows["p_mixed"] if "p_mixed" in rows.columns else pd.Series(dtype=float)
    return {
        "labelled": int(len(rows)),
        "answers": {str(k): int(v) for k, v in raw.value_counts().items()},
        "mixed_mapped": int((raw == "MIXED").sum()),
        "mean_p_mixed": round(float(mixed.mean()), 4) if mixed.notna().any() else None,
        "note": "not scored against human labels at publish (that would cost Comprehend calls)",
    }


def agreement_report(
    utterances: pd.DataFrame, spec: DatasetSpec, model_uri: str | None = None, max_per_source: int = 2000
) -> dict[str, Any]:
    """The card's ``sentiment_agreement`` section: offline labelers scored on held-out human labels.

    `model_uri` is the run's trained classifier (`tasks.label.steps.train_text_classifier`); without it a
    classifier is trained here on the release's train split with the spec's settings, so the
    trained-vs-VADER comparison is reported whichever labeler the run used. No cloud calls.
    """
    from tasks.label.sentiment import trained

    # One pass of the (per-row) filter for both uses; equal to training_rows + human_labelled(HELDOUT_SPLITS).
    labelled = trained.human_labelled(utterances, spec, ("train", *HELDOUT_SPLITS))
    heldout = _sample(labelled[labelled["split"].isin(HELDOUT_SPLITS)], max_per_source, spec.seed)
    train_rows = labelled[labelled["split"] == "train"].reset_index(drop=True)
    sample = training_sample(train_rows, spec.labelers.agreement_train_max_rows, spec.seed)
    languages = sorted({lang for lang in map(trained.primary_language, train_rows["language"]) if lang})
    return agreement_from_samples(spec, heldout, sample, len(train_rows), languages, _comprehend_summary(utterances),
                                  model_uri, max_per_source)


def agreement_from_samples(
    spec: DatasetSpec, heldout: pd.DataFrame, sample: pd.DataFrame, available_rows: int, languages: list[str],
    comprehend: dict[str, Any] | None, model_uri: str | None = None, max_per_source: int = 2000,
) -> dict[str, Any]:
    """The ``sentiment_agreement`` section from its samples: `heldout` (at most `max_per_source` held-out
    rows per source, by seeded hash), the report classifier's training `sample` of the `available_rows`
    train rows (their primary `languages`) and the Comprehend summary. Used by `agreement_report`
    and by publish's partial aggregates (`tasks.publish.aggregates_labels`)."""
    tc = spec.labelers.text_classifier
    in_use = spec.labelers.sentiment if spec.labelers.sentiment != "text_classifier" else tc.kind
    section: dict[str, Any] = {
        "labeler_in_use": in_use,
        "heldout": {
            "splits": list(HELDOUT_SPLITS),
            "origins": list(tc.trained.label_origins),
            "excluded_kinds": list(tc.trained.exclude_kinds),
            "max_per_source": max_per_source,
        },
    }
    if comprehend is not None:
        section["aws_comprehend"] = comprehend
    section["heldout"]["n_items"] = int(len(heldout))
    section["heldout"]["per_source"] = {str(k): int(v) for k, v in heldout["source"].value_counts().sort_index().items()}
    if heldout.empty:
        section["available"] = False
        section["reason"] = "no human-labelled transcripts in dev/test from unscripted sources"
        return section

    labelers: dict[str, Predictor] = {"vader": offline_predictor(tc.model_copy(update={"kind": "vader"}))}
    model, description = _trained_for_report(sample, available_rows, languages, spec, model_uri)
    section["trained_model"] = description
    if model is not None:
        labelers["trained"] = trained_predictor(model)
    if tc.kind == "hf_model":
        labelers["hf_model"] = offline_predictor(tc)
    section["available"] = True
    section.update(sentiment_agreement(heldout, labelers))
    if "trained" in section["labelers"]:
        pair = {n: section["labelers"][n]["overall"] for n in ("trained", "vader")}
        winner = min(pair, key=lambda n: _rank_key(n, section["labelers"][n]))
        section["trained_vs_vader"] = {
            "winner": winner,
            "macro_f1": {n: r["macro_f1"] for n, r in pair.items()},
            "accuracy": {n: r["accuracy"] for n, r in pair.items()},
        }
    return section
