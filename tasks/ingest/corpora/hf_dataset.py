"""Hugging Face `datasets` data: a `save_to_disk` folder (Dataset or DatasetDict) or Parquet files.

Layouts, checked in this order at `path`:
- `dataset_dict.json` -> a DatasetDict saved with `save_to_disk`; its split names become splits.
- `state.json` (+ `dataset_info.json`) -> one Dataset saved with `save_to_disk`.
- `*.parquet` files below `path` (or `path` itself a .parquet file), e.g. the Hub's
  `data/train-00000-of-00001.parquet`; a path part or file-name prefix `train`/`validation`/`test`
  gives the split.

The audio column is `columns.audio`, else the one `Audio` feature. It is never decoded by `datasets`
(its decoder needs torchcodec, which we do not install): save_to_disk data is cast to
`Audio(decode=False)` and Parquet is read with pyarrow, so each row gives `{bytes, path}`. Audio is the
file at `path` when it exists inside the source folder (relative, or absolute below it or below a
folder of option `audio_roots`; absolute paths anywhere with `allow_absolute_paths: true`, e.g. Parquet written locally by
`Dataset.to_parquet`; a path leaving the folder without embedded bytes is an `unsafe_path` reject), else
the embedded `bytes`, written once to a content-addressed cache `<audio_cache>/<sha[:2]>/<sha>.<ext>`
(default `<source path>/.voicetone-audio/`, a local folder or S3 prefix; option `audio_cache`), and
`audio_uri` points there so every later stage reads it like any other file.

Other columns are mapped by `options.columns` (role -> column): transcript, sentiment, emotion,
speaker_id, gender, age, accent, language, split, emotion_intensity, license, offset_s, duration_s,
id. Integer labels are named by `options.label_names` ({0: negative, ...} for the sentiment column,
or the emotion column when no sentiment column is mapped; or per role: {sentiment: {...}, emotion:
{...}}), else by the column's ClassLabel names. Split: `options.split` for every row, else the split
column, else the DatasetDict key / Parquet file name, else null (assigned by speaker later).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    RowReject,
    build_result,
    check_options,
    corpus_root,
    ingest_reject,
    is_corpus_folder,
    layout_checkpoint,
    layout_error,
)
from tasks.ingest.corpora.hf_audio import AudioResolver, is_dataset_folder
from tasks.ingest.corpora.labels import (
    LabelError,
    age_bucket,
    is_blank,
    map_emotion,
    normalize_gender,
    normalize_sentiment,
    unmapped_emotion_detail,
)
from tasks.ingest.corpora.paths import (
    audio_roots_option,
    relative_path,
)
from tasks.spec import SourceSpec

KIND = "hf_dataset"
ROLES: tuple[str, ...] = (
    "audio", "id", "transcript", "sentiment", "emotion", "speaker_id", "gender", "age", "accent",
    "language", "split", "emotion_intensity", "license", "offset_s", "duration_s",
)
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev",
    "test": "test", "testing": "test",
}
DEFAULT_CACHE = ".voicetone-audio"
BATCH_ROWS = 256
OPTIONS: dict[str, type] = {"columns": dict, "label_names": dict, "split": str, "audio_cache": str,
                             "allow_absolute_paths": bool, "audio_roots": list}
@dataclass
class _Part:
    """One table to read: a DatasetDict split, the single Dataset, or one Parquet file."""

    name: str  # "" for a single Dataset
    split_hint: str | None
    features: Any  # datasets.Features
    batches: Iterator[list[dict[str, Any]]]
    license: str | None = None


@dataclass
class _Config:
    columns: dict[str, str]
    label_names: dict[str, dict[str, str]] = field(default_factory=dict)
    split: str | None = None
    cache: str = ""
    allow_absolute: bool = False  # read absolute paths outside the root (trusted, locally written Parquet)
    audio_roots: tuple[str, ...] = ()  # declared folders whose files absolute paths may name


# ------------------------------------------------------------------------------------------ options
def _config(source: SourceSpec, root: str) -> _Config:
    options = check_options(source, OPTIONS)
    columns = {str(k): v for k, v in options.get("columns", {}).items()}
    bad = sorted(set(columns) - set(ROLES))
    if bad:
        raise ValueError(f"source {source.name!r} (hf_dataset): unknown column role(s) {', '.join(bad)}; "
                         f"allowed: {', '.join(ROLES)}")
    if not all(isinstance(v, str) and v for v in columns.values()):
        raise ValueError(f"source {source.name!r} (hf_dataset): options.columns values must be column names")
    names = options.get("label_names", {})
    if names and all(isinstance(v, dict) for v in names.values()):
        nested = {str(role): {str(k): str(v) for k, v in table.items()} for role, table in names.items()}
        unknown = sorted(set(nested) - {"sentiment", "emotion", "gender"})
        if unknown:
            raise ValueError(f"source {source.name!r} (hf_dataset): label_names for {', '.join(unknown)}; "
                             "only sentiment, emotion and gender take label names")
    else:
        role = "sentiment" if "sentiment" in columns or "emotion" not in columns else "emotion"
        nested = {role: {str(k): str(v) for k, v in names.items()}} if names else {}
    split = options.get("split")
    if split is not None:
        if split.strip().lower() not in SPLIT_ALIASES:
            raise ValueError(f"source {source.name!r} (hf_dataset): option split {split!r} is not train, dev or test")
        split = SPLIT_ALIASES[split.strip().lower()]
    cache = options.get("audio_cache") or fs.join(root if is_dataset_folder(root) else fs.parent(root), DEFAULT_CACHE)
    return _Config(columns, nested, split, cache.rstrip("/"), bool(options.get("allow_absolute_paths", False)),
                   audio_roots_option(source))


def _split_of(name: str) -> str | None:
    """train/dev/test for a split name such as `validation`, `train.clean.100` or `test-00000-of-00002`."""
    match = re.match(r"[a-z]+", name.lower())
    return SPLIT_ALIASES.get(match.group(0)) if match else None


# ------------------------------------------------------------------------------------------- layouts
def _arrow_parts(local: str) -> list[_Part]:
    """Parts of a save_to_disk folder, with the audio column left undecoded."""
    import datasets

    loaded = datasets.load_from_disk(local)  # memory-maps the arrow files; casts below only change features
    tables = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    parts = []
    for name, ds in tables:
        for col, feature in ds.features.items():
            if isinstance(feature, datasets.Audio):
                ds = ds.cast_column(col, datasets.Audio(decode=False))
        rows = (_batch_rows(batch) for batch in ds.iter(batch_size=BATCH_ROWS))
        info_license = (getattr(ds.info, "license", None) or "").strip() or None
        parts.append(_Part(name, _split_of(name) if name else None, ds.features, rows, info_license))
    return parts


def _batch_rows(batch: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [dict(zip(keys, values, strict=True)) for values in zip(*(batch[k] for k in keys), strict=True)]


def _parquet_part(local: str, name: str) -> _Part:
    """One local Parquet file read in record batches with pyarrow (no datasets decoding, no cache copy)."""
    import datasets
    import pyarrow.parquet as pq

    def batches() -> Iterator[list[dict[str, Any]]]:
        for batch in pq.ParquetFile(local).iter_batches(batch_size=BATCH_ROWS):
            yield batch.to_pylist()

    features = datasets.Features.from_arrow_schema(pq.read_schema(local))
    hint = next((s for s in (_split_of(p) for p in reversed(name.split("/"))) if s), None)
    return _Part(name, hint, features, batches())


def _download_folder(root: str, files: list[str], target: str) -> None:
    for uri in files:
        rel = relative_path(root, uri) if is_dataset_folder(root) else fs.basename(uri)
        dest = os.path.join(target, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as fh:
            fh.write(fs.read_bytes(uri))


# --------------------------------------------------------------------------------------------- audio
def _audio_column(features: Any, config: _Config, part: str) -> str:
    import datasets

    if "audio" in config.columns:
        return config.columns["audio"]
    found = [c for c, f in features.items() if isinstance(f, datasets.Audio)]
    if len(found) != 1:
        what = "no Audio column" if not found else f"several Audio columns ({', '.join(found)})"
        raise ValueError(f"hf_dataset part {part or '(dataset)'} has {what}; set options.columns.audio "
                         f"(columns: {', '.join(features)})")
    return found[0]


# -------------------------------------------------------------------------------------------- labels
def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _named(role: str, value: Any, features: Any, config: _Config) -> Any:
    """A label value with integer codes replaced by label_names / ClassLabel names."""
    import datasets

    if value is None or isinstance(value, bool):
        return value
    table = config.label_names.get(role)
    if table is not None and str(value) in table:
        return table[str(value)]
    feature = features.get(config.columns.get(role, ""))
    if isinstance(value, int) and isinstance(feature, datasets.ClassLabel):
        if 0 <= value < feature.num_classes:
            return feature.int2str(value)
    if isinstance(value, int) and role in ("sentiment", "emotion"):
        raise RowReject("unmapped_label", f"{role} {value!r} (column {config.columns[role]!r}) has no name; "
                                           f"add it to options.label_names of the source")
    return value


def _seconds(value: Any, role: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise RowReject("malformed_metadata", f"{role} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise RowReject("malformed_metadata", f"{role} {value!r} is not a finite number of seconds")
    return seconds


def _labels(row: dict[str, Any], part: _Part, config: _Config, source: SourceSpec, default_language: str,
            item: str) -> dict[str, Any]:
    def get(role: str) -> Any:
        column = config.columns.get(role)
        return None if column is None else _named(role, row.get(column), part.features, config)

    try:
        sentiment = normalize_sentiment(get("sentiment"))
    except LabelError as err:
        raise RowReject(err.reason, str(err)) from None
    emotion = _text(get("emotion"))
    origin = "human" if sentiment is not None else None
    if sentiment is None and emotion is not None:
        sentiment = map_emotion(emotion, source.emotion_map)
        if sentiment is None:
            raise RowReject("unmapped_label", unmapped_emotion_detail(emotion, source.name, item))
        origin = "mapped_emotion"
    split = config.split
    if split is None and "split" in config.columns:
        raw = _text(get("split"))
        split = None if raw is None else SPLIT_ALIASES.get(raw.lower())
        if raw is not None and split is None:
            raise RowReject("malformed_metadata", f"split {raw!r} is not train, dev or test")
    transcript = get("transcript")
    transcript = None if is_blank(transcript) else str(transcript)
    age = _text(get("age"))
    return {
        "transcript_raw": transcript,
        "transcript_origin": "human" if transcript is not None else None,
        "sentiment": sentiment,
        "sentiment_origin": origin,
        "emotion": emotion,
        "emotion_intensity": _text(get("emotion_intensity")),
        "speaker_id": _text(get("speaker_id")),
        "gender": normalize_gender(_text(get("gender"))),
        "age": age,
        "age_bucket": age_bucket(age),
        "accent": _text(get("accent")),
        "language": _text(get("language")) or source.language or default_language,
        "license": _text(get("license")) or source.license or part.license,
        "split": split if split is not None or "split" in config.columns else part.split_hint,
    }


# ------------------------------------------------------------------------------------------- adapter
def _parts(root: str, files: list[str], scratch: str) -> list[_Part]:
    """The tables at `root`; S3 data is first copied to `scratch` (arrow files are memory-mapped)."""
    names = {relative_path(root, f) for f in files} if is_dataset_folder(root) else set()
    arrow = "dataset_dict.json" in names or "state.json" in names
    wanted = [f for f in files if arrow != f.lower().endswith(".parquet")]
    local_root = root
    if fs.is_s3(root):
        _download_folder(root, wanted, scratch)
        local_root = scratch
    if arrow:
        return _arrow_parts(local_root)
    parts = []
    for uri in wanted:
        name = relative_path(root, uri) if is_dataset_folder(root) else fs.basename(uri)
        local = os.path.join(local_root, *name.split("/")) if fs.is_s3(root) else uri
        parts.append(_parquet_part(local, name[: -len(".parquet")]))
    return parts


def ingest_hf_dataset(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a saved Hugging Face dataset or Parquet files with an Audio column (see module doc)."""
    root = corpus_root(source)
    config = _config(source, root)
    if not is_dataset_folder(root):
        files = [root] if fs.exists(root) else []
    elif is_corpus_folder(root):
        files = [f for f in fs.list_files(root) if f"/{DEFAULT_CACHE}/" not in f]
    else:
        files = []
    candidates: list[Candidate] = []
    rejects: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="voicetone-hf-") as scratch:
        parts = _parts(root, files, scratch)
        if not parts:
            raise layout_error(source, "a save_to_disk folder (dataset_dict.json or state.json + dataset_info.json) "
                               "or .parquet files with an Audio column", "neither", files)
        # A column absent from some parts (e.g. labels of a blind test split) is null there; absent from
        # all of them it is a typo.
        known = {c for part in parts for c in part.features}
        missing = sorted({c for c in config.columns.values() if c not in known})
        if missing:
            raise ValueError(f"source {source.name!r} (hf_dataset): options.columns names column(s) "
                             f"{', '.join(missing)} that the dataset does not have (columns: {', '.join(sorted(known))})")
        layout_checkpoint()  # pre-flight stops here: the resolver below writes the audio cache
        resolve = AudioResolver(root, config.cache, set(files), config.allow_absolute, config.audio_roots)
        multi = len(parts) > 1
        for part in parts:
            audio_col = _audio_column(part.features, config, part.name)
            index = 0
            for batch in part.batches:
                for row in batch:
                    where = f"{part.name}:{index}" if part.name else str(index)
                    ref = f"{source.path.rstrip('/')}#{where}"
                    index += 1
                    try:
                        id_value = _text(row.get(config.columns["id"])) if "id" in config.columns else None
                        native = (id_value or where.replace(":", "/")) if not (multi and id_value) else \
                            f"{part.name}/{id_value}"
                        labels = _labels(row, part, config, source, default_language, ref)
                        offset = _seconds(row.get(config.columns.get("offset_s", "")), "offset_s")
                        duration = _seconds(row.get(config.columns.get("duration_s", "")), "duration_s")
                        uri = resolve(row.get(audio_col))
                    except RowReject as rej:
                        rejects.append(ingest_reject(source, ref, rej.reason, f"{ref}: {rej.detail}"))
                        continue
                    if offset is not None:
                        native += f"@{offset:.3f}".rstrip("0").rstrip(".")
                    candidates.append(Candidate(native, uri, ref, labels, offset, duration))
    return build_result(source, candidates, rejects)
