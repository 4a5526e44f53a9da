"""Checks of the audio files a release publishes (its own `audio/` files), for `validate`.

The manifests name each file inside the release by a release-relative `audio_uri` and record the
sha256 of its bytes in `audio_sha256`, so `content_sha256` covers the audio too. Plain validation
checks what is cheap: every such file exists and is not empty (a 0-byte FLAC left by a crash must
not pass), each URI stays inside the release, and every row carries the hash. `deep` re-reads
every file: its sha256 must equal the manifests' and it must decode.

Files outside the release (source corpora, pools) are not checked here: they are inputs, named by
absolute or s3:// URIs and remapped by `audio_roots` on other machines.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from manifests import uri as fs
from manifests.locations import release_relative, resolve, unsafe_reason
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE

STAGES: tuple[str, ...] = (ASR_STAGE, CLASSIFIER_STAGE)
_MAX_EXAMPLES = 5


@dataclass
class ReleaseFile:
    """One audio file of the release and what the manifests say about it."""

    path: str  # release-relative
    hashes: set[str] = field(default_factory=set)
    rows: list[str] = field(default_factory=list)  # "<stage>:<row_id>" (a few, for messages)
    unhashed: int = 0  # rows naming it without an audio_sha256


def _examples(values: list[str]) -> str:
    shown = ", ".join(values[:_MAX_EXAMPLES])
    return shown + (f" (+{len(values) - _MAX_EXAMPLES} more)" if len(values) > _MAX_EXAMPLES else "")


def release_files(tables: Mapping[str, pd.DataFrame], root: str,
                  release_name: str | None = None) -> tuple[dict[str, ReleaseFile], bool]:
    """The release's own audio files named by the stage tables, and whether the tables carry `audio_sha256`."""
    files: dict[str, ReleaseFile] = {}
    has_hash = all("audio_sha256" in tables[n].columns for n in STAGES if n in tables)
    for name in STAGES:
        df = tables.get(name)
        if df is None or df.empty:
            continue
        applied = df["recipe_applied"].fillna(False).astype(bool).tolist()
        hashes = df["audio_sha256"].tolist() if "audio_sha256" in df.columns else [None] * len(df)
        for uri, done, sha, row_id in zip(df["audio_uri"].tolist(), applied, hashes, df["row_id"].tolist(),
                                          strict=True):
            rel = release_relative(uri, root, release_name, done)
            if rel is None:
                continue
            entry = files.setdefault(rel, ReleaseFile(rel))
            if len(entry.rows) < _MAX_EXAMPLES:
                entry.rows.append(f"{name}:{row_id}")
            if isinstance(sha, str) and sha:
                entry.hashes.add(sha)
            else:
                entry.unhashed += 1
    return files, has_hash


def _sizes(root: str, paths: list[str]) -> dict[str, int | None]:
    """Byte size of each release-relative path (None: missing); one listing for an S3 release."""
    if not fs.is_s3(root):
        out: dict[str, int | None] = {}
        for rel in paths:
            try:
                out[rel] = os.stat(resolve(root, rel)).st_size
            except (FileNotFoundError, NotADirectoryError):
                out[rel] = None
        return out
    bucket, key = fs.split_s3(root)
    prefix = key.rstrip("/") + "/"
    found: dict[str, int] = {}
    for page in fs.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):]] = int(obj["Size"])
    return {rel: found.get(rel) for rel in paths}


def _decode_problem(data: bytes) -> str | None:
    import soundfile as sf

    try:
        audio, _sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors are RuntimeError / LibsndfileError / TypeError
        return f"does not decode ({type(err).__name__}: {err})"
    if audio.shape[0] == 0:
        return "decodes to no samples"
    return None


def check_release_audio(tables: Mapping[str, pd.DataFrame], root: str, release_name: str | None = None,
                        deep: bool = False) -> tuple[list[str], list[str]]:
    """(problems, checks passed) for the release's own audio files; `deep` re-hashes and decodes them."""
    files, has_hash = release_files(tables, root, release_name)
    problems: list[str] = []
    if not files:
        return problems, ["no audio file inside the release to check (every row reads audio outside it)"]
    unsafe = [f"{p!r} ({r})" for p in sorted(files) if (r := unsafe_reason(p))]
    if unsafe:
        problems.append(f"audio_uri values that leave the release folder: {_examples(unsafe)}")
    safe = [p for p in sorted(files) if not unsafe_reason(p)]
    if has_hash:
        missing_hash = [f"{p} (rows {', '.join(files[p].rows)})" for p in safe if files[p].unhashed]
        if missing_hash:
            problems.append(f"rows naming audio inside the release carry no audio_sha256: {_examples(missing_hash)}")
        conflicting = [f"{p} ({sorted(files[p].hashes)})" for p in safe if len(files[p].hashes) > 1]
        if conflicting:
            problems.append(f"one audio file with several audio_sha256 values: {_examples(conflicting)}")
    sizes = _sizes(root, safe)
    absent = [p for p in safe if sizes[p] is None]
    empty = [p for p in safe if sizes[p] == 0]
    if absent:
        problems.append(f"{len(absent)} audio file(s) named by the manifests are missing from the release: "
                        f"{_examples([resolve(root, p) for p in absent])}")
    if empty:
        problems.append(f"{len(empty)} audio file(s) of the release are empty (0 bytes; a crashed write?): "
                        f"{_examples([resolve(root, p) for p in empty])}")
    checks = [f"{len(safe)} audio file(s) inside the release present and non-empty"] if not (absent or empty) else []
    if not deep:
        return problems, checks
    mismatched, undecodable = [], []
    for rel in safe:
        if not sizes[rel]:
            continue
        data = fs.read_bytes(resolve(root, rel))
        digest = hashlib.sha256(data).hexdigest()
        expected = files[rel].hashes
        if has_hash and expected and digest not in expected:
            mismatched.append(f"{resolve(root, rel)} (bytes hash to {digest[:16]}..., the manifests say "
                              f"{', '.join(sorted(h[:16] + '...' for h in expected))})")
        reason = _decode_problem(data)
        if reason:
            undecodable.append(f"{resolve(root, rel)} {reason}")
    if mismatched:
        problems.append(f"{len(mismatched)} audio file(s) whose bytes are not the ones the release published "
                        f"(audio_sha256): {_examples(mismatched)}")
    if undecodable:
        problems.append(f"{len(undecodable)} audio file(s) that do not decode: {_examples(undecodable)}")
    if not (mismatched or undecodable):
        what = "re-hashed (audio_sha256 matches) and decoded" if has_hash else \
            "decoded (this release predates audio_sha256, so the bytes cannot be compared)"
        checks.append(f"deep: {len(safe)} audio file(s) inside the release {what}")
    return problems, checks
