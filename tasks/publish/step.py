"""The publish step: write the release (manifests, audio links, card, report, plots) from the plan and augmentation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
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
from tasks.core.results import (
    AugmentResult,
    IngestResult,
    PartResult,
    PlanResult,
    PublishResult,
    PublishSetup,
    PublishWeights,
)
from tasks.core.security import redact, redact_obj
from tasks.core.shards import (
    read_frame,
    stable_hash,
)
from tasks.core.work import (
    Log,
    code_version,
    jsonable,
    noop,
    work_dir,
)
from tasks.publish import releases
from tasks.spec import DatasetSpec


def _link_into_release(uri: str, release_audio: str, subdir: str = "") -> str:
    """Kept for callers of the old name: `tasks.publish.parts.link_into_release`."""
    from tasks.publish.parts import link_into_release

    return link_into_release(uri, release_audio, subdir)


def _empty_stage_rows(utterances: pd.DataFrame) -> pd.DataFrame:
    from tasks.publish.parts import empty_stage_rows

    return empty_stage_rows(utterances)


def release_name(spec: DatasetSpec) -> str:
    """A sortable UTC timestamp; a suffix keeps two builds in the same second apart."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    existing = set(fs.list_prefix(fs.join(spec.output, mio.RELEASES_DIR)))
    name, n = base, 1
    while name in existing:
        n += 1
        name = f"{base}-{n}"
    return name


def prepare_publish(spec: DatasetSpec, plan: PlanResult, ingest: list[IngestResult], log: Log = noop) -> PublishSetup:
    """Name the release and route the ingest rejects to parts; nothing of the release is written yet."""
    from tasks.publish.parts import split_ingest_rejects

    release = release_name(spec)
    paths = mio.release_paths(spec.output, release)
    fired = releases.incomplete_release_guards(spec.output, current=release)  # removed when pruning
    n_parts = max(1, len(plan["shards"]))
    reasons: dict[str, dict[str, int]] = {}
    for r in ingest:
        rejects = read_frame(r["rejects_uri"])
        for (source, reason), n in rejects.groupby(["source", "reason"]).size().items() if len(rejects) else []:
            reasons.setdefault(str(source), {})[str(reason)] = reasons.get(str(source), {}).get(str(reason), 0) + int(n)
    return {"release": release, "release_uri": paths.root, "n_parts": n_parts,
            "found": {r["source"]: r["found"] for r in ingest},
            "ingest_rejects": split_ingest_rejects(spec, release, [r["rejects_uri"] for r in ingest], n_parts),
            "ingest_reasons": reasons, "guards": fired}


def publish(spec: DatasetSpec, plan: PlanResult, augmented: list[AugmentResult],
            ingest: list[IngestResult], timings: dict[str, float], log: Log = noop,
            warn: Log | None = None) -> PublishResult:
    """All publish steps in this process, one shard after another (the flow runs them as tasks)."""
    from tasks.publish import parts

    setup = prepare_publish(spec, plan, ingest, log)
    staged = [parts.shard_windows(spec, setup, shard, aug, log) for shard, aug in
              zip(plan["shards"], augmented, strict=True)]
    weighting = parts.release_weights(spec, setup, dict(plan), staged)
    written = [parts.publish_shard(spec, setup, weighting, shard, s, log)
               for shard, s in zip(plan["shards"], staged, strict=True)]
    return finish_publish(spec, plan, setup, weighting, written, augmented, ingest, timings, log, warn)


def finish_publish(spec: DatasetSpec, plan: PlanResult, setup: PublishSetup, weighting: PublishWeights,
                   written: list[PartResult], augmented: list[AugmentResult], ingest: list[IngestResult],
                   timings: dict[str, float], log: Log = noop, warn: Log | None = None) -> PublishResult:
    """Release digest from the part records, card, plots, validation, then LATEST (or nothing, if unchanged)."""
    from manifests.parts import harmonise_parts, manifest_section, release_digest
    from manifests.release import write_pool_index
    from manifests.validate import validate_release
    from tasks.publish import card as report
    from tasks.publish import html as report_html

    release, paths, found = setup["release"], mio.ReleasePaths(setup["release_uri"]), setup["found"]
    records = {name: [w["records"][name] for w in sorted(written, key=lambda w: w["index"])] for name in MANIFEST_NAMES}
    records = {name: harmonise_parts(paths.root, name, recs, release, log) for name, recs in records.items()}
    publish_guards: list[dict[str, Any]] = [*setup["guards"], *(weighting.get("guards") or [])]
    write_pool_index(paths.root, weighting["rirs"], weighting["noises"])  # lets a reader apply recipes lazily
    digest = release_digest({name: [r["content_sha256"] for r in recs] for name, recs in records.items()})
    counts = {name: sum(int(r["rows"]) for r in recs) for name, recs in records.items()}
    same = releases.unchanged_release(spec.output, digest)
    if same is not None:  # nothing changed: a copy would only push real releases out of keep_releases
        fired = guards.collect(ingest, plan, augmented, {"guards": publish_guards})
        guards.log_guards(fired, warn=warn or log, info=log)
        changed = changes_since_previous(spec, _utterance_parts(paths.root, written), counts[UTTERANCES])
        return releases.publish_nothing(spec.output, spec.run.keep_releases, paths.root, same, digest, counts,
                                        changed, found, fired, log, warn or log)

    extra = _card_extra(spec, plan, weighting["report"], timings)
    card, plot_files = card_and_plots(spec, plan, release, paths, found, extra, publish_guards, ingest, augmented,
                                       written)
    card["schema_version"] = "2"
    card["content_sha256"] = digest
    card["manifests"] = {name: manifest_section(recs) for name, recs in records.items()}
    card = redact_obj(card)  # reject examples, lineage and spec text: no credentials in the card
    fs.write_bytes(paths.card_json, json.dumps(card, indent=2, sort_keys=True, allow_nan=False).encode())
    html_name = report_html.REPORT_FILE if spec.report.html else None
    fs.write_bytes(paths.card_md, redact(report.render_markdown(card, plot_files, report_html=html_name)).encode())

    guards.log_guards(card.get("guards") or [], warn=warn or log, info=log)  # with the card's derived ones
    result = validate_release(paths.root, card_digests_of_same_bytes=True)  # parts just written: see its docstring
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
        counts[UTTERANCES], counts[ASR_STAGE], counts[CLASSIFIER_STAGE], counts[REJECTS])
    return {
        "release": release,
        "release_uri": paths.root,
        "content_sha256": digest,
        "counts": counts,
        "found": found,
        "changes": extra["changes"],
        "guards": card.get("guards") or [],
        "published": True,
    }


def card_and_plots(spec: DatasetSpec, plan: PlanResult, release: str, paths: mio.ReleasePaths,
                   found: dict[str, int], extra: dict[str, Any], publish_guards: list[dict[str, Any]],
                   ingest: list[IngestResult], augmented: list[AugmentResult],
                   written: list[PartResult]) -> tuple[dict[str, Any], list[str]]:
    """The card and its plots from the parts' merged aggregates: no whole table is read (docs/scaling.md).

    Fills `extra` (languages, speech detection, guards, changes, agreement, transcript quality).
    """
    from tasks.publish import aggregates_labels
    from tasks.publish import card as report

    agg = merged_aggregates([w["aggregates_uri"] for w in sorted(written, key=lambda w: w["index"])])
    publish_guards = [*publish_guards, *aggregates_labels.speech_guards(agg)]
    extra.update(aggregates_labels.label_sections(spec, agg, (plan.get("sentiment") or {}).get("model_uri")))
    extra["guards"] = guards.collect(ingest, plan, augmented, {"guards": publish_guards})
    extra["source_notes"] = {r["source"]: list(r.get("notes") or []) for r in ingest if r.get("notes")}
    current_rows = sum(int(w["records"][UTTERANCES]["rows"]) for w in written)
    extra["changes"] = changes_since_previous(spec, _utterance_parts(paths.root, written), current_rows)
    card = report.build_card_from_aggregates(spec, release, agg, found, extra)
    return card, _make_plots(report, card, agg, paths)


def merged_aggregates(uris: list[str]) -> dict[str, Any]:
    """The parts' aggregates merged as they are read, one part at a time: memory is the accumulators
    (top-k samples cut as they grow, the segment-key hashes) plus one part, whatever the part count."""
    from tasks.publish.aggregates import merge_aggregates

    return merge_aggregates(json.loads(fs.read_bytes(u)) for u in uris)


def _utterance_parts(root: str, written: list[PartResult]) -> Iterator[pd.DataFrame]:
    """This release's utterance parts, one at a time: `utterance_id` and the columns `changes` compares."""
    from manifests.parts import part_uri
    from tasks.publish.changes import compared_rows

    for w in sorted(written, key=lambda w: w["index"]):
        yield from compared_rows(part_uri(root, UTTERANCES, int(w["index"])))


def changes_since_previous(spec: DatasetSpec, current_parts: Iterable[pd.DataFrame], current_rows: int) -> dict:
    """The card's `changes`: this release's utterance parts against LATEST's, bucket by bucket (`changes`)."""
    from tasks.publish import changes

    previous, name, previous_rows = changes.previous_utterance_parts(spec.output)
    n_buckets = changes.n_buckets_for(max(previous_rows, current_rows))
    return changes.release_changes_by_parts(previous, current_parts, name, fs.join(work_dir(spec), "publish", "changes"),
                                            n_buckets, current_rows=current_rows)


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


def release_audio_hashes(uris: pd.Series, root: str) -> list[str | None]:
    """sha256 of each release-internal (relative) audio file, hashed once per file; None outside it."""
    from manifests.locations import is_relative, resolve
    from tasks.core.audio import sha256_uri

    known: dict[str, str] = {}
    for uri in sorted({u for u in uris if isinstance(u, str) and is_relative(u)}):
        known[uri] = sha256_uri(resolve(root, uri))
    return [known.get(u) for u in uris]


def noise_windows(spec: DatasetSpec, pools: Any) -> pd.DataFrame:
    """Non-speech windows from the noise pools, so the classifier learns speech presence.

    Durations come from the pools (probed once per file list and cached), not from new probes:
    probing an S3 noise file downloads it. Babble is speech, so it gives no non-speech window.
    """
    from tasks.augment.noise_pool import NON_SPEECH_KINDS, RECORDED, kind_of
    from tasks.publish import windows

    usable = {i for i in pools.noises if kind_of(i) in NON_SPEECH_KINDS or kind_of(i) == RECORDED}
    files = [(i, pools.noises[i], pools.noise_durations[i], "train") for i in sorted(pools.train_noises) if i in usable]
    for noise_id in sorted(i for i in pools.eval_noises if i in usable):
        split = "dev" if int(stable_hash(spec.seed, noise_id)[:8], 16) % 2 == 0 else "test"
        files.append((noise_id, pools.noises[noise_id], pools.noise_durations[noise_id], split))
    return windows.noise_windows(files, spec.segments) if files else pd.DataFrame()


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
