"""Publish per shard: each planned shard becomes part `i` of the four manifests (schema version 2).

Two passes, each a task per shard on the task runner, so no process holds a whole table:
1. `shard_windows`: build the shard's ASR rows and classifier windows (staged under work/), and
   count its speech windows, accepted items and rejects;
2. `publish_shard`: link the shard's materialised audio into the release, weight the windows with the global weights (`weights.weights_from_counts` of
   the merged counts), add the noise windows and ingest rejects that hash to this part, and write
   the shard's utterances, asr_stage, classifier_stage and rejects parts.
Between them `release_weights` (one small task) merges the counts, checks the sources' guards and
builds the noise windows. tasks/publish/step.py prepares the release and finishes it.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from typing import Any

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.parts import part_of, write_part_frame
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, MANIFEST_NAMES, REJECTS, UTTERANCES
from tasks.core.results import (
    AugmentResult,
    PartResult,
    PlanShard,
    PublishSetup,
    PublishWeights,
    ShardWindows,
)
from tasks.core.shards import read_frame, write_frame
from tasks.core.work import Log, concat_rejects, noop, work_dir
from tasks.spec import DatasetSpec


def staging_dir(spec: DatasetSpec, release: str) -> str:
    """Work files of one publish (staged windows, per-part ingest rejects, noise windows)."""
    return fs.join(work_dir(spec), "publish", release)


def link_into_release(uri: str, release_audio: str, subdir: str = "") -> str:
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
        from tasks.core import storage
        storage.copy_file(uri, target)
        return relative_audio_path(name)
    os.makedirs(release_audio, exist_ok=True)
    if not os.path.exists(target):
        try:
            os.link(uri, target)
        except OSError:
            shutil.copy2(uri, target)
    return relative_audio_path(name)


def empty_stage_rows(utterances: pd.DataFrame) -> pd.DataFrame:
    """Stage rows with their columns and no row: both stages get empty parts of the right shape."""
    from tasks.plan.stage_rows import variant_rows

    variants = pd.DataFrame({"utterance_id": pd.Series(dtype=object), "variant": pd.Series(dtype="int64")})
    rows = variant_rows(utterances.iloc[0:0], variants, {})
    rows["in_asr"] = pd.Series(dtype=bool)
    rows["in_classifier"] = pd.Series(dtype=bool)
    return rows


def split_ingest_rejects(spec: DatasetSpec, release: str, rejects_uris: list[str], n_parts: int) -> dict[str, list[str]]:
    """Ingest rejects (items that reached no shard) into per-part work files, one source file at a time.

    A reject goes to part `part_of(input_ref, n_parts)` (DESIGN-16 section 1). Returns
    {str(part): [work file, ...]} for the parts that receive any.
    """
    out: dict[str, list[str]] = {}
    for k, uri in enumerate(rejects_uris):
        rejects = read_frame(uri)
        if rejects.empty:
            continue
        part = rejects["input_ref"].astype(str).map(lambda ref: part_of(ref, n_parts))
        for index, group in rejects.groupby(part, sort=True):
            target = fs.join(staging_dir(spec, release), "ingest-rejects", f"{k:04d}-{int(index):05d}.parquet")
            write_frame(target, group)
            out.setdefault(str(int(index)), []).append(target)
    return out


def shard_windows(spec: DatasetSpec, setup: PublishSetup, shard: PlanShard, augmented: AugmentResult,
                  log: Log = noop) -> ShardWindows:
    """Pass 1 for one shard: ASR rows and windows staged under work/, counts returned; nothing of the
    release is written yet (the sources' guards run on the merged counts first)."""
    from tasks.plan.stage_rows import asr_stage_rows, classifier_input_rows
    from tasks.publish import weights
    from tasks.publish.windows import classifier_windows

    index = int(shard["index"])
    utterances = read_frame(shard["utterances_uri"])
    rows = read_frame(augmented["rows_uri"])
    if rows.empty and "in_asr" not in rows.columns:  # a rows file without columns
        rows = empty_stage_rows(utterances)
    asr = asr_stage_rows(rows[rows["in_asr"].astype(bool)].drop(columns=["in_asr", "in_classifier"]))
    speech = (utterances.set_index("utterance_id")["speech_intervals"] if len(utterances)
              else pd.Series(dtype=object))
    clf_in = classifier_input_rows(rows[rows["in_classifier"].astype(bool)].drop(columns=["in_asr", "in_classifier"]),
                                   speech)
    windows = classifier_windows(clf_in, spec.segments)
    stage = staging_dir(spec, setup["release"])
    asr_uri, windows_uri = fs.join(stage, f"asr-{index:05d}.parquet"), fs.join(stage, f"windows-{index:05d}.parquet")
    write_frame(asr_uri, asr)
    write_frame(windows_uri, windows)
    rejects = read_frame(shard["rejects_uri"])
    reasons: dict[str, dict[str, int]] = {}
    for (source, reason), n in Counter(zip(rejects.get("source", []), rejects.get("reason", []), strict=True)).items():
        reasons.setdefault(str(source), {})[str(reason)] = int(n)
    log("publish shard %d: %d ASR rows, %d windows", index, len(asr), len(windows))
    return {"index": index, "asr_uri": asr_uri, "windows_uri": windows_uri,
            "window_counts": weights.window_counts(windows), "windows": int(len(windows)),
            "accepted": {str(k): int(v) for k, v in utterances["source"].value_counts().items()}
            if len(utterances) else {},
            "reject_reasons": reasons}


def release_weights(spec: DatasetSpec, setup: PublishSetup, plan: dict[str, Any],
                    staged: list[ShardWindows]) -> PublishWeights:
    """Between the passes: merged window counts -> class weights; noise windows (staged once)."""
    from tasks.augment import noise_pool
    from tasks.publish import weights
    from tasks.publish.step import noise_windows, release_audio_hashes

    fired = check_sources(spec, setup, staged)  # before any manifest is written
    paths = mio.ReleasePaths(setup["release_uri"])
    pools, noise_index = noise_pool.release_pools(
        noise_pool.load_pools(spec, plan.get("pools_uri"), fs.join(work_dir(spec), "augment")), paths.root,
        paths.audio, link_into_release)
    noise = noise_windows(spec, pools)
    noise_uri = None
    if len(noise) and sum(s["windows"] for s in staged):  # non-speech examples complement utterances
        # generated noise lies inside the release: its bytes enter the identity like other audio
        noise["audio_sha256"] = release_audio_hashes(noise["audio_uri"], paths.root)
        noise_uri = fs.join(staging_dir(spec, setup["release"]), "noise-windows.parquet")
        write_frame(noise_uri, noise)
    table, report = weights.weights_from_counts(weights.merge_counts([s["window_counts"] for s in staged]),
                                                spec.weights)
    return {"weights": table, "report": report, "noise_uri": noise_uri, "rirs": dict(pools.rirs),
            "noises": dict(noise_index), "guards": fired}


def _linked(rows: pd.DataFrame, release_audio: str) -> pd.DataFrame:
    """Rows whose recipe was materialised name their file inside the release (linked there once per file)."""
    if rows.empty or "recipe_applied" not in rows.columns or not rows["recipe_applied"].fillna(False).any():
        return rows
    applied = rows["recipe_applied"].fillna(False).astype(bool)
    memo: dict[str, str] = {}
    rows = rows.copy()
    rows.loc[applied, "audio_uri"] = [memo[u] if u in memo else memo.setdefault(u, link_into_release(u, release_audio))
                                      for u in rows.loc[applied, "audio_uri"]]
    return rows


def check_sources(spec: DatasetSpec, setup: PublishSetup, staged: list[ShardWindows]) -> list[dict[str, Any]]:
    """The sources' guards (accepted nothing, too many rejects) from merged per-shard counts."""
    from tasks.ingest.source_guards import enforce, source_verdicts

    accepted: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for counts in [setup["ingest_reasons"], *(s["reject_reasons"] for s in staged)]:
        for source, per_reason in counts.items():
            reasons.setdefault(source, Counter()).update(per_reason)
    for s in staged:
        accepted.update(s["accepted"])
    listed = {source: [r for r, n in sorted(c.items()) for _ in range(n)] for source, c in reasons.items()}
    return enforce(source_verdicts(spec, setup["found"], dict(accepted), listed, "all stages"))


def publish_shard(spec: DatasetSpec, setup: PublishSetup, weighting: PublishWeights, shard: PlanShard,
                  staged: ShardWindows, log: Log = noop) -> PartResult:
    """Pass 2 for one shard: write part `index` of the four manifests; return the part records."""
    import json

    from tasks.plan.stage_rows import finish_classifier_rows
    from tasks.publish import weights

    index, n_parts = int(shard["index"]), int(setup["n_parts"])
    utterances = read_frame(shard["utterances_uri"]).drop(columns=["speech_intervals"], errors="ignore")
    asr = read_frame(staged["asr_uri"])
    windows = read_frame(staged["windows_uri"])
    if weighting.get("noise_uri"):
        noise = read_frame(weighting["noise_uri"])
        mine = noise[noise["row_id"].map(lambda r: part_of(r, n_parts) == index)]
        if len(mine):
            windows = pd.concat([windows, mine], ignore_index=True) if len(windows) else mine.reset_index(drop=True)
    audio = mio.ReleasePaths(setup["release_uri"]).audio
    asr, windows = _linked(asr, audio), _linked(windows, audio)
    classifier = finish_classifier_rows(windows, weights.apply_weights(windows, weighting["weights"]))
    rejects = concat_rejects([*(read_frame(u) for u in setup["ingest_rejects"].get(str(index), [])),
                              read_frame(shard["rejects_uri"])])
    tables = {UTTERANCES: utterances, ASR_STAGE: asr, CLASSIFIER_STAGE: classifier, REJECTS: rejects}
    config = {"spec": json.loads(spec.model_dump_json()), "weights": weighting["report"]}
    records, written = {}, {}
    for name in MANIFEST_NAMES:
        records[name], written[name] = write_part_frame(tables[name], name, setup["release_uri"], index,
                                                        metadata={"config": config}, release_name=setup["release"])
    log("publish part %d: %s", index, {name: r["rows"] for name, r in records.items()})
    return {"index": index, "records": records, "aggregates_uri": _part_aggregates(spec, setup, index, written)}


def _part_aggregates(spec: DatasetSpec, setup: PublishSetup, index: int, back: dict[str, pd.DataFrame]) -> str:
    """The card's partial aggregates of part `index`, from its rows as written (what readers see: the
    written Arrow tables as pandas, `write_part_frame`), saved under work/ (a few hundred KB: results
    passed between tasks stay small); returns their URI."""
    import json

    from tasks.publish.aggregates import shard_aggregates

    agg = shard_aggregates(spec, back[UTTERANCES], back[ASR_STAGE], back[CLASSIFIER_STAGE], back[REJECTS])
    uri = fs.join(work_dir(spec), "publish", setup["release"], "aggregates", f"part-{index:05d}.json")
    fs.write_bytes(uri, json.dumps(agg, sort_keys=True).encode())
    return uri
