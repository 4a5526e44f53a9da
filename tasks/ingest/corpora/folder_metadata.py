"""Reading a `folder` source's metadata table (CSV, TSV or JSONL) into rows with their line numbers.

Split from tasks/ingest/corpora/folder.py, which maps the rows to items. Two kinds of failure, on purpose:
- `MetadataError` (a CorpusLayoutError): the file was read but cannot be parsed (not UTF-8, a stray
  quote, no `file_name` column, ...). Every human label in it would be lost, so the build stops in
  pre-flight (exit 2) with the line and the fix, instead of labelling the audio with pseudo-labels.
- `MetadataUnreadable`: the file cannot be read at all (S3 AccessDenied, an I/O error); the adapter
  makes it one `malformed_metadata` reject naming the object, and a warning note.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from manifests import uri as fs
from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.labels import is_blank


class MetadataUnreadable(Exception):
    """The metadata file as a whole cannot be read (access refused, I/O error); its rows are unknown."""


class MetadataError(CorpusLayoutError):
    """The metadata file was read but cannot be parsed (a stray quote, no file_name column, not UTF-8).

    Not a reject: every human label in it would be silently replaced by pseudo-labels, so the build
    stops before any work (pre-flight runs the adapter's layout checks: `voicetone build` exits 2).
    """


@dataclass
class _Row:
    """One metadata row: its line, its values (strings or None), or why the line itself is broken."""

    line: int
    values: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None
    # a broken line's raw file_name field (its position in the header), when the line has one
    file_name: str | None = None


def _cell(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return None if is_blank(text) else text


def _delimited_rows(text: str, delimiter: str) -> Iterator[_Row]:
    """CSV (quoted) or TSV (unquoted, like Common Voice) rows with the physical line each starts on."""
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    header: list[str] | None = None
    last_line = 0
    try:
        for record in reader:
            line, last_line = last_line + 1, reader.line_num
            if not record or all(not c.strip() for c in record):
                continue
            if header is None:
                header = [c.strip() for c in record]
                dupes = sorted({c for c in header if header.count(c) > 1})
                if dupes:
                    raise MetadataUnreadable(f"repeats header column(s) {', '.join(dupes)}")
                if "file_name" not in header:
                    raise MetadataUnreadable(no_file_name_column(header))
                continue
            if len(record) != len(header):
                at = header.index("file_name")
                yield _Row(
                    line,
                    error=f"has {len(record)} fields but the header has {len(header)}",
                    file_name=_cell(record[at]) if at < len(record) else None,
                )
                continue
            yield _Row(line, {k: _cell(v) for k, v in zip(header, record, strict=True)})
    except csv.Error as err:
        opened = quote_opened_at(text, last_line + 1)
        where = (f"line {opened} opens a quoted field (a '\"' at the start of a field) that is not closed "
                 f"where it should be ({err}, noticed at line {reader.line_num}); quote the whole field and "
                 'double any \" inside it, or remove the stray \"') if opened else \
            f"near line {reader.line_num}: {err}"
        raise MetadataUnreadable(f"is not valid CSV: {where}") from None
    if header is None:
        raise MetadataUnreadable("is empty (no header line)")


def quote_opened_at(text: str, start_line: int) -> int | None:
    """The line on which the quoted field that broke the CSV record starting at `start_line` opened.

    Python's csv reader reports where it gave up, which for a stray `"` is the end of the file (the
    "field" swallowed every later line). Re-scan the record: a `"` at the start of a field opens a
    quoted field; `""` inside it is an escaped quote; a `"` followed by the delimiter or a line end
    closes it; anything else after a closing `"`, or the end of the text, means the last quote opened
    was the stray one.
    """
    lines = text.splitlines(keepends=True)
    if start_line < 1 or start_line > len(lines):
        return None
    body = "".join(lines[start_line - 1 :])
    line, opened, in_quote, at_field_start, i = start_line, None, False, True, 0
    while i < len(body):
        ch = body[i]
        if in_quote:
            if ch == '"':
                nxt = body[i + 1] if i + 1 < len(body) else ""
                if nxt == '"':
                    i += 1
                elif nxt in (",", "\r", "\n", ""):
                    in_quote = False
                else:
                    return opened
        elif ch == '"' and at_field_start:
            in_quote, opened = True, line
        elif ch == "\n":
            return None  # the record ended outside quotes: its error is not a stray quote
        at_field_start = ch == "," or (ch == "\n" and not in_quote)
        if ch == "\n":
            line += 1
        i += 1
    return opened if in_quote else None


_FILE_NAME_LOOKALIKES = ("filename", "file", "path", "audio", "audio_path", "file_path", "filepath", "wav",
                         "fname", "audio_file", "audio_filename", "name")


def no_file_name_column(columns: list[str]) -> str:
    """The message for a header without `file_name`: names the closest column and the fix."""
    lowered = {c.lower().strip(): c for c in columns}
    close = next((lowered[n] for n in _FILE_NAME_LOOKALIKES if n in lowered), None)
    if close is None:
        matches = difflib.get_close_matches("file_name", list(lowered), n=1, cutoff=0.6)
        close = lowered[matches[0]] if matches else None
    fix = (f"the closest is {close!r}: rename it to file_name" if close is not None
           else "add a file_name column holding each audio file's path relative to the source folder")
    return f"has no file_name column (columns: {', '.join(columns) or 'none'}); {fix}"


def _jsonl_rows(text: str) -> Iterator[_Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            yield _Row(number, error=f"is not valid JSON ({err.msg})")
            continue
        if not isinstance(obj, dict):
            yield _Row(number, error="is not a JSON object")
            continue
        yield _Row(number, {str(k): _cell(v) for k, v in obj.items()})


def read_metadata(uri: str) -> list[_Row]:
    """The rows of a metadata file; MetadataError when it cannot be parsed, MetadataUnreadable when it
    cannot be read at all (access refused, I/O error)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        data = fs.read_bytes(uri)
    except (OSError, BotoCoreError, ClientError) as err:  # S3 AccessDenied is a ClientError, not an OSError
        raise MetadataUnreadable(f"cannot be read: {err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise MetadataError(f"metadata file {uri} is not UTF-8 text ({err.reason} at byte {err.start}, line {line}); "
                            "save it as UTF-8") from None
    try:
        if "\x00" in text:
            raise MetadataUnreadable("contains NUL bytes (is it a binary file?)")
        if uri.lower().endswith(".jsonl"):
            rows = list(_jsonl_rows(text))
            if rows and not any("file_name" in r.values for r in rows if r.error is None):
                keys = sorted({k for r in rows for k in r.values})
                raise MetadataUnreadable(no_file_name_column(keys).replace("column", "key", 1))
            return rows
        return list(_delimited_rows(text, "," if uri.lower().endswith(".csv") else "\t"))
    except MetadataUnreadable as err:
        raise MetadataError(f"metadata file {uri} {err}; its labels cannot be read, so the build stops "
                            "rather than label these files with pseudo-labels") from None
