"""LibriSpeech: `<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac` plus `<spk>-<chapter>.trans.txt`.

`path` may be the folder holding `LibriSpeech/`, `LibriSpeech/` itself, or one subset folder
(`dev-clean/`): files are found at any depth and the subset is the folder above the speaker folder.
Gender comes from `SPEAKERS.TXT` (`;` comments, `ID | SEX | SUBSET | MINUTES | NAME`), found below
`path` or, for a subset-folder `path`, next to it. The split is the subset's prefix (train-*, dev-*,
test-*), else the subset SPEAKERS.TXT gives the speaker, else null.

Found items = every .flac below `path` plus every transcript line whose .flac is absent. A .flac with
no transcript line is a `malformed_metadata` reject: the corpus copy is incomplete, and LibriSpeech
without its human transcript is not worth keeping. A transcript line without its .flac is
`missing_audio`. LibriSpeech has no sentiment: it stays null for the labelers (never a default).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
    read_corpus_text,
)
from tasks.ingest.corpora.labels import normalize_gender
from tasks.spec import SourceSpec

KIND = "librispeech"
LICENSE = "CC-BY-4.0"
LANGUAGE = "en"
SPEAKERS_FILE = "SPEAKERS.TXT"
_UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_FLAC = re.compile(r"^(\d+)-(\d+)-(\d+)\.flac$")
_TRANS = re.compile(r"^(\d+)-(\d+)\.trans\.txt$")
_SPLIT_PREFIXES: tuple[tuple[str, str], ...] = (("train", "train"), ("dev", "dev"), ("test", "test"))
OPTIONS: dict[str, type] = {}


@dataclass(frozen=True)
class Speaker:
    """One SPEAKERS.TXT row (the fields the adapter uses)."""

    gender: str | None
    subset: str | None


@dataclass(frozen=True)
class _Line:
    ref: str
    text: str


def _parts(uri: str) -> list[str]:
    return uri.split("/") if fs.is_s3(uri) else uri.split(os.sep)


def subset_split(subset: str | None) -> str | None:
    """train-clean-100 -> train, dev-other -> dev, test-clean -> test; anything else -> None."""
    name = (subset or "").strip().lower()
    return next((split for prefix, split in _SPLIT_PREFIXES if name.startswith(prefix)), None)


def parse_speakers(text: str) -> dict[str, Speaker]:
    """speaker id -> Speaker from SPEAKERS.TXT; comment, blank and short lines are skipped.

    NAME may itself contain '|', so only the first four separators split fields.
    """
    out: dict[str, Speaker] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        subset = fields[2] if len(fields) > 2 and fields[2] else None
        out.setdefault(fields[0], Speaker(normalize_gender(fields[1]), subset))
    return out


def _speakers(root: str, files: list[str]) -> dict[str, Speaker]:
    """All SPEAKERS.TXT below root (shallowest first), else the one next to a subset-folder root."""
    found = sorted((f for f in files if fs.basename(f) == SPEAKERS_FILE), key=lambda f: (len(_parts(f)), f))
    if not found:
        beside = fs.join(fs.parent(root), SPEAKERS_FILE)
        if fs.parent(root) != root and fs.exists(beside):
            found = [beside]
    speakers: dict[str, Speaker] = {}
    for uri in found:
        for spk, row in parse_speakers(read_corpus_text(uri)).items():
            speakers.setdefault(spk, row)
    return speakers


def _read_transcripts(source: SourceSpec, trans: list[str], rejects: list[dict[str, str]]) -> dict[str, _Line]:
    """expected .flac uri -> transcript line, from every well-placed .trans.txt; bad lines are rejects."""
    lines: dict[str, _Line] = {}
    for uri in trans:
        parts = _parts(uri)
        spk, chapter = _TRANS.match(parts[-1]).groups()  # type: ignore[union-attr]
        folder = fs.parent(uri)
        for number, raw in enumerate(read_corpus_text(uri).splitlines(), start=1):
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            ref = f"{uri}:{number}"
            utt, *rest = line.strip().split(None, 1)  # a space, or a tab in re-saved copies
            text = rest[0] if rest else ""
            match = _UTT_ID.match(utt)
            problem = None
            if match is None:
                problem = f"does not start with an utterance id <speaker>-<chapter>-<NNNN> (got {utt!r})"
            elif match.group(1, 2) != (spk, chapter):
                problem = f"names utterance {utt}, which does not belong to chapter {spk}-{chapter}"
            elif not text.strip():
                problem = f"has no transcript text for {utt}"
            flac = fs.join(folder, f"{utt}.flac")
            if problem is None and flac in lines:
                problem = f"repeats utterance {utt} (first at {lines[flac].ref})"
            if problem is not None:
                rejects.append(ingest_reject(source, ref, "malformed_metadata", f"LibriSpeech line {ref} {problem}"))
                continue
            lines[flac] = _Line(ref, text.strip())
    return lines


def _misplaced(parts: list[str], spk: str, chapter: str) -> str | None:
    if len(parts) < 4 or (parts[-3], parts[-2]) != (spk, chapter):
        where = "/".join(parts[-3:-1]) if len(parts) >= 3 else "the root"
        return f"it is in {where}, not in {spk}/{chapter}/ below a subset folder"
    return None


def ingest_librispeech(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a LibriSpeech copy (see module doc). English; `default_language` is not used."""
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    flacs = [f for f in all_files if f.lower().endswith(".flac") and not fs.basename(f).startswith("._")]
    trans = [f for f in all_files if _TRANS.match(fs.basename(f))]
    if not trans and not any(_FLAC.match(fs.basename(f)) for f in flacs):
        raise layout_error(
            source,
            "<subset>/<speaker>/<chapter>/ folders with <speaker>-<chapter>-NNNN.flac and "
            "<speaker>-<chapter>.trans.txt (the folder holding LibriSpeech/, LibriSpeech/ or a subset folder)",
            f"no .trans.txt files and {len(flacs)} .flac files not named <speaker>-<chapter>-NNNN.flac",
            all_files,
        )

    rejects: list[dict[str, str]] = []
    speakers = _speakers(root, all_files)
    placed: list[str] = []
    for t in trans:
        why = _misplaced(_parts(t), *_TRANS.match(fs.basename(t)).groups())  # type: ignore[union-attr]
        if why is None:
            placed.append(t)
        else:
            rejects.append(
                ingest_reject(source, t, "malformed_metadata", f"LibriSpeech transcript file {t} was skipped: {why}")
            )
    lines = _read_transcripts(source, placed, rejects)

    # A .FLAC/.Flac copy is the same utterance as the `.flac` its transcript line names.
    present: dict[str, str] = {}  # uri with a lower-case `.flac` -> the file as named on disk
    for f in sorted(flacs):
        key = f[: -len(".flac")] + ".flac"
        if key in present:
            rejects.append(
                ingest_reject(
                    source,
                    f,
                    "malformed_metadata",
                    f"LibriSpeech file {f} was skipped: {present[key]} is the same utterance "
                    "(file names differ only in the case of .flac)",
                )
            )
            continue
        present[key] = f
    candidates: list[Candidate] = []
    for key in sorted(set(present) | set(lines)):
        uri = present.get(key, key)
        parts = _parts(uri)
        match = _FLAC.match(parts[-1][: -len(".flac")] + ".flac")
        why = (
            "its name is not <speaker>-<chapter>-NNNN.flac"
            if match is None
            else _misplaced(parts, match.group(1), match.group(2))
        )
        if why is not None:
            rejects.append(ingest_reject(source, uri, "malformed_metadata", f"LibriSpeech file {uri} was skipped: {why}"))
            continue
        line = lines.get(key)
        if line is None:
            rejects.append(
                ingest_reject(
                    source,
                    uri,
                    "malformed_metadata",
                    f"LibriSpeech file {uri} has no line in its chapter's "
                    f"{match.group(1)}-{match.group(2)}.trans.txt, so it has no transcript",
                )
            )
            continue
        if key not in present:
            rejects.append(
                ingest_reject(source, line.ref, "missing_audio", f"LibriSpeech line {line.ref}: {uri} does not exist")
            )
            continue
        spk, subset = match.group(1), parts[-4]
        speaker = speakers.get(spk)
        split = subset_split(subset) or subset_split(speaker.subset if speaker else None)
        labels = {
            "transcript_raw": line.text,
            "transcript_origin": "human",
            "speaker_id": spk,
            "gender": speaker.gender if speaker else None,
            "language": LANGUAGE,
            "license": source.license or LICENSE,
            "split": split,
        }
        candidates.append(Candidate(parts[-1][: -len(".flac")], uri, uri, labels))
    return build_result(source, candidates, rejects)
