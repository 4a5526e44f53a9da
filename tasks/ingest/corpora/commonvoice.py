"""Common Voice: `<locale>/clips/*.mp3` with `validated.tsv` and the official `train/dev/test.tsv`.

`path` is one locale folder (holding `clips/` and the .tsv files) or a folder holding locale folders
(a `cv-corpus-*` release). Columns are read by header name because they change between releases
(`sentence_id`, `variant`, `segment` come and go; `accents` replaced `accent`); the files are
tab-separated and unquoted (`csv.QUOTE_NONE`: sentences contain `"`), and an empty cell means "not
given". `other.tsv` and `invalidated.tsv` are not read: only validated clips are training data.
The files are UTF-8 by definition and decoded strictly, line by line: a row that is not valid UTF-8
is a `malformed_metadata` reject, never a transcript with U+FFFD. A clip with no exact match is the
single file differing only in the case of its extension (`X.MP3`); several such files: no guess.

Found items = the distinct clip paths named by `validated.tsv` and the split files (a clip in
`clips/` that no read file names is not an item), plus unreadable rows. The split is the split file
that names the clip (validated-only clips get a null split); a clip named by two split files is
`malformed_metadata`. Language = the `locale` column, else the locale folder's name when it looks
like a locale code, else the source's language. Labels: sentence -> transcript (human), client_id
-> speaker_id, age words -> age/age_bucket, gender (male_masculine, female_feminine, ...),
accents|accent -> accent. Licence CC0-1.0. MP3s are probed from their headers, never decoded whole.
"""

from __future__ import annotations

import csv
import io
import posixpath
import re
from dataclasses import dataclass, field

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    RowReject,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
)
from tasks.ingest.corpora.labels import age_bucket, normalize_gender
from tasks.spec import SourceSpec

KIND = "commonvoice"
LICENSE = "CC0-1.0"
CLIPS_DIR = "clips"
VALIDATED = "validated.tsv"
SPLIT_FILES: dict[str, str] = {"train.tsv": "train", "dev.tsv": "dev", "test.tsv": "test"}
READ_FILES: tuple[str, ...] = (VALIDATED, *SPLIT_FILES)
_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
OPTIONS: dict[str, type] = {}


@dataclass
class _Clip:
    """Everything the .tsv files say about one clip: first row's values, where it was seen, its splits."""

    ref: str
    values: dict[str, str | None]
    splits: dict[str, str] = field(default_factory=dict)  # split -> ref


def read_tsv(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, fields)]) of a Common Voice .tsv (unquoted, tab-separated).

    Lines are split on tabs directly, which is what `csv.QUOTE_NONE` does: a `"` is an ordinary
    character. Blank lines are skipped; line numbers count from 1 at the header.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    for record in reader:
        if not record or all(not c.strip() for c in record):
            continue
        if not header:
            header = [c.strip().lstrip("\ufeff") for c in record]
            continue
        rows.append((reader.line_num, record))
    return header, rows


def decode_lines(data: bytes) -> tuple[str, list[int]]:
    """(text, numbers of the lines that are not valid UTF-8) of a .tsv, decoded strictly line by line.

    A line that does not decode is kept as an empty line (so line numbers still count physical lines
    and `read_tsv` skips it); the caller rejects it. Lines end at LF, CRLF or CR, as in `read_tsv`.
    """
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    bad: list[int] = []
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        body = raw.rstrip(b"\r\n")
        try:
            text = body.decode("utf-8-sig" if number == 1 else "utf-8")
            parts.append(text + raw[len(body) :].decode("ascii"))
        except UnicodeDecodeError:
            bad.append(number)
            parts.append("\n")
    return "".join(parts), bad


def _cell(value: str) -> str | None:
    text = value.strip()
    return text or None


def _clip_name(value: str | None) -> str:
    """The clip's file name below clips/; a path that could leave the folder is unsafe."""
    if value is None:
        raise RowReject("malformed_metadata", "the path column is empty")
    name = value.replace("\\", "/")
    if name.startswith(f"{CLIPS_DIR}/"):
        name = name[len(CLIPS_DIR) + 1 :]
    if name.startswith("/") or ".." in name.split("/") or re.match(r"^[A-Za-z]:", name):
        raise RowReject("unsafe_path", f"path {value!r} points outside the clips folder")
    name = posixpath.normpath(name)
    if not posixpath.splitext(name)[1]:
        name += ".mp3"  # some early releases list clips without their extension
    return name


def _locale_clips(
    source: SourceSpec, folder: str, present: set[str], rejects: list[dict[str, str]]
) -> dict[str, _Clip]:
    """clip name -> _Clip for one locale folder; unreadable rows and conflicts become rejects."""
    clips: dict[str, _Clip] = {}
    for name in READ_FILES:
        uri = fs.join(folder, name)
        if uri not in present:
            continue
        text, bad_lines = decode_lines(fs.read_bytes(uri))
        lines = enumerate(io.StringIO(text, newline=""), start=1)
        header_line = next((number for number, line in lines if line.strip()), None)
        if bad_lines and (header_line is None or bad_lines[0] < header_line):
            raise layout_error(
                source,
                f"a UTF-8 {name} whose first line is the header",
                f"{uri} whose first line is not valid UTF-8",
                [uri],
            )
        header, rows = read_tsv(text)
        if "path" not in header:
            raise layout_error(
                source,
                f"a tab-separated {name} whose header has a path column",
                f"{uri} with columns {', '.join(header) or '(none)'}",
                [uri],
            )
        split = SPLIT_FILES.get(name)
        seen: dict[str, str] = {}
        for line in bad_lines:
            ref = f"{uri}:{line}"
            rejects.append(
                ingest_reject(
                    source,
                    ref,
                    "malformed_metadata",
                    f"Common Voice row {ref} is not valid UTF-8 (Common Voice files are UTF-8); the row was not read",
                )
            )
        for line, record in rows:
            ref = f"{uri}:{line}"
            try:
                if len(record) != len(header):
                    raise RowReject(
                        "malformed_metadata", f"has {len(record)} tab-separated fields but the header has {len(header)}"
                    )
                values = {k: _cell(v) for k, v in zip(header, record, strict=True)}
                clip = _clip_name(values.get("path"))
                if clip in seen:
                    raise RowReject("malformed_metadata", f"repeats clip {clip} (first at {seen[clip]})")
                seen[clip] = ref
            except RowReject as err:
                rejects.append(ingest_reject(source, ref, err.reason, f"Common Voice row {ref} {err.detail}"))
                continue
            entry = clips.setdefault(clip, _Clip(ref, values))
            if split is not None:
                entry.splits.setdefault(split, ref)
    return clips


def _labels(values: dict[str, str | None], locale: str | None, source: SourceSpec, default_language: str) -> dict:
    sentence = values.get("sentence")
    age = values.get("age")
    return {
        "transcript_raw": sentence,
        "transcript_origin": "human" if sentence is not None else None,
        "speaker_id": values.get("client_id"),
        "gender": normalize_gender(values.get("gender")),
        "age": age,
        "age_bucket": age_bucket(age),
        "accent": values.get("accents") or values.get("accent"),
        "language": values.get("locale") or locale or source.language or default_language,
        "license": source.license or LICENSE,
    }


def _ext_key(uri: str) -> str:
    stem, ext = posixpath.splitext(uri)
    return stem + ext.lower()


def _clip_files(
    folder: str, clips: list[str], present: set[str], by_key: dict[str, list[str]]
) -> dict[str, str | RowReject]:
    """clip name -> the file on disk that is that clip, or why there is none.

    An exact name wins. Otherwise the one file whose name differs only in the case of its extension
    (`X.MP3` for `X.mp3`) is the clip, unless another row names that file exactly or also matches it
    only by case; with several such files (`X.MP3` and `X.Mp3`) nothing is guessed.
    """
    uris = {clip: fs.join(folder, CLIPS_DIR, clip) for clip in clips}
    exact = {uri for uri in uris.values() if uri in present}
    found: dict[str, str | RowReject] = {}
    for clip, uri in uris.items():
        if uri in exact:
            found[clip] = uri
            continue
        matches = [f for f in by_key.get(_ext_key(uri), []) if f not in exact]
        if not matches:
            found[clip] = RowReject("missing_audio", f"{uri} does not exist")
        elif len(matches) > 1:
            found[clip] = RowReject(
                "malformed_metadata",
                f"{uri} does not exist and several files differ from it only in the case of the extension "
                f"({', '.join(matches)}); none was chosen",
            )
        else:
            found[clip] = matches[0]
    claims: dict[str, list[str]] = {}
    for clip, uri in found.items():
        if isinstance(uri, str) and uri not in exact:
            claims.setdefault(uri, []).append(clip)
    for uri, names in claims.items():
        if len(names) > 1:
            for clip in names:
                found[clip] = RowReject(
                    "malformed_metadata",
                    f"{uris[clip]} does not exist and {uri} differs only in the case of the extension, but rows "
                    f"naming {', '.join(sorted(names))} all match it; none was chosen",
                )
    return found


def ingest_commonvoice(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest one Common Voice locale folder or a release folder holding several (see module doc)."""
    check_options(source, OPTIONS)
    _, all_files = list_corpus(source)
    present = set(all_files)
    folders = sorted({fs.parent(f) for f in all_files if fs.basename(f) in READ_FILES})
    if not folders:
        raise layout_error(
            source,
            "a locale folder with clips/ and validated.tsv (or train.tsv/dev.tsv/test.tsv), "
            "or a folder holding such locale folders",
            "no validated.tsv, train.tsv, dev.tsv or test.tsv",
            all_files,
        )

    by_key: dict[str, list[str]] = {}  # uri with a lower-case extension -> the files so named on disk
    for f in sorted(all_files):
        by_key.setdefault(_ext_key(f), []).append(f)
    rejects: list[dict[str, str]] = []
    candidates: list[Candidate] = []
    for folder in folders:
        name = fs.basename(folder)
        locale = name if _LOCALE.match(name) else None
        entries = _locale_clips(source, folder, present, rejects)
        files = _clip_files(folder, list(entries), present, by_key)
        for clip, entry in entries.items():
            uri = files[clip]
            if len(entry.splits) > 1:
                named = ", ".join(f"{split} ({ref})" for split, ref in sorted(entry.splits.items()))
                rejects.append(
                    ingest_reject(
                        source,
                        entry.ref,
                        "malformed_metadata",
                        f"Common Voice clip {clip} in {folder} is listed in more than one split: {named}",
                    )
                )
                continue
            if isinstance(uri, RowReject):
                detail = f"Common Voice row {entry.ref}: {uri.detail}"
                rejects.append(ingest_reject(source, entry.ref, uri.reason, detail))
                continue
            labels = _labels(entry.values, locale, source, default_language)
            labels["split"] = next(iter(entry.splits), None)
            candidates.append(Candidate(posixpath.splitext(clip)[0], uri, entry.ref, labels))
    return build_result(source, candidates, rejects)
