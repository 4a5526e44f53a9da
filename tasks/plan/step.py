"""The plan step: splits, balance, PII, plausibility and recipes per shard, joined by small reductions.

`plan_stages` groups the labelling shards into plan shards (`shard_step.plan_inputs`: ~`run.part_rows`
planned items each) and runs the per-plan-shard and per-partition steps of `tasks.plan.shard_step` through a
`mapper` (the flow's maps them as Prefect tasks on the task runner; the default runs them here, one
after another) and reduces their small results in between: duplicate losers, counts for the balance
quotas, rank thresholds, the babble sample and the card's sections. docs/scaling.md describes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from manifests import uri as fs
from tasks.core import guards
from tasks.core.results import PlanResult, ShardResult
from tasks.core.rows import reject_row, rejects_frame
from tasks.core.shards import (
    read_frame,
    stable_hash,
    write_frame,
)
from tasks.core.work import (
    Log,
    jsonable,
    noop,
    work_dir,
)
from tasks.spec import DatasetSpec


def _require_labels(items: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items that cannot enter either stage (no sentiment, or no transcript) become rejects.

    Masks over whole columns: only the rejected rows are visited one by one (to word their rejects).
    """
    need_transcript = spec.labelers.transcripts != "none"
    no_sentiment = items["sentiment"].isna().to_numpy(dtype=bool)
    no_transcript = np.zeros(len(items), dtype=bool)
    if need_transcript and len(items):
        no_transcript = np.array([pd.isna(t) or not str(t).strip() for t in items["transcript"].tolist()],
                                 dtype=bool)
    rows = []
    sources, uids = items["source"].tolist(), items["utterance_id"].tolist()
    for i in np.flatnonzero(no_sentiment | no_transcript):
        if no_sentiment[i]:
            rows.append(reject_row(sources[i], uids[i], "plan", "missing_label",
                                   f"{uids[i]}: no sentiment after labelling (labelers.sentiment="
                                   f"{spec.labelers.sentiment}); give it a human label or enable a labeler"))
        else:
            rows.append(reject_row(sources[i], uids[i], "plan", "missing_label",
                                   f"{uids[i]}: no transcript after labelling"))
    if not rows:  # the usual case: a row filter would copy every column for nothing
        return items.reset_index(drop=True), rejects_frame(rows)
    keep = pd.Series(~(no_sentiment | no_transcript), index=items.index, dtype=bool)
    return items[keep].reset_index(drop=True), rejects_frame(rows)


Mapper = Callable[[str, list[tuple]], list[Any]]


def run_here(step: str, calls: list[tuple]) -> list[Any]:
    """The default mapper: every call of a `shard_step.STEPS` step in this process, in order."""
    from tasks.plan.shard_step import STEPS

    return [STEPS[step](*args) for args in calls]


def _sum_into(into: dict, more: dict) -> None:
    """Add nested count dicts (ints at the leaves) into `into`."""
    for k, v in more.items():
        if isinstance(v, dict):
            _sum_into(into.setdefault(k, {}), v)
        elif isinstance(v, int | float) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v
        else:
            into.setdefault(k, v)


def _pii_report(partials: list[dict]) -> dict:
    """The PII card section, summed over shards (by_type / by_source sorted like one frame's)."""
    report: dict = {}
    for part in partials:
        _sum_into(report, part["pii"])
    for key in ("by_type", "by_source"):
        if key in report:
            report[key] = dict(sorted(report[key].items()))
    return report


def _eligibility(partials: list[dict], key: str) -> dict:
    merged: dict = {"total": 0, "by_split": {}}
    for part in partials:
        _sum_into(merged, part[key])
    merged["by_split"] = {s: {f: (dict(sorted(v.items())) if isinstance(v, dict) else v) for f, v in e.items()}
                          for s, e in sorted(merged["by_split"].items())}
    return merged


def _histograms(hist_dir: str, n_shards: int, keys: set[str]) -> dict[str, np.ndarray]:
    """Merged rank histograms of the groups that need a threshold (one small file per shard)."""
    from tasks.plan import quota
    from tasks.plan.shard_step import _file

    out = {k: np.zeros(quota.BINS, dtype=np.int64) for k in keys}
    if not keys:
        return out
    for i in range(n_shards):
        part = read_frame(_file(hist_dir, i))
        part = part[part["key"].isin(keys)]
        for key, rows in part.groupby("key"):
            np.add.at(out[str(key)], rows["bin"].to_numpy(dtype=np.int64), rows["n"].to_numpy(dtype=np.int64))
    return out


def _talkers(talker_dir: str, n_shards: int, seed: int) -> pd.DataFrame:
    """The babble sample merged over shards, trimmed after each shard so it stays small."""
    from tasks.plan.shard_step import _file, trim_talkers

    sample = pd.DataFrame()
    for i in range(n_shards):
        uri = _file(talker_dir, i)
        if not fs.exists(uri):
            continue
        part = read_frame(uri)
        if len(part):
            sample = trim_talkers(pd.concat([sample, part], ignore_index=True) if len(sample) else part, seed)
    return sample if len(sample) else pd.DataFrame({"split": pd.Series(dtype=object),
                                                    "utterance_id": pd.Series(dtype=object)})


def plan_stages(spec: DatasetSpec, shard_results: list[ShardResult], log: Log = noop,
                mapper: Mapper | None = None, n_parts: int | None = None) -> PlanResult:
    """Resolve duplicates, assign splits, sample the ASR stage and draw a recipe per stage row, per plan shard.

    Plan shard j holds the labelled shards j*per .. (j+1)*per-1 (per = `run.part_rows` // a labelled
    shard's mean rows, at least 1) and is part j of the release's manifests. With no shard at all
    (every item rejected at ingest) there is one empty plan shard 0. `n_parts` overrides the shuffle's partition count.
    """
    from tasks.augment import noise_pool
    from tasks.label.transcripts import hallucination
    from tasks.plan import plausibility, quota, shard_step, shuffle
    from tasks.plan.split_report import merge_partials, shares_from_counts

    mapped = mapper or run_here
    clock = {"start": time.perf_counter(), "steps": 0.0}

    def run(step: str, calls: list[tuple]) -> list[Any]:
        """The mapper, timed: each step's wall time in the log, so a slow step at scale is named."""
        t0 = time.perf_counter()
        out = mapped(step, calls)
        spent = time.perf_counter() - t0
        clock["steps"] += spent
        log("plan step %s: %d call(s) in %.1f s", step, len(calls), spent)
        return out

    plan_dir = fs.join(work_dir(spec), "plan", stable_hash(*sorted(r["items_uri"] for r in shard_results),
                                                          spec.model_dump_json())[:16])
    if not shard_results:  # every found item was rejected at ingest: one empty shard with the contract's columns
        from tasks.ingest.corpora.base import utterances_frame

        empty = fs.join(plan_dir, "empty.items.parquet")
        write_frame(empty, utterances_frame([]).assign(speech_intervals=pd.Series(dtype=object)))
        shard_results = [{"items_uri": empty, "rejects_uris": [], "reused": False}]
    inputs = shard_step.plan_inputs(spec, shard_results)
    n = len(inputs)
    parts = n_parts or shuffle.part_count(n)
    where = shard_step.paths(plan_dir, parts)

    run("dedup_keys", [(plan_dir, i, r["items_uris"], parts) for i, r in enumerate(inputs)])
    losers = sum(run("resolve_part", [(plan_dir, p, parts) for p in range(parts)]))
    partials = run("screen_shard", [(spec, plan_dir, i, r, parts) for i, r in enumerate(inputs)])
    groups: dict[str, int] = {}
    for counts in run("count_groups", [(plan_dir, p, parts) for p in range(parts)]):
        _sum_into(groups, counts)

    per_source: dict[str, int] = {}
    for part in partials:
        _sum_into(per_source, part["per_source"])
    shares_report, plan_guards = shares_from_counts(merge_partials([p["split_shares"] for p in partials]),
                                                    groups, spec)
    pii_report = _pii_report(partials)
    plausibility_report, fired = plausibility.screen_finish([p["plausibility"] for p in partials], per_source, spec)
    plan_guards += fired
    hallucination_report = None
    if spec.labelers.transcripts == "whisper":  # Transcribe's empty clips are not Whisper's decode gates
        counts_h: dict = {}
        for part in partials:
            _sum_into(counts_h, part["hallucination"] or {})
        hallucination_report, fired = hallucination.summary_from_counts(counts_h, spec.labelers.whisper.hallucination)
        plan_guards += fired

    # balance: quotas and takes from counts, thresholds from rank histograms (+ the boundary bins' ranks)
    counts: dict[str, int] = {}
    excluded: dict[str, int] = {}
    for part in partials:
        _sum_into(counts, part["counts"])
        _sum_into(excluded, part["excluded"])
    asr_elig = _eligibility(partials, "asr_eligibility")
    eligibility_on = bool(asr_elig["by_split"]) or bool(getattr(spec.eligibility, "asr", None))
    groups_plan, chosen, warnings = quota.plan_balance(counts, spec.balance, spec.seed, eligibility_on)
    hist = _histograms(where["hist"], n, {k for k, g in groups_plan.items() if quota.needs_threshold(g)})
    bounds = quota.boundaries(groups_plan, hist)
    ranks: dict[str, list[str]] = {}
    if bounds:
        for found in run("boundary_ranks", [(plan_dir, i, {k: list(b) for k, b in bounds.items()})
                                            for i in range(n)]):
            for key, values in found.items():
                ranks.setdefault(key, []).extend(values)
    limits = quota.thresholds(bounds, ranks)
    excluded["not_selected"] = sum(g["available"] - g["take"] for g in groups_plan.values() if g["mode"] == "select")
    balance_report = {
        "method": spec.balance.method, "max_source_share": spec.balance.max_source_share,
        "balanced_splits": list(spec.balance.splits), "splits": chosen["splits"],
        "excluded": {k: int(excluded.get(k, 0)) for k in ("null_sentiment", "no_split", "ineligible", "not_selected")},
        "by_source": quota.source_table(counts, chosen["selected"]), "warnings": warnings, "eligibility": asr_elig,
    }
    clf_eligibility = _eligibility(partials, "clf_eligibility")
    split_log = shares_report.get("all", {}).get("counts", {})
    log("splits: %s", {k: v for k, v in split_log.items() if v})
    log("ASR stage: %d rows from %d utterances; %d duplicate segment(s) resolved",
        sum(chosen["selected"].values()), sum(per_source.values()), losers)

    # Babble (default pool) needs the planned train items: built here, once, from the merged sample.
    pools, pool_facts, pool_guards = noise_pool.pools_from_sample(
        spec, _talkers(where["talkers"], n, spec.seed), fs.join(work_dir(spec), "augment"), log)
    pools_uri = fs.join(plan_dir, noise_pool.PLAN_POOLS)  # augment and publish use exactly these pools
    fs.write_bytes(pools_uri, pools.to_json().encode())
    plan = {"groups": groups_plan, "thresholds": limits}
    shards = run("finish_shard", [(spec, plan_dir, i, plan, pools_uri) for i in range(n)])
    total = time.perf_counter() - clock["start"]
    log("plan: %d plan shard(s), %d partition(s) in %.1f s (%.1f s in the steps, %.1f s in reductions here)",
        n, parts, total, clock["steps"], total - clock["steps"])
    return {
        "plan_dir": plan_dir,
        "shards": shards,
        "row_shard_uris": [s["rows_uri"] for s in shards],
        "balance_report": jsonable(balance_report),
        "eligibility": jsonable({"asr": asr_elig, "classifier": clf_eligibility,
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
