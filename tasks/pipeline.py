"""The pipeline's steps as plain functions over shard URIs; `flows/build_dataset.py` wraps them.

Each function reads its inputs from the run's work folder, calls the pure stage functions, and
writes its outputs back, returning small dicts of URIs and counts (what Prefect passes around).
Work files are keyed by content and settings (`tasks.shards.run_shard`), so re-running a finished
step is a lookup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import (
    ASR_STAGE,
    CLASSIFIER_STAGE,
    MANIFEST_NAMES,
    REJECTS,
    UTTERANCES,
    UTTERANCES_SCHEMA,
)
from tasks import guards, output_lock, releases, source_guards
from tasks.common import reject_row, rejects_frame
from tasks.releases import previous_utterances, release_changes
from tasks.security import redact, redact_obj
from tasks.shards import (
    frame_digest,
    read_frame,
    reusable_frame,
    run_shard,
    split_into_shards,
    stable_hash,
    write_frame,
)
from tasks.spec import DatasetSpec

Log = Callable[..., None]


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _read_all(uris: list[str]) -> pd.DataFrame:
    frames = [read_frame(u) for u in uris]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _concat_rejects(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """All reject rows of several stages; the contract's empty table when there are none."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else rejects_frame()


def work_dir(spec: DatasetSpec) -> str:
    return fs.join(spec.output, "work")


def cache_dir(spec: DatasetSpec) -> str:
    return fs.join(spec.output, "cache")


def code_version() -> str:
    try:
        return importlib_metadata.version("voicetone-data")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- ingest


def ingest_source(spec: DatasetSpec, index: int, log: Log = _noop, warn: Log | None = None) -> dict[str, Any]:
    """Enumerate one source; every found item ends in items or rejects.

    The adapter's notes about the source (e.g. metadata columns it does not read) go to `warn`
    (default `log`), one message per note, and to the card through the returned `notes`.
    """
    from tasks.corpora.registry import get_adapter

    source = spec.sources[index]
    adapter = get_adapter(source.kind)
    result = adapter(source, source.language or spec.language)
    from tasks.splits import apply_source_policy

    items = apply_source_policy(result.items.copy(), source, spec.splits, spec.seed)  # split: / split_policy:
    from tasks.transcripts import language  # every row leaves ingest with a language (declared or detected)

    items, lang_rejects, lang_guards = language.identify(items, spec.labelers.language_id, spec.labelers.whisper,
                                                         cache_dir(spec))
    result.rejects = _concat_rejects([result.rejects, lang_rejects])
    for col in UTTERANCES_SCHEMA.names:
        if col not in items.columns:
            items[col] = None
    base = fs.join(work_dir(spec), "ingest", f"{source.name}-{stable_hash(source.model_dump_json())[:12]}")
    write_frame(base + ".rejects.parquet", result.rejects)
    write_frame(base + ".items.parquet", items)
    log("ingest %s (%s): found %d, accepted %d, rejected %d", source.name, source.kind, result.found,
        len(items), len(result.rejects))
    for note in result.notes:
        (warn or log)("ingest %s (%s): %s", source.name, source.kind, note)
    return {
        "source": source.name,
        "items_uri": base + ".items.parquet",
        "rejects_uri": base + ".rejects.parquet",
        "found": int(result.found),
        "notes": list(result.notes),
        "guards": lang_guards,
    }


def make_shards(spec: DatasetSpec, ingest_results: list[dict[str, Any]], log: Log = _noop) -> list[str]:
    """Partition all ingested items into shards by a hash of utterance_id.

    A shard file is named by its whole content (every column of every row: labels, speaker, licence,
    not only the audio), so an edited metadata row or spec field gives a new shard and every later
    stage redoes it; an unchanged shard is found again and reused.
    """
    items = _read_all([r["items_uri"] for r in ingest_results])
    shards = split_into_shards(items, spec.run.shard_size)
    uris = []
    for shard in shards:
        uri = fs.join(work_dir(spec), "shards", f"{frame_digest(shard)}.parquet")
        if not reusable_frame(uri, log):  # an unreadable (0-byte, truncated) shard file is rewritten
            write_frame(uri, shard)
        uris.append(uri)
    log("sharded %d utterances into %d shard(s) of at most ~%d", len(items), len(uris), spec.run.shard_size)
    return uris


# ---------------------------------------------------------------- labels


def _progress_logger(log: Log, what: str, every_s: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback that logs at most every `every_s` seconds, plus the start and the end."""
    import time

    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - last[0] >= every_s:
            last[0] = now
            log("%s: %d/%d item(s) to label", what, done, total)

    return report


def _stage_result(result: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    rejects = result.rejects if result.rejects is not None else rejects_frame()
    return result.items.reset_index(drop=True), rejects.reset_index(drop=True)


def estimate_transcribe_cost(spec: DatasetSpec, shard_uris: list[str], log: Log = _noop) -> dict[str, Any] | None:
    """Amazon Transcribe's cost for the whole run (uncached packs of every shard), logged before any job.

    Raises `TranscribeCostError` above `labelers.aws_transcribe.max_cost_usd`, so a run never starts
    jobs it could not finish under the cap (each shard also checks its own share).
    """
    if spec.labelers.transcripts != "aws_transcribe":
        return None
    from tasks.transcripts import aws_transcribe

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


def plan_transcripts(spec: DatasetSpec, shard_uris: list[str], log: Log = _noop) -> str | None:
    """Whisper's packing plan over all shards (tasks/transcripts/packing.py), so shard_size cannot
    change pseudo-transcripts; None when Whisper is not the labeler."""
    from tasks.transcripts import packing

    if spec.labelers.transcripts != "whisper":
        return None
    uri = packing.write_plan(_read_all(shard_uris), spec.labelers.whisper, spec.labelers.quality_sample_per_source,
                             spec.seed, fs.join(work_dir(spec), "packing"))
    log("transcripts: packing plan %s", uri.rsplit("/", 1)[-1])
    return uri


def transcripts_shard(spec: DatasetSpec, shard_uri: str, log: Log = _noop, position: str = "",
                      plan_uri: str | None = None) -> dict[str, Any]:
    """Normalise human transcripts and fill missing ones with the configured ASR labeler.

    `plan_uri` (from `plan_transcripts`) fixes Whisper's packing groups and the quality sample over
    the whole build; without it both are taken within this shard.
    """
    from tasks.transcripts import packing, quality, whisper
    from tasks.transcripts.normalize import normalize_transcript

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
        from tasks.transcripts import aws_transcribe

        aws = spec.labelers.aws_transcribe
        return aws_transcribe.fill_missing_transcripts(
            frame, aws, aws_transcribe.make_cache(cache_dir(spec), aws), progress, staging_uri=spec.aws.staging_uri,
            region=spec.aws.region, whisper_settings=spec.labelers.whisper, whisper_cache=whisper_cache, log=log)

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if labeler in ("whisper", "aws_transcribe"):
            kept, rejects = _stage_result(fill(items, _progress_logger(log, f"transcripts {position}")))
            from tasks.transcripts import hallucination

            kept, invented = hallucination.screen(kept, spec.labelers.whisper.hallucination)
            rejects = _concat_rejects([rejects, invented])
            kept = quality.add_hypotheses(kept, items, spec.labelers.quality_sample_per_source, spec.seed,
                                          fill, labeler, sample=sample)
            return kept, rejects
        out = items.copy()
        out["transcript"] = [
            None if pd.isna(t) else normalize_transcript(t, language=lang if isinstance(lang, str) else "en")
            for t, lang in zip(out["transcript_raw"], out["language"], strict=True)
        ]
        return out, rejects_frame()

    items_uri, rejects_uri, reused = run_shard(work_dir(spec), "transcripts", shard, settings, fn, log=log)
    log("transcripts %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused}


def _uses_text_classifier(spec: DatasetSpec) -> bool:
    lab = spec.labelers
    return lab.sentiment == "text_classifier" or (
        lab.sentiment == "aws_comprehend" and lab.aws_comprehend.unsupported_language == "text_classifier"
    )


def train_text_classifier(spec: DatasetSpec, shard_uris: list[str], log: Log = _noop) -> str | None:
    """Train the in-run text classifier ONCE, on the train split's human-labelled unscripted transcripts.

    Returns the model URI (`<output>/work/models/<training hash>.joblib`: a re-run with the same data
    loads it), or None when kind is not `trained` or, with `on_insufficient_data: vader`, when there
    is too little data (shards then label with VADER; logged). Otherwise too little data stops the run.
    """
    from tasks.sentiment import trained

    tc = spec.labelers.text_classifier
    if tc.kind != "trained" or not _uses_text_classifier(spec):
        return None
    rows = trained.training_rows(_read_all(shard_uris), spec)
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


def estimate_sentiment_cost(spec: DatasetSpec, shard_uris: list[str], log: Log = _noop) -> dict[str, Any] | None:
    """Amazon Comprehend's cost for the run (uncached documents, units, USD), logged before any call.

    Raises `comprehend.CostCapExceeded` above `labelers.aws_comprehend.max_cost_usd`.
    """
    if spec.labelers.sentiment != "aws_comprehend":
        return None
    from tasks.sentiment import comprehend

    cs = spec.labelers.aws_comprehend
    docs = [d for u in shard_uris for d in
            comprehend.plan_documents(read_frame(u), cs, cs.unsupported_language == "text_classifier").docs.values()]
    todo, cached = comprehend.pending_documents(docs, comprehend.make_cache(cache_dir(spec), cs))
    estimate = comprehend.estimate_cost(todo, cs)
    log("Amazon Comprehend for this run: %s to send, %d distinct document(s) cached", estimate.describe(), len(cached))
    comprehend.check_cost(estimate, cs)
    return {**estimate.as_dict(), "cached": len(cached)}


def prepare_sentiment(spec: DatasetSpec, shard_uris: list[str], log: Log = _noop) -> dict[str, Any]:
    """Run-level steps before the sentiment shards: train the classifier, estimate and cap the cost."""
    return {"model_uri": train_text_classifier(spec, shard_uris, log),
            "comprehend_cost": estimate_sentiment_cost(spec, shard_uris, log)}


def sentiment_shard(spec: DatasetSpec, shard_uri: str, log: Log = _noop, position: str = "",
                    model_uri: str | None = None) -> dict[str, Any]:
    """Fill missing sentiment with the configured text labeler (`model_uri`: the trained classifier)."""
    from tasks.sentiment import text_classifier

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
            return _stage_result(offline(items))
        if labeler == "aws_comprehend":
            from tasks.sentiment import comprehend

            cs = spec.labelers.aws_comprehend
            return _stage_result(comprehend.fill_missing_sentiment(
                items, cs, lambda: comprehend.make_client(spec.aws.region),
                comprehend.make_cache(cache_dir(spec), cs), offline=offline, log=log))
        return items, rejects_frame()

    items_uri, rejects_uri, reused = run_shard(work_dir(spec), "sentiment", shard, settings, fn, log=log)
    log("sentiment %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused}


def speech_shard(spec: DatasetSpec, shard_uri: str, log: Log = _noop, position: str = "") -> dict[str, Any]:
    """Run VAD on every utterance (this also decodes every file, catching audio a header hid)."""
    from tasks import segments, speech_check, speech_presence

    shard = read_frame(shard_uri)
    settings = {"vad_threshold": spec.segments.speech_threshold,
                "second_opinion": speech_check.VERSION if spec.segments.second_opinion else None}

    def fn(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        # VAD results are cached by segment key like labels, so a refresh never re-decodes audio it has seen.
        from tasks.label_cache import LabelCache

        # The process-wide instance: a new one per shard re-read every segment per shard (O(shards x cache)).
        cache = LabelCache.shared(cache_dir(spec), "silero-vad",
                                  {"threshold": spec.segments.speech_threshold, "v": 1})
        keys = [k for k in items["segment_key"] if isinstance(k, str)]
        hits = cache.get_many(keys)
        todo = items[~items["segment_key"].isin(hits.keys())]
        intervals, rejects = segments.detect_speech(todo, spec.segments.speech_threshold)
        fresh = {
            key: {"intervals": json.dumps([[float(a), float(b)] for a, b in intervals.get(u, [])])}
            for u, key in zip(todo["utterance_id"], todo["segment_key"], strict=True)
            if u in intervals.index and isinstance(key, str)
        }
        cache.put_many(fresh)
        known = {**{k: v["intervals"] for k, v in hits.items()}, **{k: v["intervals"] for k, v in fresh.items()}}
        rejected = set(rejects["input_ref"]) if len(rejects) else set()
        out = items[~items["utterance_id"].isin(rejected)].reset_index(drop=True)
        # VAD misses loud acted speech: items where it hears little get a second opinion (tasks/speech_check.py)
        out["speech_intervals"], out["speech_detector"] = speech_presence.decide(
            out, [json.loads(known.get(k, "[]")) for k in out["segment_key"]], cache_dir(spec),
            spec.segments.second_opinion)
        return out, rejects

    items_uri, rejects_uri, reused = run_shard(work_dir(spec), "speech", shard, settings, fn, log=log)
    log("speech detection %s: shard %s %s", position, items_uri.rsplit("/", 1)[-1], "reused" if reused else "done")
    return {"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": reused}


# ---------------------------------------------------------------- plan: splits, balance, recipes


def _require_labels(items: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items that cannot enter either stage (no sentiment, or no transcript) become rejects."""
    rows = []
    need_transcript = spec.labelers.transcripts != "none"
    keep = []
    for rec in items.itertuples(index=False):
        if pd.isna(rec.sentiment):
            rows.append(reject_row(rec.source, rec.utterance_id, "plan", "missing_label",
                                   f"{rec.utterance_id}: no sentiment after labelling (labelers.sentiment="
                                   f"{spec.labelers.sentiment}); give it a human label or enable a labeler"))
            keep.append(False)
        elif need_transcript and (pd.isna(rec.transcript) or not str(rec.transcript).strip()):
            rows.append(reject_row(rec.source, rec.utterance_id, "plan", "missing_label",
                                   f"{rec.utterance_id}: no transcript after labelling"))
            keep.append(False)
        else:
            keep.append(True)
    mask = pd.Series(keep, index=items.index, dtype=bool)  # a bare [] would select no columns, not no rows
    return items[mask].reset_index(drop=True), rejects_frame(rows)


def plan_stages(spec: DatasetSpec, shard_results: list[dict[str, Any]], log: Log = _noop) -> dict[str, Any]:
    """Resolve duplicates, assign splits, sample the ASR stage and draw a recipe per stage row."""
    from tasks import augment, balance, splits
    from tasks.stage_rows import recipe_key, variant_rows

    items = _read_all([r["items_uri"] for r in shard_results])
    if items.empty:  # every found item was rejected at ingest (no shards): plan with the contract's columns
        from tasks.corpora.base import utterances_frame

        items = utterances_frame([]).assign(speech_intervals=pd.Series(dtype=object))
    rejects = [read_frame(u) for r in shard_results for u in r["rejects_uris"]]
    dedup = splits.resolve_duplicate_segments(items)
    items = dedup.items
    rejects.append(dedup.rejects)
    items, missing = _require_labels(items, spec)
    rejects.append(missing)
    items = splits.assign_splits(items, spec.splits, spec.seed)
    from tasks.split_report import split_shares

    shares_report, plan_guards = split_shares(items, spec)  # guards fired while planning append here
    # PII before ASR sampling: flagged rows stay out of the ASR stage (asr_policy exclude), not masked.
    from tasks import pii

    pii_cache = pii.comprehend_cache(cache_dir(spec), spec.pii) if spec.pii.detect == "aws_comprehend" else None
    items, pii_report = pii.flag_items(items, spec.pii, region=spec.aws.region, log=log, cache=pii_cache)
    pii_out = pii.asr_excluded(items, spec.pii)
    from tasks import plausibility
    from tasks.transcripts import hallucination

    asr_sane, clf_sane, plausibility_report, fired = plausibility.screen(items, spec)  # duration, speaking rate
    plan_guards += fired
    hallucination_report = None
    if spec.labelers.transcripts == "whisper":  # Transcribe's empty clips are not Whisper's decode gates
        hallucination_report, fired = hallucination.summarize(items, rejects, spec.labelers.whisper.hallucination)
        plan_guards += fired
    asr_variants, balance_report = balance.sample_asr_rows(items[~pii_out & asr_sane], spec.balance, spec.seed,
                                                           eligibility=spec.eligibility)
    clf_ok, clf_eligibility = balance.eligible(items, "classifier", spec.eligibility)
    clf_ok &= clf_sane
    if "pii_detected" in items.columns:
        pii_report.update(asr_excluded=int(pii_out.sum()),
                          classifier_flagged=int((clf_ok & items["pii_detected"]).sum()))
    log("splits: %s", items.groupby("split").size().to_dict())
    log("ASR stage: %d rows from %d utterances", len(asr_variants), items["utterance_id"].nunique())

    from tasks import noise_pool

    # Babble (default pool) needs the planned train items: built here, once, and saved with the plan.
    pools, pool_facts, pool_guards, speaker_of = noise_pool.planned_pools(
        spec, items, fs.join(work_dir(spec), "augment"), log)
    clf_variants = augment.classifier_variants(items[clf_ok], spec.augment)  # copies_per_utterance
    variants = (
        pd.concat([asr_variants[["utterance_id", "variant"]], clf_variants], ignore_index=True)
        .drop_duplicates()
        .sort_values(["utterance_id", "variant"])
        .reset_index(drop=True)
    )
    duration = items.set_index("utterance_id")["duration_s"]
    split_of = items.set_index("utterance_id")["split"]
    recipes = {}
    heard: dict[str, set[str]] = {}  # audio-deciding recipe fields already used per utterance
    for utt, var in zip(variants["utterance_id"], variants["variant"], strict=True):
        rid = recipe_key(utt, var)
        recipe = augment.draw_recipe(spec.seed, rid, split_of[utt], spec.augment, pools, float(duration[utt]),
                                     speaker_of.get(utt))
        # An oversampled repeat must not be byte-identical to an earlier variant: redraw (deterministically)
        # a few times; if the policy cannot vary the audio, the validator names the rows.
        for attempt in range(1, 17):
            if balance.recipe_signature(recipe) not in heard.get(utt, set()):
                break
            recipe = augment.draw_recipe(spec.seed, f"{rid}~{attempt}", split_of[utt], spec.augment, pools,
                                         float(duration[utt]), speaker_of.get(utt))
        heard.setdefault(utt, set()).add(balance.recipe_signature(recipe))
        recipes[rid] = recipe
    rows = variant_rows(items.drop(columns=["speech_intervals"], errors="ignore"), variants, recipes)
    rows["in_asr"] = rows["row_id"].isin({recipe_key(u, v) for u, v in
                                          zip(asr_variants["utterance_id"], asr_variants["variant"], strict=True)})
    clf_keys = {recipe_key(u, v) for u, v in zip(clf_variants["utterance_id"], clf_variants["variant"], strict=True)}
    rows["in_classifier"] = rows["row_id"].isin(clf_keys)

    plan_dir = fs.join(work_dir(spec), "plan", stable_hash(*sorted(r["items_uri"] for r in shard_results),
                                                          spec.model_dump_json())[:16])
    utter_uri = fs.join(plan_dir, "utterances.parquet")
    write_frame(utter_uri, items)
    rejects_uri = fs.join(plan_dir, "rejects.parquet")
    write_frame(rejects_uri, _concat_rejects(rejects))
    pools_uri = fs.join(plan_dir, noise_pool.PLAN_POOLS)  # augment and publish use exactly these pools
    fs.write_bytes(pools_uri, pools.to_json().encode())
    row_shards = split_into_shards(rows, spec.run.shard_size)
    row_uris = []
    for i, shard in enumerate(row_shards):
        uri = fs.join(plan_dir, f"rows-{i:04d}.parquet")
        write_frame(uri, shard)
        row_uris.append(uri)
    return {
        "plan_dir": plan_dir,
        "utterances_uri": utter_uri,
        "rejects_uri": rejects_uri,
        "row_shard_uris": row_uris,
        "balance_report": _jsonable(balance_report),
        "eligibility": _jsonable({"asr": balance_report.get("eligibility"), "classifier": clf_eligibility,
                                  "rules": spec.eligibility.model_dump(mode="json", exclude_none=True)}),
        "pools": {"train_rirs": len(pools.train_rirs), "eval_rirs": len(pools.eval_rirs),
                  "train_noises": len(pools.train_noises), "eval_noises": len(pools.eval_noises), **pool_facts},
        "pools_uri": pools_uri,
        "pii": _jsonable(pii_report),
        # guards fired by the per-shard stages travel on through the plan to publish
        "split_shares": shares_report,
        "plausibility": plausibility_report,
        "hallucination": hallucination_report,
        "guards": guards.collect(shard_results, {"guards": plan_guards}, {"guards": pool_guards}),
    }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


# ---------------------------------------------------------------- augment


def augment_shard(spec: DatasetSpec, rows_uri: str, log: Log = _noop, position: str = "") -> dict[str, Any]:
    """Materialise the augmented utterances of one shard of stage rows as FLAC (when configured)."""
    from tasks import augment, noise_pool

    rows = read_frame(rows_uri)
    if not (spec.augment.enabled and spec.augment.materialize):
        return {"rows_uri": rows_uri, "materialized": 0}
    pools = noise_pool.load_pools(spec, fs.join(rows_uri.rsplit("/", 1)[0], noise_pool.PLAN_POOLS),
                                  fs.join(work_dir(spec), "augment"))  # the plan's, saved beside its row shards
    identity = (rows["speed"].sub(1.0).abs() < 1e-9) & rows["rir_id"].isna() & rows["noise_id"].isna()
    todo = rows[~identity]
    out_uri = rows_uri.replace(".parquet", ".augmented.parquet")
    if len(todo):
        done, failures = augment.materialize(todo, pools, fs.join(work_dir(spec), "audio"), log=log)
        if len(failures):
            details = "; ".join(f"{r.row_id}: {r.detail}" for r in failures.head(5).itertuples())
            raise RuntimeError(f"augmentation failed for {len(failures)} row(s) that decoded earlier: {details}")
        rows = pd.concat([rows[identity], done], ignore_index=True)
    write_frame(out_uri, rows)
    log("augment %s: %d utterance variant(s) materialised", position, len(todo))
    return {"rows_uri": out_uri, "materialized": int(len(todo))}


# ---------------------------------------------------------------- publish


def _link_into_release(uri: str, release_audio: str, subdir: str = "") -> str:
    """Hard-link (or copy) a materialised file from the work store into the release folder.

    Returns the manifest's URI for it: relative to the release root (`audio/[<subdir>/]<name>`), so
    the release is relocatable as a folder (docs/manifest-contract.md, "Audio URIs").
    """
    from manifests.locations import relative_audio_path

    name = uri.rsplit("/", 1)[-1]
    if subdir:
        release_audio, name = fs.join(release_audio, subdir), f"{subdir}/{name}"
    target = fs.join(release_audio, name.rsplit("/", 1)[-1])
    if fs.is_s3(uri) or fs.is_s3(target):
        from tasks import storage

        storage.copy_file(uri, target)
        return relative_audio_path(name)
    os.makedirs(release_audio, exist_ok=True)
    if not os.path.exists(target):
        try:
            os.link(uri, target)
        except OSError:
            shutil.copy2(uri, target)
    return relative_audio_path(name)


def _empty_stage_rows(utterances: pd.DataFrame) -> pd.DataFrame:
    """Stage rows with their columns and no row: both stages get empty manifests of the right shape."""
    from tasks.stage_rows import variant_rows

    variants = pd.DataFrame({"utterance_id": pd.Series(dtype=object), "variant": pd.Series(dtype="int64")})
    rows = variant_rows(utterances.iloc[0:0], variants, {})
    rows["in_asr"] = pd.Series(dtype=bool)
    rows["in_classifier"] = pd.Series(dtype=bool)
    return rows


def release_name(spec: DatasetSpec) -> str:
    """A sortable UTC timestamp; a suffix keeps two builds in the same second apart."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    existing = set(fs.list_prefix(fs.join(spec.output, mio.RELEASES_DIR)))
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def publish(spec: DatasetSpec, plan: dict[str, Any], augmented: list[dict[str, Any]],
            ingest: list[dict[str, Any]], timings: dict[str, float], log: Log = _noop,
            warn: Log | None = None) -> dict[str, Any]:
    """Window, weight and write the release; move LATEST only after it validates."""
    from manifests.release import write_pool_index
    from manifests.validate import validate_release
    from tasks import noise_pool, report, report_html, segments, weights
    from tasks.stage_rows import asr_stage_rows, classifier_input_rows, finish_classifier_rows

    utterances = read_frame(plan["utterances_uri"])
    rows = _read_all([a["rows_uri"] for a in augmented])
    if rows.empty:  # no utterance reached either stage: no row shards, so no columns either
        rows = _empty_stage_rows(utterances)
    rejects = _concat_rejects([*(read_frame(r["rejects_uri"]) for r in ingest), read_frame(plan["rejects_uri"])])
    found = {r["source"]: r["found"] for r in ingest}
    publish_guards: list[dict[str, Any]] = []  # guards that fire while publishing append here
    publish_guards.extend(source_guards.check_release(spec, found, utterances, rejects))  # before any write

    release = release_name(spec)
    paths = mio.release_paths(spec.output, release)
    publish_guards.extend(releases.incomplete_release_guards(spec.output, current=release))  # removed when pruning
    if len(rows) and rows["recipe_applied"].any():
        applied = rows["recipe_applied"].astype(bool)
        rows.loc[applied, "audio_uri"] = [_link_into_release(u, paths.audio) for u in rows.loc[applied, "audio_uri"]]

    asr = asr_stage_rows(rows[rows["in_asr"]].drop(columns=["in_asr", "in_classifier"]))
    speech = utterances.set_index("utterance_id")["speech_intervals"] if len(utterances) else pd.Series(dtype=object)
    clf_in = classifier_input_rows(rows[rows["in_classifier"]].drop(columns=["in_asr", "in_classifier"]), speech)
    windows = segments.classifier_windows(clf_in, spec.segments)
    pools, noise_index = noise_pool.release_pools(
        noise_pool.load_pools(spec, plan.get("pools_uri"), fs.join(work_dir(spec), "augment")), paths.root,
        paths.audio, _link_into_release)
    noise = _noise_windows(spec, pools)
    if len(noise):  # generated noise lies inside the release: its bytes enter the identity like other audio
        noise["audio_sha256"] = _release_audio_hashes(noise["audio_uri"], paths.root)
    if len(noise) and len(windows):  # non-speech examples complement utterances; none without any
        windows = pd.concat([windows, noise], ignore_index=True)
    class_weights, weight_report = weights.inverse_frequency_weights(windows, spec.weights)
    classifier = finish_classifier_rows(windows, class_weights)
    utterances = utterances.drop(columns=["speech_intervals"], errors="ignore")

    tables = {UTTERANCES: utterances, ASR_STAGE: asr, CLASSIFIER_STAGE: classifier, REJECTS: rejects}
    config = {"spec": json.loads(spec.model_dump_json()), "weights": _jsonable(weight_report)}
    for name in MANIFEST_NAMES:
        mio.write_manifest(tables[name], name, paths.manifest(name), metadata={"config": config})
    written = {name: mio.read_manifest(paths.manifest(name)) for name in MANIFEST_NAMES}
    write_pool_index(paths.root, pools.rirs, noise_index)  # lets a reader apply recipes lazily without tasks/
    digest = mio.content_sha256(written, release_root=paths.root)
    same = releases.unchanged_release(spec.output, digest)
    if same is not None:  # nothing changed: a copy would only push real releases out of keep_releases
        fired = guards.collect(ingest, plan, augmented, {"guards": publish_guards})
        guards.log_guards(fired, warn=warn or log, info=log)
        return releases.publish_nothing(spec.output, spec.run.keep_releases, paths.root, same, digest, written,
                                        found, fired, log, warn or log)

    extra = _card_extra(spec, plan, weight_report, timings)
    from tasks import speech_presence

    publish_guards += speech_presence.label_guards(written[UTTERANCES], written[CLASSIFIER_STAGE])
    from tasks.transcripts.language import card_section

    extra["languages"] = card_section(written[UTTERANCES])
    extra["speech_detection"] = speech_presence.speech_section(written[UTTERANCES], written[CLASSIFIER_STAGE])
    extra["guards"] = guards.collect(ingest, plan, augmented, {"guards": publish_guards})
    extra["source_notes"] = {r["source"]: list(r.get("notes") or []) for r in ingest if r.get("notes")}
    prev_utts, prev_name = previous_utterances(spec.output)
    extra["changes"] = release_changes(prev_utts, written[UTTERANCES], prev_name)
    from tasks.sentiment.agreement import agreement_report
    from tasks.transcripts.quality import transcript_quality

    extra["sentiment_agreement"] = agreement_report(written[UTTERANCES], spec,
                                                    (plan.get("sentiment") or {}).get("model_uri"))
    extra["transcript_quality"] = transcript_quality(written[UTTERANCES], n=spec.labelers.quality_sample_per_source,
                                                     seed=spec.seed)
    card = report.build_card(spec=spec, release=release, utterances=written[UTTERANCES], asr=written[ASR_STAGE],
                             classifier=written[CLASSIFIER_STAGE], rejects=written[REJECTS], found=found,
                             extra=extra)
    card["schema_version"] = "1"
    card["content_sha256"] = digest
    card = redact_obj(card)  # reject examples, lineage and spec text: no credentials in the card
    plot_files = _make_plots(report, card, written, paths)
    fs.write_bytes(paths.card_json, json.dumps(card, indent=2, sort_keys=True, allow_nan=False).encode())
    html_name = report_html.REPORT_FILE if spec.report.html else None
    fs.write_bytes(paths.card_md, redact(report.render_markdown(card, plot_files, report_html=html_name)).encode())

    guards.log_guards(card.get("guards") or [], warn=warn or log, info=log)  # with the card's derived ones
    result = validate_release(paths.root)
    if not result.ok:
        marker = releases.mark_invalid(paths, result.problems)  # kept to inspect; never counts; next publish removes it
        problems = "\n  - ".join(result.problems)
        raise RuntimeError(f"release {paths.root} failed validation (LATEST not moved; marked by {marker}, removed "
                           f"by the next publish):\n  - {problems}")
    if spec.report.html:  # report.html + report_audio/ clips; see docs/report.md
        log("report: %s", report_html.write_report(paths.root, samples_per_group=spec.report.samples_per_group))
    output_lock.ensure_held(spec.output)  # another build took the output over: do not move LATEST
    mio.point_latest(spec.output, release)
    releases.prune_and_log(spec.output, spec.run.keep_releases, release, log, warn or log)
    log("published %s: %d utterances, %d ASR rows, %d classifier windows, %d rejects", release,
        len(written[UTTERANCES]), len(written[ASR_STAGE]), len(written[CLASSIFIER_STAGE]), len(written[REJECTS]))
    return {
        "release": release,
        "release_uri": paths.root,
        "content_sha256": digest,
        "counts": {name: len(df) for name, df in written.items()},
        "found": found,
        "changes": extra["changes"],
        "guards": card.get("guards") or [],
        "published": True,
    }


def _make_plots(report: Any, card: dict, written: dict[str, pd.DataFrame], paths: mio.ReleasePaths) -> list[str]:
    """Draw the card's plots locally; for an S3 release draw into a temp folder and upload."""
    if not fs.is_s3(paths.root):
        return report.make_plots(card, written[UTTERANCES], written[ASR_STAGE], paths.plots,
                                 classifier=written[CLASSIFIER_STAGE])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        local = report.make_plots(card, written[UTTERANCES], written[ASR_STAGE], tmp,
                                  classifier=written[CLASSIFIER_STAGE])
        uploaded = []
        for path in local:
            target = fs.join(paths.plots, Path(path).name)
            fs.write_bytes(target, Path(path).read_bytes())
            uploaded.append(target)
    return uploaded


def _release_audio_hashes(uris: pd.Series, root: str) -> list[str | None]:
    """sha256 of each release-internal (relative) audio file, hashed once per file; None outside it."""
    from manifests.locations import is_relative, resolve
    from tasks.audio import sha256_uri

    known: dict[str, str] = {}
    for uri in sorted({u for u in uris if isinstance(u, str) and is_relative(u)}):
        known[uri] = sha256_uri(resolve(root, uri))
    return [known.get(u) for u in uris]


def _noise_windows(spec: DatasetSpec, pools: Any) -> pd.DataFrame:
    """Non-speech windows from the noise pools, so the classifier learns speech presence.

    Durations come from the pools (probed once per file list and cached), not from new probes:
    probing an S3 noise file downloads it. Babble is speech, so it gives no non-speech window.
    """
    from tasks import segments
    from tasks.noise_pool import NON_SPEECH_KINDS, RECORDED, kind_of

    usable = {i for i in pools.noises if kind_of(i) in NON_SPEECH_KINDS or kind_of(i) == RECORDED}
    files = [(i, pools.noises[i], pools.noise_durations[i], "train") for i in sorted(pools.train_noises) if i in usable]
    for noise_id in sorted(i for i in pools.eval_noises if i in usable):
        split = "dev" if int(stable_hash(spec.seed, noise_id)[:8], 16) % 2 == 0 else "test"
        files.append((noise_id, pools.noises[noise_id], pools.noise_durations[noise_id], split))
    return segments.noise_windows(files, spec.segments) if files else pd.DataFrame()


def _card_extra(spec: DatasetSpec, plan: dict[str, Any], weight_report: dict, timings: dict[str, float]) -> dict:
    from manifests.specaugment import SPECAUGMENT_POLICY
    from tasks.transcripts.normalize import NORMALIZER_NAME, NORMALIZER_VERSION

    spec_json = spec.model_dump_json()
    return {
        "balance": plan.get("balance_report"),
        "split_shares": plan.get("split_shares"),
        "plausibility": plan.get("plausibility"),
        "hallucination": plan.get("hallucination"),
        "pii": plan.get("pii"),
        "eligibility": plan.get("eligibility"),
        "weights": _jsonable(weight_report),
        "labelers": {
            "transcripts": spec.labelers.transcripts,
            "whisper": spec.labelers.whisper.model_dump() if spec.labelers.transcripts == "whisper" else None,
            "sentiment": spec.labelers.sentiment,
            "text_classifier": spec.labelers.text_classifier.model_dump()
            if spec.labelers.sentiment == "text_classifier" else None,
            "normalizer": {"name": NORMALIZER_NAME, "version": NORMALIZER_VERSION},
        },
        "augment": {"policy": spec.augment.model_dump(mode="json"), "pools": plan.get("pools"),
                    "specaugment": _jsonable(SPECAUGMENT_POLICY)},
        "segments": {
            **spec.segments.model_dump(),
            "last_window_rule": "windows of window_s every hop_s; an utterance shorter than a window is one "
            "window from 0 padded (valid_s = its length); otherwise a remainder of at least "
            "min_last_window_s after the last full window adds one full window aligned to the end",
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "lineage": {
            "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
            "code_version": code_version(),
            "plan": plan.get("plan_dir"),
            "worker_pids": plan.get("worker_pids"),
        },
    }
