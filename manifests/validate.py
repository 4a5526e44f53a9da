"""The contract's validator: `voicetone validate DIR` is `validate_release(DIR)`.

Every check returns problems as sentences that name the file, the rows and the rule, so a failing
release can be fixed without reading this code. The configured values a check needs (window length,
speed set, SNR range, weighting, balancing, eligibility) are read from the card's `spec`, so the
validator judges a release by the settings that built it. The numeric rules come from
`manifests.rules`, an implementation independent of the pipeline's (docs/balance-and-splits.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from manifests import rules
from manifests.audio_files import check_release_audio
from manifests.io import (
    ManifestError,
    ReleasePaths,
    content_sha256,
    read_card,
    read_table,
    resolve_release,
)
from manifests.schema import (
    ASR_STAGE,
    CLASS_INDEX,
    CLASSIFIER_STAGE,
    MANIFEST_NAMES,
    OPTIONAL_COLUMNS,
    REJECT_REASONS,
    REJECTS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    SENTIMENTS,
    SPLITS,
    UTTERANCES,
)

_TOL = 1e-6
_MAX_EXAMPLES = 5
_GEOMETRY_TOL = 1e-4  # seconds; window times are written rounded to microseconds
ORIGIN_FIELDS: tuple[str, ...] = ("sentiment_origin", "transcript_origin")
# Recipe fields that decide the audio (aug_seed only seeds them): equal tuples mean identical audio.
_AUDIO_RECIPE = ("speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain")


@dataclass
class ValidationReport:
    release: str
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def passed(self, check: str) -> None:
        self.checks.append(check)


def _examples(values: Any) -> str:
    items = [str(v) for v in list(values)[:_MAX_EXAMPLES]]
    more = len(list(values)) - len(items)
    return ", ".join(items) + (f" (+{more} more)" if more > 0 else "")


def validate_release(uri: str, deep: bool = False) -> ValidationReport:
    """Check a release (or the LATEST under an output folder) against schema version 1.

    `deep` also re-reads every audio file inside the release: its sha256 must equal the manifests'
    `audio_sha256` and it must decode (plain validation checks that each exists and is not empty).
    """
    try:
        paths = resolve_release(uri)
    except (ManifestError, FileNotFoundError) as err:
        report = ValidationReport(release=uri)
        report.fail(str(err))
        return report
    report = ValidationReport(release=paths.root)
    tables = _load_tables(paths, report)
    try:
        card = read_card(paths)
    except (ManifestError, FileNotFoundError) as err:
        report.fail(f"dataset card: {err}")
        card = None
    if len(tables) < len(MANIFEST_NAMES):
        return report
    if card is not None:
        _check_card(card, tables, paths, report)
    problems, checks = check_release_audio(tables, paths.root, _release_name(card, paths), deep=deep)
    for problem in problems:
        report.fail(problem)
    for check in checks:
        report.passed(check)
    spec = (card or {}).get("spec") or {}
    _check_utterances(tables[UTTERANCES], report, spec)
    _check_rejects(tables[REJECTS], report)
    _check_stage_common(tables, spec, report)
    _check_eligibility(tables, spec, report)
    _check_plausibility(tables, spec, report)
    _check_asr(tables[ASR_STAGE], tables[UTTERANCES], spec, report)
    _check_asr_balance(tables[ASR_STAGE], tables[UTTERANCES], spec, report)
    _check_classifier(tables[CLASSIFIER_STAGE], spec, report)
    _check_windows(tables[CLASSIFIER_STAGE], spec, report)
    return report


def _load_tables(paths: ReleasePaths, report: ValidationReport) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    for name in MANIFEST_NAMES:
        uri = paths.manifest(name)
        try:
            table = read_table(uri)
        except FileNotFoundError:
            report.fail(f"{name}.parquet is missing ({uri})")
            continue
        except (OSError, pa.ArrowInvalid) as err:
            report.fail(f"{name}.parquet cannot be read: {err}")
            continue
        version = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
        if version is None:
            report.fail(f"{name}.parquet has no voicetone.schema_version metadata")
        elif version.decode() != SCHEMA_VERSION:
            report.fail(f"{name}.parquet has schema_version {version.decode()!r}, expected {SCHEMA_VERSION!r}")
        for col in SCHEMAS[name]:
            if col.name not in table.schema.names:
                if col.name not in OPTIONAL_COLUMNS[name]:  # added to v1 later: older releases lack it
                    report.fail(f"{name}.parquet lacks required column {col.name!r}")
                continue
            actual = table.schema.field(col.name).type
            if actual != col.type and not (pa.types.is_null(actual)):
                report.fail(f"{name}.{col.name} has type {actual}, the contract says {col.type}")
        tables[name] = table.to_pandas()
    if len(tables) == len(MANIFEST_NAMES):
        report.passed("four manifests present with schema_version and contract columns")
    return tables


def _check_card(card: dict, tables: dict[str, pd.DataFrame], paths: ReleasePaths, report: ValidationReport) -> None:
    if str(card.get("schema_version")) != SCHEMA_VERSION:
        report.fail(f"dataset card schema_version is {card.get('schema_version')!r}, expected {SCHEMA_VERSION!r}")
    expected = card.get("content_sha256")
    actual = content_sha256(tables, release_root=paths.root, release_name=_release_name(card, paths))
    if expected != actual:
        report.fail(f"content_sha256 mismatch: card says {expected}, manifests hash to {actual}")
    else:
        report.passed("content_sha256 matches the manifests")
    found = _found_per_source(card)
    if not found:
        report.fail("dataset card has no counts.found per source")
        return
    utt = tables[UTTERANCES]
    rej = tables[REJECTS]
    for source, n_found in sorted(found.items()):
        accepted = int((utt["source"] == source).sum())
        rejected = int((rej["source"] == source).sum())
        if accepted + rejected != int(n_found):
            report.fail(
                f"source {source!r}: found {n_found} but accepted {accepted} + rejected {rejected} = "
                f"{accepted + rejected} (items lost or counted twice)"
            )
    unknown = (set(utt["source"]) | set(rej["source"])) - set(found)
    if unknown:
        report.fail(f"sources in manifests but not in the card's found counts: {_examples(sorted(unknown))}")
    report.passed("found = accepted + rejected per source")
    _check_failed_sources(card, utt, found, report)
    leakage = card.get("leakage")
    if isinstance(leakage, dict) and "duplicate_segments_resolved" in leakage:
        n_dup = int((rej["reason"] == "duplicate_segment").sum())
        if int(leakage["duplicate_segments_resolved"]) != n_dup:
            report.fail(f"dataset card counts {leakage['duplicate_segments_resolved']} duplicate segments resolved "
                        f"but rejects.parquet has {n_dup} duplicate_segment rows")


def _release_name(card: dict | None, paths: ReleasePaths) -> str:
    """The name the release was published under (a copied folder may carry another name)."""
    return str((card or {}).get("release") or paths.name)
def _check_failed_sources(card: dict, utt: pd.DataFrame, found: dict[str, int], report: ValidationReport) -> None:
    """A source that accepted nothing is a failed build unless the spec allowed it (its guard fired as a
    warning, run.allow_failed_sources); either way validate says so."""
    allowed = set(((card.get("spec") or {}).get("run") or {}).get("allow_failed_sources") or [])
    empty = sorted(name for name in found if not (utt["source"] == name).any())
    for name in empty:
        if name in allowed:
            report.passed(f"source {name!r} accepted 0 of {found[name]} found items (allowed by "
                          "run.allow_failed_sources)")
        else:
            report.fail(f"source {name!r} accepted 0 of {found[name]} found items (a failed source; the build "
                        "should have stopped: see run.allow_failed_sources in docs/spec.md)")


def _found_per_source(card: dict) -> dict[str, int]:
    """Found counts per source from the card (`counts.sources.<name>.found`)."""
    sources = (card.get("counts") or {}).get("sources") or {}
    return {name: int(c["found"]) for name, c in sources.items() if isinstance(c, dict) and c.get("found") is not None}


def _check_unique(df: pd.DataFrame, column: str, name: str, report: ValidationReport) -> None:
    dup = df[column][df[column].duplicated()]
    if len(dup):
        report.fail(f"{name}.{column} not unique: {_examples(sorted(set(dup)))}")
    if df[column].isna().any():
        report.fail(f"{name}.{column} has {int(df[column].isna().sum())} null values")


def _check_values(df: pd.DataFrame, column: str, allowed: tuple[str, ...], name: str, report: ValidationReport,
                  nullable: bool = False) -> None:
    values = df[column]
    bad = values[~values.isin(allowed) & ~(values.isna() if nullable else False)]
    if len(bad):
        report.fail(f"{name}.{column} has values outside {list(allowed)}: {_examples(sorted(set(map(str, bad))))}")


def _stratified_sources(spec: dict) -> set[str]:
    """Sources the card's spec splits per utterance (`split_policy: utterance_stratified`)."""
    return {str(s.get("name")) for s in spec.get("sources") or []
            if isinstance(s, dict) and s.get("split_policy") == "utterance_stratified"}


def _check_utterances(utt: pd.DataFrame, report: ValidationReport, spec: dict | None = None) -> None:
    _check_unique(utt, "utterance_id", UTTERANCES, report)
    _check_values(utt, "sentiment", SENTIMENTS, UTTERANCES, report)
    _check_values(utt, "split", SPLITS, UTTERANCES, report)
    bad_dur = utt[~(utt["duration_s"] > 0)]
    if len(bad_dur):
        report.fail(f"utterances with non-positive duration_s: {_examples(bad_dur['utterance_id'])}")
    # Leakage: the same audio segment in two splits.
    per_key = utt.groupby("segment_key")["split"].nunique()
    leaked = per_key[per_key > 1]
    if len(leaked):
        report.fail(f"segment_key in more than one split (leakage): {_examples(leaked.index)}")
    # Speakers in two splits, except where a corpus's official splits put them there.
    with_spk = utt[utt["speaker_id"].notna()]
    if "split_origin" in utt.columns:
        with_spk = with_spk[with_spk["split_origin"] != "official"]
        # Utterance-level splits share speakers by design, but only for sources the spec puts under
        # that policy (docs/balance-and-splits.md); anywhere else a `stratified` row is a leak.
        allowed = _stratified_sources(spec or {})
        stray = utt[(utt["split_origin"] == "stratified") & ~utt["source"].isin(allowed)]
        if len(stray):
            report.fail(f"utterances split per utterance (split_origin stratified) from sources not under "
                        f"split_policy utterance_stratified: {_examples(stray['utterance_id'])}")
        with_spk = with_spk[~((with_spk["split_origin"] == "stratified") & with_spk["source"].isin(allowed))]
    spk = with_spk.assign(_k=with_spk["source"] + "/" + with_spk["speaker_id"]).groupby("_k")["split"].nunique()
    shared = spk[spk > 1]
    if len(shared):
        report.fail(f"speakers in more than one split: {_examples(shared.index)}")
    report.passed("utterance ids unique; no segment or speaker leakage between splits")


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
    utt_ids = set(tables[UTTERANCES]["utterance_id"])
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        df = tables[name]
        _check_unique(df, "row_id", name, report)
        _check_values(df, "split", SPLITS, name, report)
        _check_values(df, "sentiment", SENTIMENTS, name, report, nullable=(name == CLASSIFIER_STAGE))
        # Identity rows (dev/test, or augmentation off) keep speed 1.0 even if the set leaves it out.
        allowed = speeds + [1.0]
        in_set = [any(abs(float(s) - v) < _TOL for v in allowed) for s in df["speed"]]
        bad_speed = df[[not ok for ok in in_set]]
        if len(bad_speed):
            report.fail(f"{name}: speed outside {speeds}: rows {_examples(bad_speed['row_id'])}")
        snr = df["snr_db"].dropna()
        bad_snr = snr[(snr < snr_lo - _TOL) | (snr > snr_hi + _TOL)]
        if len(bad_snr):
            report.fail(f"{name}: snr_db outside [{snr_lo}, {snr_hi}]: rows {_examples(df.loc[bad_snr.index, 'row_id'])}")
        augmented = (df["speed"].sub(1.0).abs() > _TOL) | df["rir_id"].notna() | df["noise_id"].notna()
        leaking = df[augmented & ~df["split"].isin(aug_splits)]
        if len(leaking):
            report.fail(f"{name}: augmentation on splits not configured for it ({sorted(aug_splits)}): "
                        f"rows {_examples(leaking['row_id'])}")
        speech_rows = df[df["sentiment"].notna()] if name == CLASSIFIER_STAGE else df
        orphans = speech_rows[~speech_rows["utterance_id"].isin(utt_ids)]
        if len(orphans):
            report.fail(f"{name}: rows whose utterance_id is not in utterances: {_examples(orphans['row_id'])}")
        # Stage rows must agree with their utterance's split (no leakage through the stages).
        split_of = tables[UTTERANCES].set_index("utterance_id")["split"]
        known = speech_rows[speech_rows["utterance_id"].isin(utt_ids)]
        mismatch = known[known["split"].to_numpy() != split_of.reindex(known["utterance_id"]).to_numpy()]
        if len(mismatch):
            report.fail(f"{name}: rows in another split than their utterance: {_examples(mismatch['row_id'])}")
    report.passed("stage rows unique, speeds and SNRs in range, augmentation only on configured splits")


def _check_asr(asr: pd.DataFrame, utt: pd.DataFrame, spec: dict, report: ValidationReport) -> None:
    transcripts = utt.set_index("utterance_id")["transcript"]
    expected = asr["sentiment"].str.capitalize() + " " + transcripts.reindex(asr["utterance_id"]).to_numpy()
    wrong = asr[asr["target_text"].to_numpy() != expected.to_numpy()]
    if len(wrong):
        report.fail(f"asr_stage.target_text is not '<Sentiment> <transcript>' for rows {_examples(wrong['row_id'])}")
    balance = spec.get("balance") or {}
    balanced_splits = balance.get("splits", ["train"])
    for split in balanced_splits:
        counts = asr[asr["split"] == split]["sentiment"].value_counts()
        if len(counts) and counts.max() != counts.min():
            report.fail(f"asr_stage {split} split is not uniform over sentiment: {counts.to_dict()}")
    report.passed("ASR targets well formed; balanced splits uniform")


def _segment_settings(spec: dict) -> tuple[float, float, float]:
    seg = spec.get("segments") or {}
    return (float(seg.get("window_s", 5.0)), float(seg.get("hop_s", 2.5)), float(seg.get("min_last_window_s", 1.0)))


def _check_windows(clf: pd.DataFrame, spec: dict, report: ValidationReport) -> None:
    """Each utterance's windows are exactly `rules.window_bounds` of its length in utterance time."""
    if clf.empty:
        return
    window, hop, min_last = _segment_settings(spec)
    keys = ["utterance_id", "audio_uri", "offset_s", "duration_s", "speed", "recipe_applied"]
    frame = clf[keys + ["row_id", "start_s", "end_s", "valid_s"]].copy()
    frame["offset_s"] = frame["offset_s"].fillna(0.0)
    frame["speed"] = frame["speed"].fillna(1.0)
    frame["recipe_applied"] = frame["recipe_applied"].fillna(False).astype(bool)
    frame["audio_uri"] = frame["audio_uri"].fillna("")
    bad: list[str] = []
    no_length = frame[~(frame["duration_s"] > 0) | ~(frame["speed"] > 0)]
    if len(no_length):
        report.fail(f"classifier_stage rows without a positive duration_s/speed (the cut in audio_uri's time): "
                    f"{_examples(no_length['row_id'])}")
        frame = frame.drop(index=no_length.index)
    for (uid, _uri, _off, dur, speed, applied), grp in frame.groupby(keys, sort=True, dropna=False):
        actual = sorted(zip(grp["start_s"], grp["end_s"], grp["valid_s"], strict=True))
        # A noise example's duration_s is its own cut (no resampling), so the plain length counts too.
        lengths = {rules.utterance_duration(float(dur), float(speed), applied), float(dur) / float(speed)}
        if not any(_same_windows(actual, rules.window_bounds(d, window, hop, min_last)) for d in lengths):
            want = rules.window_bounds(min(lengths), window, hop, min_last)
            bad.append(f"{uid} ({len(actual)} windows {_fmt_windows(actual)}, expected {len(want)} "
                       f"{_fmt_windows(want)} for {min(lengths):.3f} s)")
    if bad:
        report.fail(
            f"classifier_stage windows do not follow the window rule (window {window:g} s every {hop:g} s, "
            f"last window if the tail is >= {min_last:g} s, one padded window when shorter): {_examples(bad)}"
        )
    else:
        report.passed("every utterance's windows follow the window rule (geometry, last window, valid_s)")


def _same_windows(actual: list[tuple[float, float, float]], expected: list[tuple[float, float, float]]) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - b) <= _GEOMETRY_TOL for x, y in zip(actual, expected, strict=True) for a, b in zip(x, y, strict=True)
    )


def _fmt_windows(windows: list[tuple[float, float, float]]) -> str:
    shown = ", ".join(f"{s:g}-{e:g}/{v:g}" for s, e, v in windows[:4])
    return f"[{shown}{', ...' if len(windows) > 4 else ''}]"


def _stage_rules(spec: dict, stage: str) -> dict[str, dict[str, list[str]]]:
    """{split: {origin field: allowed values}} from the card's `eligibility.<stage>` (null = any)."""
    out: dict[str, dict[str, list[str]]] = {}
    for split, rule in ((spec.get("eligibility") or {}).get(stage) or {}).items():
        if isinstance(rule, list):
            rule = {"sentiment_origin": rule}
        out[str(split)] = {f: list(rule[f]) for f in ORIGIN_FIELDS if isinstance(rule, dict) and rule.get(f)}
    return out


def _eligible(utt: pd.DataFrame, spec: dict, stage: str) -> pd.Series:
    """Utterances the stage may use under the eligibility rules (a null origin never matches)."""
    ok = pd.Series(True, index=utt.index, dtype=bool)
    for split, fields in _stage_rules(spec, stage).items():
        for field_name, allowed in fields.items():
            ok &= ~((utt["split"] == split) & ~utt[field_name].isin(allowed))
    # Transcripts flagged as holding PII are kept out of the ASR stage under pii.asr_policy exclude.
    if stage == "asr" and "pii_detected" in utt.columns and (spec.get("pii") or {}).get("asr_policy") == "exclude":
        ok &= ~utt["pii_detected"].fillna(False).astype(bool)
    return ok & _plausible(utt, spec, stage)


def _plausible(utt: pd.DataFrame, spec: dict, stage: str) -> pd.Series:
    """Utterances inside the card spec's `plausibility` limits for the stage (tasks/plan/plausibility.py's rules).

    A release built before the limits existed has no `plausibility` in its spec: nothing is excluded.
    """
    ok = pd.Series(True, index=utt.index, dtype=bool)
    limits = spec.get("plausibility")
    if not isinstance(limits, dict) or utt.empty:
        return ok
    duration = pd.to_numeric(utt["duration_s"], errors="coerce")
    bounds = limits.get(stage) or {}
    if bounds.get("min_duration_s") is not None:
        ok &= ~(duration < float(bounds["min_duration_s"]))
    if bounds.get("max_duration_s") is not None:
        ok &= ~(duration > float(bounds["max_duration_s"]))
    if stage == "asr" and "transcript" in utt.columns:
        chars = utt["transcript"].map(lambda t: None if not isinstance(t, str) else len("".join(t.split())))
        rate = pd.to_numeric(chars, errors="coerce") / duration.where(duration > 0)
        if limits.get("min_chars_per_s") is not None:
            ok &= ~(rate < float(limits["min_chars_per_s"]))
        if limits.get("max_chars_per_s") is not None:
            ok &= ~(rate > float(limits["max_chars_per_s"]))
    hal = ((spec.get("labelers") or {}).get("whisper") or {}).get("hallucination") or {}
    if hal.get("policy") in ("reject", "exclude") and "transcript_origin" in utt.columns:
        def num(col: str) -> pd.Series:
            return pd.to_numeric(utt[col], errors="coerce") if col in utt.columns else pd.Series(float("nan"), index=utt.index)
        bad = ((num("transcript_confidence") < float(hal["min_word_probability"]))
               | (num("avg_logprob") < float(hal["min_avg_logprob"]))
               | (num("no_speech_prob") > float(hal["max_no_speech_prob"]))
               | (num("compression_ratio") > float(hal["max_compression_ratio"])))
        bad &= utt["transcript_origin"] == "whisper"
        if stage == "classifier":
            bad &= ~utt["sentiment_origin"].isin(["human", "mapped_emotion"])
        ok &= ~bad
    return ok


def _check_plausibility(tables: dict[str, pd.DataFrame], spec: dict, report: ValidationReport) -> None:
    """No stage row may use an utterance outside the spec's duration/speaking-rate limits."""
    utt = tables[UTTERANCES]
    for stage, name in (("asr", ASR_STAGE), ("classifier", CLASSIFIER_STAGE)):
        outside = set(utt.loc[~_plausible(utt, spec, stage), "utterance_id"])
        bad = tables[name][tables[name]["utterance_id"].isin(outside)]
        if len(bad):
            report.fail(f"{name}: rows of utterances outside the plausibility limits for the {stage} stage: "
                        f"{_examples(bad['row_id'])}")
    report.passed("stage rows respect the duration and speaking-rate limits")


def _check_eligibility(tables: dict[str, pd.DataFrame], spec: dict, report: ValidationReport) -> None:
    utt = tables[UTTERANCES].set_index("utterance_id")
    for stage, name in (("asr", ASR_STAGE), ("classifier", CLASSIFIER_STAGE)):
        df = tables[name]
        df = df[df["utterance_id"].isin(utt.index)]  # noise examples have no utterance (and no sentiment)
        for split, fields in sorted(_stage_rules(spec, stage).items()):
            rows = df[df["split"] == split]
            for field_name, allowed in fields.items():
                origin = utt[field_name].reindex(rows["utterance_id"]).to_numpy()
                bad = rows[~pd.Series(origin, index=rows.index).isin(allowed)]
                if len(bad):
                    report.fail(
                        f"{name}: {len(bad)} {split} rows use {field_name} outside eligibility.{stage}.{split} "
                        f"{allowed}: rows {_examples(bad['row_id'])}"
                    )
    report.passed("stage rows use only the label origins their stage and split allow")


def _check_asr_balance(asr: pd.DataFrame, utt: pd.DataFrame, spec: dict, report: ValidationReport) -> None:
    """Balanced splits: the method's per-class count, the source cap, distinct repeats; others natural."""
    balance = spec.get("balance") or {}
    balanced = set(balance.get("splits", ["train"]))
    method = balance.get("method", "undersample")
    share = float(balance.get("max_source_share", 1.0))
    pool = utt[_eligible(utt, spec, "asr") & utt["sentiment"].isin(SENTIMENTS)]
    if "transcript" in pool.columns and (spec.get("labelers") or {}).get("transcripts") == "none":
        pool = pool[pool["transcript"].notna()]
    for split in SPLITS:
        rows = asr[asr["split"] == split]
        avail = pool[pool["split"] == split]
        if split not in balanced:
            per_utt = rows["utterance_id"].value_counts()
            repeated = per_utt[per_utt > 1]
            missing = sorted(set(avail["utterance_id"]) - set(rows["utterance_id"]))
            if len(repeated) or missing:
                report.fail(
                    f"asr_stage {split} split is not balanced, so it must hold every eligible utterance once "
                    f"(natural distribution): repeated {_examples(repeated.index)}; missing {_examples(missing)}"
                )
            continue
        present = {c: int(n) for c, n in avail["sentiment"].value_counts().items() if n > 0}
        counts = {c: int((rows["sentiment"] == c).sum()) for c in SENTIMENTS}
        if balance.get("on_missing_class") == "error" and len(rows) and len(present) < len(SENTIMENTS):
            report.fail(f"asr_stage {split}: classes {[c for c in SENTIMENTS if c not in present]} are empty but "
                        f"balance.on_missing_class is error")
        if not present:
            continue
        target = {"undersample": min(present.values()), "oversample": max(present.values())}.get(
            method, balance.get("target_per_class"))
        off = {c: counts[c] for c in present if target is not None and counts[c] != int(target)}
        if off:
            report.fail(f"asr_stage {split}: balance.method {method} means {target} rows per class "
                        f"(eligible: {present}); found {counts}")
        _check_source_cap(rows, avail, split, share, report)
        _check_distinct_repeats(rows, split, report)


def _check_source_cap(rows: pd.DataFrame, avail: pd.DataFrame, split: str, share: float,
                      report: ValidationReport) -> None:
    """A source above the cap is allowed only when every other source gave all it had."""
    if share >= 1.0:
        return
    for cls, part in rows.groupby("sentiment"):
        cap = rules.source_cap(len(part), share)
        distinct = part.groupby("source")["utterance_id"].nunique()
        have = avail[avail["sentiment"] == cls].groupby("source")["utterance_id"].nunique()
        for source, n in distinct.items():
            if n <= cap:
                continue
            short = [s for s in have.index if s != source and int(distinct.get(s, 0)) < int(have[s])]
            if short:
                report.fail(f"asr_stage {split} {cls}: source {source} gives {n} utterances, above max_source_share "
                            f"{share:g} (cap {cap}) while {_examples(short)} had unused eligible items")


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


def _check_classifier(clf: pd.DataFrame, spec: dict, report: ValidationReport) -> None:
    seg = spec.get("segments") or {}
    window = float(seg.get("window_s", 5.0))
    length = clf["end_s"] - clf["start_s"]
    bad_len = clf[(length - window).abs() > 1e-3]
    if len(bad_len):
        report.fail(f"classifier_stage windows not {window} s long: rows {_examples(bad_len['row_id'])}")
    bad_valid = clf[(clf["valid_s"] > window + 1e-3) | (clf["valid_s"] <= 0)]
    if len(bad_valid):
        report.fail(f"classifier_stage valid_s outside (0, {window}]: rows {_examples(bad_valid['row_id'])}")
    padded = clf[(clf["valid_s"] < window - 1e-3) & (clf["start_s"].abs() > 1e-6)]
    if len(padded):
        report.fail(f"classifier_stage padded windows must start at 0 (short utterances only): {_examples(padded['row_id'])}")
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
    weights = spec.get("weights") or {}
    power = float(weights.get("power", 1.0))
    max_weight = weights.get("max_weight")
    for split, part in speech.groupby("split"):
        freq = part["sentiment"].map(part["sentiment"].value_counts(normalize=True))
        mean_w = part["class_weight"].mean()
        if abs(mean_w - 1.0) > 1e-6:
            report.fail(f"classifier_stage {split}: mean class_weight over speech windows is {mean_w:.6f}, not 1")
        if max_weight is None:
            product = part["class_weight"] * freq.pow(power)
            if product.max() - product.min() > 1e-6 * max(1.0, product.max()):
                report.fail(
                    f"classifier_stage {split}: class_weight x frequency^{power:g} is not constant "
                    f"(range {product.min():.6f}..{product.max():.6f})"
                )
        per_class = part.groupby("sentiment")["class_weight"].nunique()
        if (per_class > 1).any():
            report.fail(f"classifier_stage {split}: several class_weight values within one class")
        if any(math.isnan(w) for w in part["class_weight"]):
            report.fail(f"classifier_stage {split}: NaN class_weight")
        counts = {str(c): int(n) for c, n in part["sentiment"].value_counts().items()}
        expected = rules.class_weights(counts, power, None if max_weight is None else float(max_weight))
        rule = f"(1/frequency)^{power:g}" + ("" if max_weight is None else f" capped at {float(max_weight):g}")
        for cls, want in sorted(expected.items()):
            got = part.loc[part["sentiment"] == cls, "class_weight"]
            worst = float((got - want).abs().max())
            if worst > 1e-6 * max(1.0, want):
                report.fail(
                    f"classifier_stage {split}: class_weight of {cls} windows is {float(got.iloc[0]):.6f}, the rule "
                    f"{rule} with mean 1 over {sum(counts.values())} speech windows gives {want:.6f}"
                )
    report.passed("speech presence and class weights follow the contract")
