"""The publish step: write the release (manifests, audio links, card, report, plots) from the plan and augmentation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
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
)
from tasks.core import guards, output_lock
from tasks.core.results import AugmentResult, IngestResult, PlanResult, PublishResult
from tasks.core.security import redact, redact_obj
from tasks.core.shards import (
    read_frame,
    stable_hash,
)
from tasks.core.work import (
    Log,
    code_version,
    concat_rejects,
    jsonable,
    noop,
    read_all,
    work_dir,
)
from tasks.ingest import source_guards
from tasks.publish import releases
from tasks.spec import DatasetSpec


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


def _empty_stage_rows(utterances: pd.DataFrame) -> pd.DataFrame:
    """Stage rows with their columns and no row: both stages get empty manifests of the right shape."""
    from tasks.plan.stage_rows import variant_rows

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


def publish(spec: DatasetSpec, plan: PlanResult, augmented: list[AugmentResult],
            ingest: list[IngestResult], timings: dict[str, float], log: Log = noop,
            warn: Log | None = None) -> PublishResult:
    """Window, weight and write the release; move LATEST only after it validates."""
    from manifests.release import write_pool_index
    from manifests.validate import validate_release
    from tasks.augment import noise_pool
    from tasks.label import segments
    from tasks.plan.stage_rows import asr_stage_rows, classifier_input_rows, finish_classifier_rows
    from tasks.publish import card as report
    from tasks.publish import html as report_html
    from tasks.publish import weights

    utterances = read_frame(plan["utterances_uri"])
    rows = read_all([a["rows_uri"] for a in augmented])
    if rows.empty:  # no utterance reached either stage: no row shards, so no columns either
        rows = _empty_stage_rows(utterances)
    rejects = concat_rejects([*(read_frame(r["rejects_uri"]) for r in ingest), read_frame(plan["rejects_uri"])])
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
    if len(noise) and len(windows):  # non-speech examples complement utterances; none without any
        # generated noise lies inside the release: its bytes enter the identity like other audio
        noise["audio_sha256"] = _release_audio_hashes(noise["audio_uri"], paths.root)
        windows = pd.concat([windows, noise], ignore_index=True)
    class_weights, weight_report = weights.inverse_frequency_weights(windows, spec.weights)
    classifier = finish_classifier_rows(windows, class_weights)
    utterances = utterances.drop(columns=["speech_intervals"], errors="ignore")

    tables = {UTTERANCES: utterances, ASR_STAGE: asr, CLASSIFIER_STAGE: classifier, REJECTS: rejects}
    config = {"spec": json.loads(spec.model_dump_json()), "weights": jsonable(weight_report)}
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
    from tasks.publish import aggregates_labels
    from tasks.publish.aggregates import merge_aggregates, shard_aggregates

    # One part today; per-shard publish maps shard_aggregates over the parts and merges (docs/scaling.md).
    agg = merge_aggregates([shard_aggregates(spec, written[UTTERANCES], written[ASR_STAGE],
                                             written[CLASSIFIER_STAGE], written[REJECTS])])
    publish_guards += aggregates_labels.speech_guards(agg)
    extra.update(aggregates_labels.label_sections(spec, agg, (plan.get("sentiment") or {}).get("model_uri")))
    extra["guards"] = guards.collect(ingest, plan, augmented, {"guards": publish_guards})
    extra["source_notes"] = {r["source"]: list(r.get("notes") or []) for r in ingest if r.get("notes")}
    extra["changes"] = changes_since_previous(spec, [written[UTTERANCES]], len(written[UTTERANCES]))
    card = report.build_card_from_aggregates(spec, release, agg, found, extra)
    card["schema_version"] = "1"
    card["content_sha256"] = digest
    card = redact_obj(card)  # reject examples, lineage and spec text: no credentials in the card
    plot_files = _make_plots(report, card, agg, paths)
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


def changes_since_previous(spec: DatasetSpec, current_parts: Iterable[pd.DataFrame], current_rows: int) -> dict:
    """The card's `changes`: this release's utterance parts against LATEST's, bucket by bucket (`changes`)."""
    from tasks.publish import changes

    previous, name, previous_rows = changes.previous_utterance_parts(spec.output)
    n_buckets = changes.n_buckets_for(max(previous_rows, current_rows))
    return changes.release_changes_by_parts(previous, current_parts, name, fs.join(work_dir(spec), "publish", "changes"),
                                            n_buckets)


def _make_plots(report: Any, card: dict, agg: dict[str, Any], paths: mio.ReleasePaths) -> list[str]:
    """Draw the card's plots locally; for an S3 release draw into a temp folder and upload."""
    if not fs.is_s3(paths.root):
        return report.make_plots_from_aggregates(card, agg, paths.plots)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        local = report.make_plots_from_aggregates(card, agg, tmp)
        uploaded = []
        for path in local:
            target = fs.join(paths.plots, Path(path).name)
            fs.write_bytes(target, Path(path).read_bytes())
            uploaded.append(target)
    return uploaded


def _release_audio_hashes(uris: pd.Series, root: str) -> list[str | None]:
    """sha256 of each release-internal (relative) audio file, hashed once per file; None outside it."""
    from manifests.locations import is_relative, resolve
    from tasks.core.audio import sha256_uri

    known: dict[str, str] = {}
    for uri in sorted({u for u in uris if isinstance(u, str) and is_relative(u)}):
        known[uri] = sha256_uri(resolve(root, uri))
    return [known.get(u) for u in uris]


def _noise_windows(spec: DatasetSpec, pools: Any) -> pd.DataFrame:
    """Non-speech windows from the noise pools, so the classifier learns speech presence.

    Durations come from the pools (probed once per file list and cached), not from new probes:
    probing an S3 noise file downloads it. Babble is speech, so it gives no non-speech window.
    """
    from tasks.augment.noise_pool import NON_SPEECH_KINDS, RECORDED, kind_of
    from tasks.label import segments

    usable = {i for i in pools.noises if kind_of(i) in NON_SPEECH_KINDS or kind_of(i) == RECORDED}
    files = [(i, pools.noises[i], pools.noise_durations[i], "train") for i in sorted(pools.train_noises) if i in usable]
    for noise_id in sorted(i for i in pools.eval_noises if i in usable):
        split = "dev" if int(stable_hash(spec.seed, noise_id)[:8], 16) % 2 == 0 else "test"
        files.append((noise_id, pools.noises[noise_id], pools.noise_durations[noise_id], split))
    return segments.noise_windows(files, spec.segments) if files else pd.DataFrame()


def _card_extra(spec: DatasetSpec, plan: PlanResult, weight_report: dict, timings: dict[str, float]) -> dict:
    from manifests.specaugment import SPECAUGMENT_POLICY
    from tasks.label.transcripts.normalize import NORMALIZER_NAME, NORMALIZER_VERSION

    spec_json = spec.model_dump_json()
    return {
        "balance": plan.get("balance_report"),
        "split_shares": plan.get("split_shares"),
        "plausibility": plan.get("plausibility"),
        "hallucination": plan.get("hallucination"),
        "pii": plan.get("pii"),
        "eligibility": plan.get("eligibility"),
        "weights": jsonable(weight_report),
        "labelers": {
            "transcripts": spec.labelers.transcripts,
            "whisper": spec.labelers.whisper.model_dump() if spec.labelers.transcripts == "whisper" else None,
            "sentiment": spec.labelers.sentiment,
            "text_classifier": spec.labelers.text_classifier.model_dump()
            if spec.labelers.sentiment == "text_classifier" else None,
            "normalizer": {"name": NORMALIZER_NAME, "version": NORMALIZER_VERSION},
        },
        "augment": {"policy": spec.augment.model_dump(mode="json"), "pools": plan.get("pools"),
                    "specaugment": jsonable(SPECAUGMENT_POLICY)},
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
