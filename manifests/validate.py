"""The contract's validator: `voicetone validate DIR` is `validate_release(DIR)`.

Every check returns problems as sentences that name the file, the rows and the rule, so a failing
release can be fixed without reading this code. The configured values a check needs (window length,
speed set, SNR range, weighting) are read from the card's `spec`, so the validator judges a release
by the settings that built it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

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


def validate_release(uri: str) -> ValidationReport:
    """Check a release (or the LATEST under an output folder) against schema version 1."""
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
    spec = (card or {}).get("spec") or {}
    _check_utterances(tables[UTTERANCES], report)
    _check_rejects(tables[REJECTS], report)
    _check_stage_common(tables, spec, report)
    _check_asr(tables[ASR_STAGE], tables[UTTERANCES], spec, report)
    _check_classifier(tables[CLASSIFIER_STAGE], spec, report)
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
    actual = content_sha256(tables, release_root=paths.root)
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


def _check_utterances(utt: pd.DataFrame, report: ValidationReport) -> None:
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
    report.passed("window geometry, speech presence and class weights follow the contract")
