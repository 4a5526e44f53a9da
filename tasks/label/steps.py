"""The labelling steps over one shard each: transcripts, text sentiment, speech presence (and their set-up)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from manifests import uri as fs
from tasks.core.results import SentimentSetup, ShardResult
from tasks.core.rows import rejects_frame
from tasks.core.shards import (
    read_frame,
    run_shard,
)
from tasks.core.work import (
    Log,
    cache_dir,
    concat_rejects,
    noop,
    progress_logger,
    read_all,
    stage_result,
    work_dir,
)
from tasks.spec import DatasetSpec


def estimate_transcribe_cost(spec: DatasetSpec, shard_uris: list[str], log: Log = noop) -> dict[str, Any] | None:
    """Amazon Transcribe's cost for the whole run (uncached packs of every shard), logged before any job.

    Raises `TranscribeCostError` above `labelers.aws_transcribe.max_cost_usd`, so a run never starts
    jobs it could not finish under the cap (each shard also checks its own share).
    """
    if spec.labelers.transcripts != "aws_transcribe":
        return None
    from tasks.label.transcripts import aws_transcribe

    settings = spec.labelers.aws_transcribe
    cache = aws_transcribe.make_cache(cache_dir(spec), settings)
    jobs, audio_s, billed_s, usd = 0, 0.0, 0.0, 0.0
    for uri in shard_uris:
        est = aws_transcribe.plan_cost(read_frame(uri), settings, cache, spec.aws.staging_uri or "")
        jobs, audio_s, billed_s, usd = jobs + est.jobs, audio_s + est.audio_s, billed_s + est.billed_s, usd + est.usd
    total = aws_transcribe.CostEstimate(jobs, audio_s, billed_s, usd)
    log("Amazon Transcribe for this run: %s (price $%g/min)", total, settings.price_per_minute_usd)
    if settings.max_cost_usd is not None and usd > settings.max_cost_usd:
        raise aws_transcribe.TranscribeCostError(
            f"Amazon Transcribe for this run would cost about ${usd:.2f} ({total}), over "
            f"labelers.aws_transcribe.max_cost_usd ${settings.max_cost_usd:.2f}; nothing was started"
        )
    return {"jobs": jobs, "audio_s": round(audio_s, 3), "billed_s": round(billed_s, 3), "usd": round(usd, 4)}


def plan_transcripts(spec: DatasetSpec, shard_uris: list[str], log: Log = noop) -> str | None:
    """Whisper's packing plan over all shards (tasks/label/transcripts/packing.py), so shard_size cannot
    change pseudo-transcripts; None when Whisper is not the labeler."""
    from tasks.label.transcripts import packing

    if spec.labelers.transcripts != "whisper":
        return None
    uri = packing.write_plan(read_all(shard_uris), spec.labelers.whisper, spec.labelers.quality_sample_per_source,
                             spec.seed, fs.join(work_dir(spec), "packing"))
    log("transcripts: packing plan %s", uri.rsplit("/", 1)[-1])
    return uri


def transcripts_shard(spec: DatasetSpec, shard_uri: str, log: Log = noop, position: str = "",
                      plan_uri: str | None = None) -> ShardResult:
    """Normalise human transcripts and fill missing ones with the configured ASR labeler.

    `plan_uri` (from `plan_transcripts`) fixes Whisper's packing groups and the quality sample over
    the whole build; without it both are taken within this shard.
    """
    from tasks.label.transcripts import packing, quality, whisper
    from tasks.label.transcripts.normalize import normalize_transcript

    shard = read_frame(shard_uri)
    labeler = spec.labelers.transcripts
    settings = {"labeler": labeler, "whisper": spec.labelers.whisper.model_dump()}
    if labeler == "whisper":  # the model's content too: weights replaced under the same path redo the shard
        settings["whisper_identity"] = whisper.cache_settings(spec.labelers.whisper)
    if labeler != "none":
        settings["quality"] = {"n": spec.labelers.quality_sample_per_source, "seed": spec.seed}
    plan, sample = None, None
    if plan_uri is not None and labeler == "whisper":
        plan, sample = packing.shard_part(read_frame(plan_uri), shard["utterance_id"])
        settings["packing"] = packing.plan_digest(plan)  # the shard's labels depend on its groups
    if labeler == "aws_transcribe":
        settings["aws_transcribe"] = spec.labelers.aws_transcribe.model_dump()
        settings["aws"] = spec.aws.model_dump()

    def fill(frame: pd.DataFrame, progress: Any = None) -> Any:
        whisper_cache = whisper.make_cache(cache_dir(spec), spec.labelers.whisper)  # shared per process
        if labeler == "whisper":
            return whisper.fill_missing_transcripts(frame, spec.labelers.whisper, whisper_cache, progress=progress,
                                                    plan=plan)
        from tasks.label.transcripts import aws_transcribe

        aws = spec.labelers.aws_transcribe
        return aws_transcribe.fill_missing_transcripts(
            frame, aws, aws_transcribe.make_cache(cache_dir(spec), aws), progress, staging_uri=spec.aws.staging_uri,
            region=spec.aws.region, whisper_settings=spec.labelers.whisper, whisper_cache=whisper_cache, log=log)

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if labeler in ("whisper", "aws_transcribe"):
            kept, rejects = stage_result(fill(items, progress_logger(log, f"transcripts {position}")))
            from tasks.label.transcripts import hallucination

            kept, invented = hallucination.screen(kept, spec.labelers.whisper.hallucination)
            rejects = concat_rejects([rejects, invented])
            kept = quality.add_hypotheses(kept, items, spec.labelers.quality_sample_per_source, spec.seed,
                                          fill, labeler, sample=sample)
            return kept, rejects
        out = items.copy()
        out["transcript"] = [
            None if pd.isna(t) else normalize_transcript(t, language=lang if isinstance(lang, str) else "en")
            for t, lang in zip(out["transcript_raw"], out["language"], strict=True)
        ]
        return out, rejects_frame()

    items_uri, rejects_uri, reused, rows = run_shard(work_dir(spec), "transcripts", shard, settings, fn, log=log)
    log("transcripts %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused, "rows": rows}


def _uses_text_classifier(spec: DatasetSpec) -> bool:
    lab = spec.labelers
    return lab.sentiment == "text_classifier" or (
        lab.sentiment == "aws_comprehend" and lab.aws_comprehend.unsupported_language == "text_classifier"
    )


def train_text_classifier(spec: DatasetSpec, shard_uris: list[str], log: Log = noop) -> str | None:
    """Train the in-run text classifier ONCE, on the train split's human-labelled unscripted transcripts.

    Returns the model URI (`<output>/work/models/<training hash>.joblib`: a re-run with the same data
    loads it), or None when kind is not `trained` or, with `on_insufficient_data: vader`, when there
    is too little data (shards then label with VADER; logged). Otherwise too little data stops the run.
    """
    from tasks.label.sentiment import trained

    tc = spec.labelers.text_classifier
    if tc.kind != "trained" or not _uses_text_classifier(spec):
        return None
    rows = trained.training_rows(read_all(shard_uris), spec)
    try:
        uri, reused = trained.train_or_load(rows, tc.trained, fs.join(work_dir(spec), "models"))
    except trained.InsufficientTrainingData as err:
        if tc.trained.on_insufficient_data == "vader":
            log("trained text classifier not trained: %s; labelling with VADER (on_insufficient_data: vader)", err)
            return None
        raise
    log("trained text classifier %s: %d training transcript(s) %s", uri.rsplit("/", 1)[-1], len(rows),
        "reused" if reused else "trained")
    return uri


def estimate_sentiment_cost(spec: DatasetSpec, shard_uris: list[str], log: Log = noop) -> dict[str, Any] | None:
    """Amazon Comprehend's cost for the run (uncached documents, units, USD), logged before any call.

    Raises `comprehend.CostCapExceeded` above `labelers.aws_comprehend.max_cost_usd`.
    """
    if spec.labelers.sentiment != "aws_comprehend":
        return None
    from tasks.label.sentiment import comprehend

    cs = spec.labelers.aws_comprehend
    docs = [d for u in shard_uris for d in
            comprehend.plan_documents(read_frame(u), cs, cs.unsupported_language == "text_classifier").docs.values()]
    todo, cached = comprehend.pending_documents(docs, comprehend.make_cache(cache_dir(spec), cs))
    estimate = comprehend.estimate_cost(todo, cs)
    log("Amazon Comprehend for this run: %s to send, %d distinct document(s) cached", estimate.describe(), len(cached))
    comprehend.check_cost(estimate, cs)
    return {**estimate.as_dict(), "cached": len(cached)}


def prepare_sentiment(spec: DatasetSpec, shard_uris: list[str], log: Log = noop) -> SentimentSetup:
    """Run-level steps before the sentiment shards: train the classifier, estimate and cap the cost."""
    return {"model_uri": train_text_classifier(spec, shard_uris, log),
            "comprehend_cost": estimate_sentiment_cost(spec, shard_uris, log)}


def sentiment_shard(spec: DatasetSpec, shard_uri: str, log: Log = noop, position: str = "",
                    model_uri: str | None = None) -> ShardResult:
    """Fill missing sentiment with the configured text labeler (`model_uri`: the trained classifier)."""
    from tasks.label.sentiment import text_classifier

    shard = read_frame(shard_uri)
    labeler = spec.labelers.sentiment
    settings = {"labeler": labeler, "text_classifier": spec.labelers.text_classifier.model_dump(),
                "model_uri": model_uri}
    if labeler == "aws_comprehend":
        settings["aws_comprehend"] = spec.labelers.aws_comprehend.model_dump()
    tc = spec.labelers.text_classifier
    if tc.kind == "trained" and model_uri is None and tc.trained.on_insufficient_data == "vader":
        tc = tc.model_copy(update={"kind": "vader"})  # train_text_classifier found too little data
    if tc.kind == "hf_model" and _uses_text_classifier(spec):  # the model folder's content, not only its path
        settings["hf_model_identity"] = text_classifier.cache_settings(tc)

    def offline(items: pd.DataFrame) -> Any:
        cache = text_classifier.make_cache(cache_dir(spec), tc, model_uri)
        return text_classifier.fill_missing_sentiment(items, tc, cache, model_uri)

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if labeler == "text_classifier":
            return stage_result(offline(items))
        if labeler == "aws_comprehend":
            from tasks.label.sentiment import comprehend

            cs = spec.labelers.aws_comprehend
            return stage_result(comprehend.fill_missing_sentiment(
                items, cs, lambda: comprehend.make_client(spec.aws.region),
                comprehend.make_cache(cache_dir(spec), cs), offline=offline, log=log))
        return items, rejects_frame()

    items_uri, rejects_uri, reused, rows = run_shard(work_dir(spec), "sentiment", shard, settings, fn, log=log)
    log("sentiment %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused, "rows": rows}


def speech_shard(spec: DatasetSpec, shard_uri: str, log: Log = noop, position: str = "") -> ShardResult:
    """Run VAD on every utterance (this also decodes every file, catching audio a header hid)."""
    from tasks.label import speech, speech_check, speech_presence
    shard = read_frame(shard_uri)
    settings = {"vad_threshold": spec.segments.speech_threshold,
                "second_opinion": speech_check.VERSION if spec.segments.second_opinion else None}

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        # VAD results are cached by segment key like labels, so a refresh never re-decodes audio it has seen.
        from tasks.core.label_cache import LabelCache

        # The process-wide instance: a new one per shard re-read every segment per shard (O(shards x cache)).
        cache = LabelCache.shared(cache_dir(spec), "silero-vad",
                                  {"threshold": spec.segments.speech_threshold, "v": 1})
        keys = [k for k in items["segment_key"] if isinstance(k, str)]
        hits = cache.get_many(keys)
        todo = items[~items["segment_key"].isin(hits.keys())]
        intervals, rejects = speech.detect_speech(todo, spec.segments.speech_threshold)
        fresh = {
            key: {"intervals": json.dumps([[float(a), float(b)] for a, b in intervals.get(u, [])])}
            for u, key in zip(todo["utterance_id"], todo["segment_key"], strict=True)
            if u in intervals.index and isinstance(key, str)
        }
        cache.put_many(fresh)
        known = {**{k: v["intervals"] for k, v in hits.items()}, **{k: v["intervals"] for k, v in fresh.items()}}
        rejected = set(rejects["input_ref"]) if len(rejects) else set()
        out = items[~items["utterance_id"].isin(rejected)].reset_index(drop=True)
        # VAD misses loud acted speech: items where it hears little get a second opinion (tasks/label/speech_check.py)
        out["speech_intervals"], out["speech_detector"] = speech_presence.decide(
            out, [json.loads(known.get(k, "[]")) for k in out["segment_key"]], cache_dir(spec),
            spec.segments.second_opinion)
        return out, rejects

    items_uri, rejects_uri, reused, rows = run_shard(work_dir(spec), "speech", shard, settings, fn, log=log)
    log("speech detection %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused, "rows": rows}
