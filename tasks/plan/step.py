"""The plan step: splits, balance, PII, plausibility and augmentation recipes over all labelled shards."""

from __future__ import annotations

import pandas as pd

from manifests import uri as fs
from tasks.core import guards
from tasks.core.results import PlanResult, PlanShard, ShardResult
from tasks.core.rows import reject_row, rejects_frame
from tasks.core.shards import (
    read_frame,
    shard_count,
    stable_hash,
    write_frame,
)
from tasks.core.work import (
    Log,
    cache_dir,
    concat_rejects,
    jsonable,
    noop,
    read_all,
    work_dir,
)
from tasks.spec import DatasetSpec


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


def plan_stages(spec: DatasetSpec, shard_results: list[ShardResult], log: Log = noop) -> PlanResult:
    """Resolve duplicates, assign splits, sample the ASR stage and draw a recipe per stage row."""
    from tasks.augment import recipes as augment
    from tasks.plan import balance, splits
    from tasks.plan.stage_rows import recipe_key, variant_rows

    items = read_all([r["items_uri"] for r in shard_results])
    if items.empty:  # every found item was rejected at ingest (no shards): plan with the contract's columns
        from tasks.ingest.corpora.base import utterances_frame

        items = utterances_frame([]).assign(speech_intervals=pd.Series(dtype=object))
    rejects = [read_frame(u) for r in shard_results for u in r["rejects_uris"]]
    dedup = splits.resolve_duplicate_segments(items)
    items = dedup.items
    rejects.append(dedup.rejects)
    items, missing = _require_labels(items, spec)
    rejects.append(missing)
    items = splits.assign_splits(items, spec.splits, spec.seed)
    from tasks.plan.split_report import split_shares

    shares_report, plan_guards = split_shares(items, spec)  # guards fired while planning append here
    # PII before ASR sampling: flagged rows stay out of the ASR stage (asr_policy exclude), not masked.
    from tasks.plan import pii
    pii_cache = pii.comprehend_cache(cache_dir(spec), spec.pii) if spec.pii.detect == "aws_comprehend" else None
    items, pii_report = pii.flag_items(items, spec.pii, region=spec.aws.region, log=log, cache=pii_cache)
    pii_out = pii.asr_excluded(items, spec.pii)
    from tasks.label.transcripts import hallucination
    from tasks.plan import plausibility

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

    # Babble (default pool) needs the planned train items: built here, once, and saved with the plan.
    from tasks.augment import noise_pool
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
    write_frame(rejects_uri, concat_rejects(rejects))
    pools_uri = fs.join(plan_dir, noise_pool.PLAN_POOLS)  # augment and publish use exactly these pools
    fs.write_bytes(pools_uri, pools.to_json().encode())
    shards = write_plan_shards(plan_dir, items, rows, concat_rejects(rejects), spec.run.shard_size)
    return {
        "plan_dir": plan_dir,
        "utterances_uri": utter_uri,
        "rejects_uri": rejects_uri,
        "shards": shards,
        "row_shard_uris": [s["rows_uri"] for s in shards],
        "balance_report": jsonable(balance_report),
        "eligibility": jsonable({"asr": balance_report.get("eligibility"), "classifier": clf_eligibility,
                                  "rules": spec.eligibility.model_dump(mode="json", exclude_none=True)}),
        "pools": {"train_rirs": len(pools.train_rirs), "eval_rirs": len(pools.eval_rirs),
                  "train_noises": len(pools.train_noises), "eval_noises": len(pools.eval_noises), **pool_facts},
        "pools_uri": pools_uri,
        "pii": jsonable(pii_report),
        # guards fired by the per-shard stages travel on through the plan to publish
        "split_shares": shares_report,
        "plausibility": plausibility_report,
        "hallucination": hallucination_report,
        "guards": guards.collect(shard_results, {"guards": plan_guards}, {"guards": pool_guards}),
    }


def write_plan_shards(plan_dir: str, items: pd.DataFrame, rows: pd.DataFrame, rejects: pd.DataFrame,
                      shard_size: int) -> list[PlanShard]:
    """Per-shard utterances, stage rows and rejects files (DESIGN-16 section 2), in shard order.

    An adapter until planning itself runs per shard: utterances and their rows share one modulus
    (`shard_count` of the planned utterances), so a row lies in its utterance's shard; a reject goes
    by its `input_ref` (an utterance id for labelling and plan rejects). Shards that hold nothing are
    skipped; with nothing at all there is one empty shard 0 (one empty part per manifest).
    """
    n = shard_count(len(items), shard_size)

    def group(df: pd.DataFrame, column: str) -> pd.Series:
        return df[column].map(lambda k: int(stable_hash(k)[:12], 16) % n) if len(df) else pd.Series(dtype="int64")

    keyed = [(items, group(items, "utterance_id"), "utterance_id"), (rows, group(rows, "utterance_id"), "row_id"),
             (rejects, group(rejects, "input_ref"), "input_ref")]
    groups = sorted(set().union(*(set(g.tolist()) for _, g, _ in keyed))) or [0]
    shards: list[PlanShard] = []
    for index, g in enumerate(groups):
        files = []
        for (df, of, order), kind in zip(keyed, ("utterances", "rows", "rejects"), strict=True):
            part = df[of == g] if len(df) else df
            uri = fs.join(plan_dir, f"{kind}-{index:05d}.parquet")
            write_frame(uri, part.sort_values(order, kind="mergesort") if len(part) else part)
            files.append(uri)
        shards.append({"index": index, "utterances_uri": files[0], "rows_uri": files[1], "rejects_uri": files[2]})
    return shards
