"""SLUE-VoxCeleb: `slue-voxceleb_<split>.tsv` rows cropping `<split>_raw/<id>.flac`.

Layout of the SLUE release (as `slue-toolkit`'s prepare_voxceleb.py reads it):
`slue-voxceleb_fine-tune.tsv` and `slue-voxceleb_dev.tsv` with columns `id normalized_text speaker_id
split sentiment start_second end_second` (tab-separated, unquoted), audio `fine-tune_raw/<id>.flac`
and `dev_raw/<id>.flac`, each row the crop [start_second, end_second]. `slue-voxceleb_test_blind.tsv`
(no text, no sentiment; audio `test_raw/`) is ingested unlabelled when present, or
`slue-voxceleb_test.tsv` when a labelled test file is present instead. fine-tune -> train, dev -> dev,
test -> test; transcripts (normalized_text) and sentiment are human labels.

Sentiment is Negative/Neutral/Positive plus two non-labels: `<mixed>` (annotators saw both) and
`Disagreement`. The toolkit drops them; this adapter does too by default (unmapped_label rejects).
Option `mixed_policy` maps them instead: a string (`reject` | `negative` | `neutral` | `positive`)
for both, or a mapping such as `{"<mixed>": neutral, Disagreement: reject}`.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from manifests import uri as fs
from manifests.schema import SENTIMENTS
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    RowReject,
    build_result,
    check_options,
    corpus_root,
    ingest_reject,
    is_corpus_folder,
    layout_error,
)
from tasks.ingest.corpora.labels import LabelError, is_blank, normalize_sentiment
from tasks.ingest.corpora.paths import UnsafePathError, safe_relative_path
from tasks.spec import SourceSpec

KIND = "slue_voxceleb"
LICENSE = "CC-BY-4.0"
LANGUAGE = "en"
# (tsv file, audio folder, our split), in reading order; the blind test file is the fallback for test.
SPLIT_FILES: tuple[tuple[str, str, str], ...] = (
    ("slue-voxceleb_fine-tune.tsv", "fine-tune_raw", "train"),
    ("slue-voxceleb_dev.tsv", "dev_raw", "dev"),
    ("slue-voxceleb_test.tsv", "test_raw", "test"),
    ("slue-voxceleb_test_blind.tsv", "test_raw", "test"),
)
MIXED_LABELS: tuple[str, ...] = ("<mixed>", "Disagreement")
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "start_second", "end_second")
OPTIONS: dict[str, type] = {"mixed_policy": object}  # str or mapping, checked in _mixed_policy
_REJECT = "reject"


def _mixed_policy(source: SourceSpec) -> dict[str, str | None]:
    """Native mixed label (lower-case) -> sentiment, or None to reject it."""
    options = check_options(source, OPTIONS)
    policy: Any = options.get("mixed_policy", _REJECT)
    if not isinstance(policy, str | dict):
        raise ValueError(f"source {source.name!r} (slue_voxceleb): option mixed_policy must be a string or a "
                         f"mapping, got {policy!r}")
    table = dict.fromkeys(MIXED_LABELS, policy) if isinstance(policy, str) else dict(policy)
    allowed = (_REJECT, *SENTIMENTS)
    out: dict[str, str | None] = dict.fromkeys((m.lower() for m in MIXED_LABELS), None)
    for label, target in table.items():
        if str(label).lower() not in out:
            raise ValueError(f"source {source.name!r} (slue_voxceleb): mixed_policy names {label!r}; "
                             f"only {', '.join(MIXED_LABELS)} can be mapped")
        if target is not None and target not in allowed:
            raise ValueError(f"source {source.name!r} (slue_voxceleb): mixed_policy for {label!r} is {target!r}; "
                             f"allowed: {', '.join(allowed)}")
        out[str(label).lower()] = None if target in (None, _REJECT) else target
    return out


def _rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of an unquoted TSV; blank lines skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for record in reader:
        if not record or all(not c.strip() for c in record):
            continue
        if header is None:
            header = [c.strip() for c in record]
            continue
        rows.append((reader.line_num, record))
    return header or [], rows


def _seconds(values: dict[str, str], column: str) -> float:
    text = values.get(column, "").strip()
    try:
        value = float(text)
    except ValueError:
        raise RowReject("malformed_metadata", f"{column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise RowReject("malformed_metadata", f"{column} {text!r} is not a time >= 0")
    return value


def _sentiment(value: str | None, policy: dict[str, str | None], source: SourceSpec) -> str | None:
    if is_blank(value):
        return None
    assert value is not None
    key = value.strip().lower()
    if key in policy:
        target = policy[key]
        if target is None:
            raise RowReject("unmapped_label",
                             f"sentiment {value.strip()!r} is not a sentiment (SLUE's annotators disagreed or saw "
                             f"both); set option mixed_policy of source {source.name!r} to map it "
                             "(e.g. mixed_policy: neutral)")
        return target
    try:
        return normalize_sentiment(value)
    except LabelError as err:
        raise RowReject(err.reason, str(err)) from None


def _candidate(values: dict[str, str], split: str, audio_dir: str, source: SourceSpec,
               policy: dict[str, str | None], ref: str) -> Candidate | RowReject:
    utt = values.get("id", "").strip()
    try:
        safe_relative_path(utt, "id")
    except UnsafePathError as err:
        return RowReject(err.reason, str(err))
    if not utt or "/" in utt or "\\" in utt or utt in (".", ".."):
        return RowReject("malformed_metadata", f"id {utt!r} does not name a file")
    try:
        start, end = _seconds(values, "start_second"), _seconds(values, "end_second")
        if end <= start:
            raise RowReject("malformed_metadata", f"end_second {end:g} is not after start_second {start:g}")
        sentiment = _sentiment(values.get("sentiment"), policy, source)
    except RowReject as rej:
        return rej
    text = values.get("normalized_text")
    transcript = None if is_blank(text) else text.strip()  # type: ignore[union-attr]
    speaker = values.get("speaker_id", "").strip() or None
    labels = {
        "transcript_raw": transcript,
        "transcript_origin": "human" if transcript is not None else None,
        "sentiment": sentiment,
        "sentiment_origin": "human" if sentiment is not None else None,
        "speaker_id": speaker,
        "language": LANGUAGE,
        "license": source.license or LICENSE,
        "split": split,
    }
    return Candidate(utt, fs.join(audio_dir, f"{utt}.flac"), ref, labels, start, end - start)


def ingest_slue_voxceleb(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest the SLUE-VoxCeleb folder (the one holding the .tsv files and the *_raw audio folders).

    SLUE-VoxCeleb is English, so `default_language` is not used; the spec's `license` overrides CC-BY-4.0.
    """
    policy = _mixed_policy(source)
    root = corpus_root(source)
    is_folder = is_corpus_folder(root)
    top = fs.list_files(root, recursive=False) if is_folder else []
    present = {fs.basename(f) for f in top}
    chosen: dict[str, tuple[str, str]] = {}
    for name, audio, split in SPLIT_FILES:
        if name in present and split not in chosen:
            chosen[split] = (name, audio)
    if not chosen:
        listing = top if top or not is_folder else fs.list_files(root)
        raise layout_error(source, "slue-voxceleb_fine-tune.tsv / slue-voxceleb_dev.tsv (and *_raw/<id>.flac audio)",
                           "none of those files at the top of the folder", listing)

    candidates: list[Candidate] = []
    rejects: list[dict[str, str]] = []
    for split, (name, audio) in chosen.items():
        tsv = fs.join(root, name)
        try:
            header, rows = _rows(fs.read_text(tsv, encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            rejects.append(ingest_reject(source, tsv, "malformed_metadata",
                                         f"SLUE file {tsv} could not be read ({err}); its rows are unknown"))
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            rejects.append(ingest_reject(source, tsv, "malformed_metadata",
                                         f"SLUE file {tsv} has no column(s) {', '.join(missing)} "
                                         f"(header: {' '.join(header)}); its rows were not read"))
            continue
        audio_dir = fs.join(root, audio)
        for line, fields in rows:
            ref = f"{name}:{line}"
            if len(fields) != len(header):
                rejects.append(ingest_reject(source, ref, "malformed_metadata",
                                             f"{tsv} line {line} has {len(fields)} fields but the header has "
                                             f"{len(header)}"))
                continue
            result = _candidate(dict(zip(header, fields, strict=True)), split, audio_dir, source, policy, ref)
            if isinstance(result, RowReject):
                rejects.append(ingest_reject(source, ref, result.reason, f"{tsv} line {line}: {result.detail}"))
                continue
            candidates.append(result)
    return build_result(source, candidates, rejects)
