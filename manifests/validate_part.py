"""The validator's per-part checks: everything that one part of the four manifests shows on its own.

`check_part` reads part `i` of utterances, asr_stage, classifier_stage and rejects (a version-1
release is one part: its four files), checks the rows against the contract, and returns its
problems plus small reductions (counts per source, split and class; segment and speaker splits;
weight ranges). A part holds an utterance together with every stage row made from it, so the
checks that join stage rows to utterances are local. `manifests.validate` merges the reductions
and checks the global invariants; it never holds a whole table.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from manifests import validate_leakage as leakage
from manifests.audio_files import check_release_audio
from manifests.io import ReleasePaths, read_table, table_digest
from manifests.parts import part_of, part_uri, read_part, read_part_with_sha256
from manifests.schema import (
    ASR_STAGE,
    CLASS_INDEX,
    CLASSIFIER_STAGE,
    MANIFEST_NAMES,
    OPTIONAL_COLUMNS,
    READABLE_VERSIONS,
    REJECT_REASONS,
    REJECTS,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    SENTIMENTS,
    SPLITS,
    UTTERANCES,
)
from manifests.validate_columns import isin, key_counts, objects
from manifests.validate_report import ValidationReport
from manifests.validate_report import examples as _examples
from manifests.validate_rows import (
    _check_eligibility,
    _check_plausibility,
    _check_windows,
    _eligible,
)

_TOL = 1e-6
# Recipe fields that decide the audio (aug_seed only seeds them): equal tuples mean identical audio.
_AUDIO_RECIPE = ("speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain")


@dataclass
class PartCheck:
    """One part's verdict: problems, checks passed, each manifest's part digest, and the reductions."""

    index: int
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    reductions: dict[str, Any] = field(default_factory=dict)


def check_part(root: str, index: int, card: dict | None, layout: str, n_parts: int, deep: bool = False,
               release_name: str | None = None, known: dict[str, tuple[str, str]] | None = None) -> PartCheck:
    """Check part `index` of a release (layout "1": the whole single-file manifests).

    `known` ({manifest: (file sha256, content_sha256)}, v2 only): a file with that sha256 takes that
    digest instead of hashing its rows (`validate_release(card_digests_of_same_bytes=True)`).
    Never raises for a bad release: every finding is a problem sentence naming the part's files.
    """
    label = "" if layout == "1" else f"part {index:05d}: "
    report = ValidationReport(release=root)
    out = PartCheck(index=index)
    hashes: dict[str, str] = {}
    tables = _load_part(ReleasePaths(root), layout, index, report, hashes if known and layout != "1" else None)
    if len(tables) == len(MANIFEST_NAMES):
        spec = (card or {}).get("spec") or {}
        same = {name: known[name][1] for name in MANIFEST_NAMES
                if known and name in known and hashes.get(name) == known[name][0]}
        try:
            _check_tables(tables, root, release_name, spec, layout, index, n_parts, deep, report, out, same)
        except (KeyError, TypeError, ValueError) as err:  # a column of the wrong kind: say so, do not crash
            report.fail(f"rows cannot be checked ({type(err).__name__}: {err})")
    out.problems = [label + p for p in report.problems]
    out.checks = report.checks
    return out


def _check_tables(tables: dict[str, pd.DataFrame], root: str, release_name: str | None, spec: dict, layout: str,
                  index: int, n_parts: int, deep: bool, report: ValidationReport, out: PartCheck,
                  same: dict[str, str]) -> None:
    out.digests = {name: same[name] if name in same else table_digest(tables[name], name, root, release_name)
                   for name in MANIFEST_NAMES}
    # Set before the row checks: a check that raises must not leave the card's row count check without it.
    out.reductions["rows"] = {name: len(tables[name]) for name in MANIFEST_NAMES}
    problems, checks = check_release_audio(tables, root, release_name, deep=deep)
    for problem in problems:
        report.fail(problem)
    out.reductions["audio_checks"] = list(checks)  # merged over parts by `manifests.validate`
    utt = tables[UTTERANCES]
    out.reductions.update(_utterance_reductions(utt, report, spec))
    _check_rejects(tables[REJECTS], report)
    _check_stage_common(tables, spec, report)
    if layout != "1":
        _check_placement(tables, index, n_parts, report)
    _check_eligibility(tables, spec, report)
    _check_plausibility(tables, spec, report)
    _check_asr_targets(tables[ASR_STAGE], utt, report)
    out.reductions.update(_asr_reductions(tables[ASR_STAGE], utt, spec, report))
    out.reductions["weights"] = _check_classifier_rows(tables[CLASSIFIER_STAGE], spec, report)
    _check_windows(tables[CLASSIFIER_STAGE], spec, report)
    rej = tables[REJECTS]
    out.reductions["accepted"] = Counter({str(k): int(v) for k, v in utt["source"].value_counts().items()})
    out.reductions["rejected"] = Counter({str(k): int(v) for k, v in rej["source"].value_counts().items()})
    out.reductions["duplicate_segments"] = int((rej["reason"] == "duplicate_segment").sum())


def _load_part(paths: ReleasePaths, layout: str, index: int, report: ValidationReport,
               hashes: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The part's four tables as pandas; `hashes` (when given) gets each v2 file's bytes' sha256."""
    tables: dict[str, pd.DataFrame] = {}
    for name in MANIFEST_NAMES:
        uri = paths.manifest(name) if layout == "1" else part_uri(paths.root, name, index)
        shown = f"{name}.parquet" if layout == "1" else uri.rsplit("/manifests/", 1)[-1]
        try:
            if layout == "1":
                table = read_table(uri)
            elif hashes is not None:
                table, hashes[name] = read_part_with_sha256(uri)
            else:
                table = read_part(uri)
        except FileNotFoundError:
            report.fail(f"{shown} is missing ({uri})")
            continue
        except (OSError, pa.ArrowInvalid, ValueError) as err:
            report.fail(f"{shown} cannot be read: {err}")
            continue
        version = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
        if version is None:
            report.fail(f"{shown} has no voicetone.schema_version metadata")
        elif version.decode() != layout:
            want = layout if layout in READABLE_VERSIONS else READABLE_VERSIONS[-1]
            report.fail(f"{shown} has schema_version {version.decode()!r}, expected {want!r}")
        for col in SCHEMAS[name]:
            if col.name not in table.schema.names:
                if col.name not in OPTIONAL_COLUMNS[name]:  # added to v1 later: older releases lack it
                    report.fail(f"{shown} lacks required column {col.name!r}")
                continue
            actual = table.schema.field(col.name).type
            if actual != col.type and not (pa.types.is_null(actual)):
                report.fail(f"{name}.{col.name} has type {actual}, the contract says {col.type}")
        tables[name] = table.to_pandas()
    if len(tables) == len(MANIFEST_NAMES):
        report.passed("four manifests present with schema_version and contract columns")
    return tables


def _check_placement(tables: dict[str, pd.DataFrame], index: int, n_parts: int, report: ValidationReport) -> None:
    """v2: rows that belong to no shard lie in the part their key hashes to (DESIGN-16 section 1);
    together with unique utterance ids and stage rows beside their utterance, row ids are unique."""
    clf = tables[CLASSIFIER_STAGE]
    known = set(objects(tables[UTTERANCES]["utterance_id"]))
    loose = clf["row_id"][~isin(clf["utterance_id"], known) & clf["sentiment"].isna().to_numpy()]
    astray = [r for r in loose if part_of(r, n_parts) != index]
    if astray:
        report.fail(f"classifier_stage: windows of no utterance outside their hashed part: {_examples(astray)}")


def _utterance_reductions(utt: pd.DataFrame, report: ValidationReport, spec: dict | None = None) -> dict[str, Any]:
    """Local utterance checks; returns the (segment, split) and (speaker, split) pairs and id hashes."""
    _check_unique(utt, "utterance_id", UTTERANCES, report)
    _check_values(utt, "sentiment", SENTIMENTS, UTTERANCES, report)
    _check_values(utt, "split", SPLITS, UTTERANCES, report)
    bad_dur = utt["utterance_id"][~(utt["duration_s"] > 0)]
    if len(bad_dur):
        report.fail(f"utterances with non-positive duration_s: {_examples(bad_dur)}")
    if "split_origin" in utt.columns:
        # Utterance-level splits share speakers by design, but only for sources the spec puts under
        # that policy (docs/balance-and-splits.md); anywhere else a `stratified` row is a leak.
        allowed = _stratified_sources(spec or {})
        stray = utt["utterance_id"][(utt["split_origin"] == "stratified") & ~isin(utt["source"], allowed)]
        if len(stray):
            report.fail(f"utterances split per utterance (split_origin stratified) from sources not under "
                        f"split_policy utterance_stratified: {_examples(stray)}")
    spk = speaker_rows(utt, spec)
    speakers = leakage.pairs(spk["key"], spk["split"])
    segments = leakage.pairs(utt["segment_key"], utt["split"])
    ids = np.array([int.from_bytes(hashlib.sha256(str(u).encode()).digest()[:8], "little")
                    for u in utt["utterance_id"]], dtype=np.uint64)
    return {"segment_splits": segments, "speaker_splits": speakers, "utterance_hashes": ids}


def speaker_rows(utt: pd.DataFrame, spec: dict | None) -> pd.DataFrame:
    """(key = source/speaker_id, split) of the rows whose speaker must stay in one split: a known
    speaker, not an official split, not a stratified row of a source under that policy."""
    # Only the columns used below: filtering every column of a wide part costs an Arrow `take` each.
    with_spk = utt[[c for c in ("source", "speaker_id", "split", "split_origin") if c in utt.columns]]
    with_spk = with_spk[with_spk["speaker_id"].notna()]
    if "split_origin" in utt.columns:
        allowed = _stratified_sources(spec or {})
        with_spk = with_spk[with_spk["split_origin"] != "official"]
        with_spk = with_spk[~((with_spk["split_origin"] == "stratified") & isin(with_spk["source"], allowed))]
    return pd.DataFrame({"key": (with_spk["source"] + "/" + with_spk["speaker_id"]).to_numpy(),
                         "split": with_spk["split"].to_numpy()})


def _check_asr_targets(asr: pd.DataFrame, utt: pd.DataFrame, report: ValidationReport) -> None:
    transcripts = utt.set_index("utterance_id")["transcript"]
    expected = asr["sentiment"].str.capitalize() + " " + transcripts.reindex(asr["utterance_id"]).to_numpy()
    wrong = asr[asr["target_text"].to_numpy() != expected.to_numpy()]
    if len(wrong):
        report.fail(f"asr_stage.target_text is not '<Sentiment> <transcript>' for rows {_examples(wrong['row_id'])}")


def _asr_reductions(asr: pd.DataFrame, utt: pd.DataFrame, spec: dict, report: ValidationReport) -> dict[str, Any]:
    """Local balance checks (natural splits hold each eligible utterance once; repeats differ) and
    the counts the global balance check needs."""
    balance = spec.get("balance") or {}
    balanced = set(balance.get("splits", ["train"]))
    used = [c for c in ("utterance_id", "split", "sentiment", "source", "transcript") if c in utt.columns]
    pool = utt[used][_eligible(utt, spec, "asr") & isin(utt["sentiment"], SENTIMENTS)]
    if "transcript" in pool.columns and (spec.get("labelers") or {}).get("transcripts") == "none":
        pool = pool[pool["transcript"].notna()]
    narrow = asr[[c for c in ("row_id", "utterance_id", *_AUDIO_RECIPE) if c in asr.columns]]
    for split in SPLITS:
        rows = narrow[(asr["split"] == split).to_numpy()]
        if split in balanced:
            _check_distinct_repeats(rows, split, report)
            continue
        avail = pool[pool["split"] == split]
        per_utt = rows["utterance_id"].value_counts()
        repeated = per_utt[per_utt > 1]
        missing = sorted(set(objects(avail["utterance_id"])) - set(objects(rows["utterance_id"])))
        if len(repeated) or missing:
            report.fail(
                f"asr_stage {split} split is not balanced, so it must hold every eligible utterance once "
                f"(natural distribution): repeated {_examples(repeated.index)}; missing {_examples(missing)}"
            )

    return {"asr_rows": key_counts(asr, ["split", "sentiment"]), "asr_pool": key_counts(pool, ["split", "sentiment"]),
            "asr_source_rows": key_counts(asr, ["split", "sentiment", "source"], distinct=True),
            "asr_source_pool": key_counts(pool, ["split", "sentiment", "source"], distinct=True)}


def _check_classifier_rows(clf: pd.DataFrame, spec: dict, report: ValidationReport) -> dict[tuple[str, str], list[float]]:
    """Window geometry, speech presence and class index per row; returns {(split, class): [n, sum, min, max]}
    of the speech windows' class_weight for the global weight rule."""
    seg = spec.get("segments") or {}
    window = float(seg.get("window_s", 5.0))
    row_ids = clf["row_id"]
    length = clf["end_s"] - clf["start_s"]
    bad_len = row_ids[(length - window).abs() > 1e-3]
    if len(bad_len):
        report.fail(f"classifier_stage windows not {window} s long: rows {_examples(bad_len)}")
    bad_valid = row_ids[(clf["valid_s"] > window + 1e-3) | (clf["valid_s"] <= 0)]
    if len(bad_valid):
        report.fail(f"classifier_stage valid_s outside (0, {window}]: rows {_examples(bad_valid)}")
    padded = row_ids[(clf["valid_s"] < window - 1e-3) & (clf["start_s"].abs() > 1e-6)]
    if len(padded):
        report.fail(f"classifier_stage padded windows must start at 0 (short utterances only): {_examples(padded)}")
    clf = clf[["row_id", "split", "sentiment", "class_index", "class_weight", "speech_present"]]  # only these below
    nonspeech = clf[~clf["speech_present"].astype(bool)]
    if nonspeech["sentiment"].notna().any():
        report.fail("classifier_stage non-speech windows must have a null sentiment")
    if (nonspeech["class_weight"].sub(1.0).abs() > _TOL).any():
        report.fail("classifier_stage non-speech windows must have class_weight 1.0")
    speech = clf[clf["speech_present"].astype(bool)]
    if speech["sentiment"].isna().any():
        report.fail("classifier_stage speech windows must have a sentiment")
    bad_idx = speech[speech["class_index"] != speech["sentiment"].map(CLASS_INDEX)]
    if len(bad_idx):
        report.fail(f"classifier_stage class_index does not match sentiment: rows {_examples(bad_idx['row_id'])}")
    out: dict[tuple[str, str], list[float]] = {}
    splits, classes = objects(speech["split"]), objects(speech["sentiment"])
    weights = speech["class_weight"].astype(float).to_numpy()
    rows: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(~(pd.isna(splits) | pd.isna(classes))):  # groupby leaves out null keys
        rows.setdefault((splits[i], classes[i]), []).append(i)
    for (split, cls), where in sorted(rows.items()):
        w = weights[where]
        nan = np.isnan(w)
        if nan.any():
            report.fail(f"classifier_stage {split}: NaN class_weight")
        kept = w[~nan]  # pandas' sum/min/max skip NaN (the sum adds zeros in their place)
        low, high = (float(kept.min()), float(kept.max())) if len(kept) else (float("nan"), float("nan"))
        out[(str(split), str(cls))] = [len(w), float(np.where(nan, 0.0, w).sum()), low, high]
    return out


def _check_unique(df: pd.DataFrame, column: str, name: str, report: ValidationReport) -> None:
    dup = df[column][df[column].duplicated()]
    if len(dup):
        report.fail(f"{name}.{column} not unique: {_examples(sorted(set(dup)))}")
    if df[column].isna().any():
        report.fail(f"{name}.{column} has {int(df[column].isna().sum())} null values")


def _check_values(df: pd.DataFrame, column: str, allowed: tuple[str, ...], name: str, report: ValidationReport,
                  nullable: bool = False) -> None:
    values = df[column]
    outside = ~isin(values, allowed)
    if nullable:
        outside &= ~values.isna().to_numpy()
    bad = values[outside]
    if len(bad):
        report.fail(f"{name}.{column} has values outside {list(allowed)}: {_examples(sorted(set(map(str, bad))))}")


def _stratified_sources(spec: dict) -> set[str]:
    """Sources the card's spec splits per utterance (`split_policy: utterance_stratified`)."""
    return {str(s.get("name")) for s in spec.get("sources") or []
            if isinstance(s, dict) and s.get("split_policy") == "utterance_stratified"}


def _check_rejects(rej: pd.DataFrame, report: ValidationReport) -> None:
    _check_values(rej, "reason", REJECT_REASONS, REJECTS, report)
    empty = rej[rej["detail"].isna() | (rej["detail"].astype(str).str.strip() == "")]
    if len(empty):
        report.fail(f"rejects without a detail sentence: {_examples(empty['input_ref'])}")


def _check_stage_common(tables: dict[str, pd.DataFrame], spec: dict, report: ValidationReport) -> None:
    aug = spec.get("augment") or {}
    speeds = [float(s) for s in aug.get("speeds", [0.95, 1.0, 1.05])]
    snr_lo, snr_hi = (float(x) for x in aug.get("snr_db", [0.0, 15.0]))
    aug_splits = set(aug.get("splits", ["train"])) if aug.get("enabled", True) else set()
    utt_ids = set(objects(tables[UTTERANCES]["utterance_id"]))
    split_of = tables[UTTERANCES][["utterance_id", "split"]].set_index("utterance_id")["split"]
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        df = tables[name]
        _check_unique(df, "row_id", name, report)
        _check_values(df, "split", SPLITS, name, report)
        _check_values(df, "sentiment", SENTIMENTS, name, report, nullable=(name == CLASSIFIER_STAGE))
        # Identity rows (dev/test, or augmentation off) keep speed 1.0 even if the set leaves it out.
        allowed = speeds + [1.0]
        speed = df["speed"].to_numpy(dtype=float, na_value=np.nan)
        in_set = np.logical_or.reduce([np.abs(speed - v) < _TOL for v in allowed])  # NaN is in no set
        bad_speed = df["row_id"][~in_set]
        if len(bad_speed):
            report.fail(f"{name}: speed outside {speeds}: rows {_examples(bad_speed)}")
        snr = df["snr_db"].dropna()
        bad_snr = snr[(snr < snr_lo - _TOL) | (snr > snr_hi + _TOL)]
        if len(bad_snr):
            report.fail(f"{name}: snr_db outside [{snr_lo}, {snr_hi}]: rows {_examples(df.loc[bad_snr.index, 'row_id'])}")
        augmented = (df["speed"].sub(1.0).abs() > _TOL) | df["rir_id"].notna() | df["noise_id"].notna()
        leaking = df["row_id"][augmented & ~isin(df["split"], aug_splits)]
        if len(leaking):
            report.fail(f"{name}: augmentation on splits not configured for it ({sorted(aug_splits)}): "
                        f"rows {_examples(leaking)}")
        speech_rows = df[["row_id", "utterance_id", "split"]]
        if name == CLASSIFIER_STAGE:
            speech_rows = speech_rows[df["sentiment"].notna()]
        known_row = isin(speech_rows["utterance_id"], utt_ids)
        orphans = speech_rows[~known_row]
        if len(orphans):
            report.fail(f"{name}: rows whose utterance_id is not in utterances: {_examples(orphans['row_id'])}")
        # Stage rows must agree with their utterance's split (no leakage through the stages).
        known = speech_rows[known_row]
        mismatch = known[known["split"].to_numpy() != split_of.reindex(known["utterance_id"]).to_numpy()]
        if len(mismatch):
            report.fail(f"{name}: rows in another split than their utterance: {_examples(mismatch['row_id'])}")
    report.passed("stage rows unique, speeds and SNRs in range, augmentation only on configured splits")


def _check_distinct_repeats(rows: pd.DataFrame, split: str, report: ValidationReport) -> None:
    """Oversampled repeats of an utterance must be distinct augmentations, never identical audio."""
    repeated = rows[rows["utterance_id"].duplicated(keep=False)]
    if repeated.empty:
        return
    cols = [c for c in _AUDIO_RECIPE if c in repeated.columns]
    recipe = repeated[cols].astype(object).where(repeated[cols].notna(), None).apply(tuple, axis=1)
    same = repeated[pd.Series(list(zip(repeated["utterance_id"], recipe, strict=True)),
                              index=repeated.index).duplicated(keep=False)]
    if len(same):
        report.fail(f"asr_stage {split}: oversampled repeats with identical recipes (byte-identical audio): "
                    f"rows {_examples(same['row_id'])}")
