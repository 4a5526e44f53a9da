"""The generic folder adapter on a real folder corpus (and the same corpus on a moto S3 server)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tasks.core import storage
from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.folder import MetadataError, ingest_folder, quote_opened_at
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

HEADER = "file_name,transcript,sentiment,emotion,speaker_id,gender,age,split,offset_s,duration_s,language,license"
# line number -> (metadata line, expected outcome: utterance id or reject reason)
ROWS: list[tuple[str, str]] = [
    ("a.wav,I am so happy.,Positive,,s1,F,34,validation,,,,", "lab/a"),
    ("sub/b.flac,,,sad,s2,m,twenties,train,,,fa,CC0-1.0", "lab/sub/b"),
    ("long.wav,first part,neutral,,s3,,,test,0,1.0,,", "lab/long@0"),
    ("long.wav,second part,neg,,s3,,,test,1.5,1.0,,", "lab/long@1.5"),
    ("long.wav,,positive,,s3,,,test,2.5,2.0,,", "malformed_metadata"),  # crop past the end (3 s file)
    ("g.wav,,neutral,angry,,,,,,,,", "lab/g"),  # sentiment wins over emotion
    ("missing.wav,,positive,,,,,,,,,", "missing_audio"),
    ("../outside.wav,,positive,,,,,,,,,", "unsafe_path"),
    ("/etc/passwd,,positive,,,,,,,,,", "unsafe_path"),
    ("c.wav,,ecstatic,,,,,,,,,", "unmapped_label"),
    ("d.wav,,,surprised,,,,,,,,", "unmapped_label"),
    ("e.wav,,positive,,,,,holdout,,,,", "malformed_metadata"),
    ("f.wav,,positive,,,,,,abc,,,", "malformed_metadata"),
    (",orphan text,positive,,,,,,,,,", "malformed_metadata"),
    ("a.wav,again,positive,,,,,,,,,", "malformed_metadata"),  # duplicate file_name + offset
    ("corrupt.wav,,positive,,,,,,,,,", "unreadable_audio"),
    ('"quoted, name.wav","He said ""hi"", then left",negative,,,,,,,,,', "lab/quoted, name"),
    ("too,few,fields", "malformed_metadata"),
]
# Audio files no row names: items without labels (zero.wav is rejected as empty).
UNNAMED = {"extra.wav": "lab/extra", "deep/UPPER.WAV": "lab/deep/UPPER", "zero.wav": "empty_audio"}


def make_corpus(root: Path) -> Path:
    """A folder corpus with every kind of problem a metadata.csv can have."""
    root.mkdir(parents=True, exist_ok=True)
    write_tone(root / "a.wav", 1.0, seed=1)
    write_tone(root / "sub" / "b.flac", 1.5, seed=2)
    write_tone(root / "long.wav", 3.0, seed=3)
    for seed, name in enumerate(["c.wav", "d.wav", "e.wav", "f.wav", "g.wav", "quoted, name.wav"], start=10):
        write_tone(root / name, 0.5, seed=seed)
    write_tone(root / "extra.wav", 0.5, sample_rate=44100, channels=2, seed=4)
    write_tone(root / "deep" / "UPPER.WAV", 0.5, seed=5)
    write_tone(root.parent / "outside.wav", 0.5, seed=6)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + os.urandom(64))
    (root / "zero.wav").write_bytes(b"")
    (root / "notes.txt").write_text("not audio\n")
    (root / "._a.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: not audio
    lines = [HEADER] + [row for row, _ in ROWS]
    (root / "metadata.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return root


def _source(path: str, **kw: object) -> SourceSpec:
    return SourceSpec(name="lab", kind="folder", path=path, **kw)


def test_metadata_rows_and_unnamed_files(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus")
    result = ingest_folder(_source(str(root)), "en")

    assert result.found == len(ROWS) + len(UNNAMED) == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    rejects = result.rejects.set_index("input_ref")
    for line, (_, expected) in enumerate(ROWS, start=2):
        ref = f"metadata.csv:{line}"
        if expected.startswith("lab/"):
            assert ref not in rejects.index, rejects.loc[ref, "detail"]
            assert expected in items.index
        else:
            assert rejects.loc[ref, "reason"] == expected, ref
            detail = rejects.loc[ref, "detail"]
            assert f"line {line}" in detail or ref in detail, detail
    for rel, expected in UNNAMED.items():
        path = str(root / rel)
        if expected.startswith("lab/"):
            assert items.loc[expected, "audio_uri"] == path
            assert items.loc[expected, "sentiment"] is None and items.loc[expected, "transcript_raw"] is None
        else:
            assert rejects.loc[path, "reason"] == expected

    a = items.loc["lab/a"]
    assert (a["transcript_raw"], a["transcript_origin"]) == ("I am so happy.", "human")
    assert (a["sentiment"], a["sentiment_origin"]) == ("positive", "human")
    assert (a["speaker_id"], a["gender"], a["age"], a["age_bucket"]) == ("s1", "female", "34", "30s")
    assert (a["split"], a["language"], a["license"]) == ("dev", "en", None)
    assert a["duration_s"] == pytest.approx(1.0) and a["sample_rate"] == 16000

    b = items.loc["lab/sub/b"]
    assert (b["sentiment"], b["sentiment_origin"], b["emotion"]) == ("negative", "mapped_emotion", "sad")
    assert (b["transcript_raw"], b["transcript_origin"]) == (None, None)
    assert (b["gender"], b["age_bucket"], b["language"], b["license"]) == ("male", "20s", "fa", "CC0-1.0")

    first, second = items.loc["lab/long@0"], items.loc["lab/long@1.5"]
    assert (first["offset_s"], first["duration_s"]) == (0.0, 1.0)
    assert (second["offset_s"], second["duration_s"]) == (1.5, 1.0)
    assert second["sentiment"] == "negative" and first["audio_sha256"] == second["audio_sha256"]
    assert first["segment_key"] != second["segment_key"]

    g = items.loc["lab/g"]
    assert (g["sentiment"], g["sentiment_origin"], g["emotion"]) == ("neutral", "human", "angry")
    assert items.loc["lab/quoted, name", "transcript_raw"] == 'He said "hi", then left'
    assert items.loc["lab/extra", "num_channels"] == 2 and items.loc["lab/extra", "sample_rate"] == 44100

    assert "emotion_map" in rejects.loc["metadata.csv:12", "detail"]  # surprised: the fix is named
    assert "'ecstatic'" in rejects.loc["metadata.csv:11", "detail"]
    assert "metadata.csv:2" in rejects.loc["metadata.csv:16", "detail"]  # the duplicate names the first
    assert set(result.rejects["stage"]) == {"ingest"} and set(result.rejects["source"]) == {"lab"}


def test_language_and_license_fall_back_to_spec_then_default(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus")
    items = ingest_folder(_source(str(root), language="de", license="CC-BY-4.0"), "en").items
    items = items.set_index("utterance_id")
    assert items.loc["lab/a", "language"] == "de" and items.loc["lab/a", "license"] == "CC-BY-4.0"
    assert items.loc["lab/sub/b", "language"] == "fa" and items.loc["lab/sub/b", "license"] == "CC0-1.0"
    assert items.loc["lab/extra", "language"] == "de" and items.loc["lab/extra", "license"] == "CC-BY-4.0"


def test_emotion_map_override_accepts_surprised(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus")
    result = ingest_folder(_source(str(root), emotion_map={"surprised": "positive"}), "en")
    d = result.items.set_index("utterance_id").loc["lab/d"]
    assert (d["sentiment"], d["sentiment_origin"], d["emotion"]) == ("positive", "mapped_emotion", "surprised")


def test_symlink_out_of_the_folder_is_unsafe(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "in.wav", 0.5)
    secret = write_tone(tmp_path / "secret.wav", 0.5, seed=9)
    (root / "link.wav").symlink_to(secret)
    (root / "metadata.csv").write_text("file_name,sentiment\nlink.wav,positive\nin.wav,neutral\n")
    result = ingest_folder(_source(str(root)), "en")
    assert result.found == 2 and list(result.items["utterance_id"]) == ["lab/in"]
    assert result.rejects.iloc[0]["reason"] == "unsafe_path" and "symlink" in result.rejects.iloc[0]["detail"]
    # Without metadata the link is still found and still refused.
    (root / "metadata.csv").unlink()
    result = ingest_folder(_source(str(root)), "en")
    assert result.found == 2 and list(result.rejects["reason"]) == ["unsafe_path"]


def test_without_metadata_every_audio_file_is_an_item(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for i, name in enumerate(["x.wav", "x.flac", "y/z.ogg"]):
        write_tone(root / name, 0.5, seed=i)
    # An upper-case MP3 made by ffmpeg (soundfile's MP3 writing depends on the libsndfile build).
    tmp = write_tone(tmp_path / "src.wav", 0.5, seed=7)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(tmp), str(root / "w.MP3")], check=True)
    (root / "readme.md").write_text("hello")
    result = ingest_folder(_source(str(root)), "en")
    assert result.found == 4 and result.rejects.empty
    # x.wav and x.flac share a stem, so their ids keep the extension.
    assert sorted(result.items["utterance_id"]) == ["lab/w", "lab/x.flac", "lab/x.wav", "lab/y/z"]
    assert set(result.items["language"]) == {"en"}
    assert result.items["sentiment"].isna().all()


def test_metadata_that_cannot_be_parsed_stops_instead_of_dropping_every_label(tmp_path: Path) -> None:
    """Not UTF-8, no file_name column, a repeated column: a MetadataError (pre-flight exit 2), never a
    build that quietly replaces every human label with pseudo-labels."""
    root = tmp_path / "corpus"
    write_tone(root / "a.wav", 0.5)
    write_tone(root / "b.wav", 0.5, seed=1)
    meta = root / "metadata.csv"
    meta.write_bytes(b"file_name,sentiment\na.wav,positive\n\xff\xfe bad bytes\n")
    with pytest.raises(MetadataError, match=r"is not UTF-8 text \(.*line 3\); save it as UTF-8"):
        ingest_folder(_source(str(root)), "en")
    meta.write_text("file_name,sentiment,Sentiment,sentiment\na.wav,positive,x,y\n")
    with pytest.raises(MetadataError, match="repeats header column"):
        ingest_folder(_source(str(root)), "en")


def test_metadata_header_without_file_name_names_the_closest_column(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "a.wav", 0.5)
    (root / "metadata.csv").write_text("filename,sentiment\na.wav,positive\n")
    with pytest.raises(MetadataError) as err:
        ingest_folder(_source(str(root)), "en")
    assert "has no file_name column (columns: filename, sentiment)" in str(err.value)
    assert "the closest is 'filename': rename it to file_name" in str(err.value)
    (root / "metadata.csv").write_text("clip,sentiment\na.wav,positive\n")
    with pytest.raises(MetadataError, match="add a file_name column"):
        ingest_folder(_source(str(root)), "en")
    (root / "metadata.csv").unlink()
    (root / "metadata.jsonl").write_text(json.dumps({"path": "a.wav", "sentiment": "positive"}) + "\n")
    with pytest.raises(MetadataError, match="has no file_name key .*the closest is 'path'"):
        ingest_folder(_source(str(root)), "en")


def test_stray_quote_names_the_line_where_it_opened(tmp_path: Path) -> None:
    """#14.6: one `"` on line 7 of a 24-line metadata.csv swallowed every later line; the error said
    "near line 25" and the build went on with pseudo-labels. Now it stops and names line 7."""
    root = tmp_path / "corpus"
    lines = ["file_name,transcript,sentiment,speaker_id"]
    for i in range(1, 24):
        write_tone(root / f"f{i:02d}.wav", 0.2, seed=i)
        lines.append(f"f{i:02d}.wav,sentence number {i},positive,s{i % 3}")
    lines[6] = 'f06.wav,"he said hi,positive,s0'  # line 7: a quoted field that never closes
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError) as err:
        ingest_folder(_source(str(root)), "en")
    message = str(err.value)
    assert "line 7 opens a quoted field" in message and "remove the stray" in message
    assert "pseudo-labels" in message
    # a quote closed in the middle of a field is found on its own line too
    lines[6] = 'f06.wav,"he said" hi,positive,s0'
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MetadataError, match="line 7 opens a quoted field"):
        ingest_folder(_source(str(root)), "en")
    # the same file with the quote doubled inside a quoted field is fine, and every label is kept
    lines[6] = 'f06.wav,"he said ""hi""",positive,s0'
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    result = ingest_folder(_source(str(root)), "en")
    assert len(result.items) == 23 and result.items["sentiment"].eq("positive").all()


def test_quote_opened_at_finds_the_opening_line() -> None:
    text = 'file_name,t\na.wav,ok\nb.wav,"multi\nline"\nc.wav,"open\nd.wav,x\n'
    assert quote_opened_at(text, 5) == 5  # the record starting at line 5 opens a quote it never closes
    assert quote_opened_at(text, 3) is None  # a properly closed multi-line field is not the problem
    assert quote_opened_at(text, 99) is None


def test_jsonl_and_tsv_metadata(tmp_path: Path) -> None:
    root = tmp_path / "j"
    write_tone(root / "a.wav", 2.0)
    records = [
        {"file_name": "a.wav", "transcript": "hello", "sentiment": "POS", "offset_s": 0.5, "duration_s": 1},
        {"file_name": "a.wav", "emotion": "Happy", "offset_s": 1.5, "split": "val"},
        "not an object",
        {"file_name": "a.wav", "sentiment": "neutral", "offset_s": 0.5},  # duplicate crop
    ]
    lines = [json.dumps(r) for r in records[:3]] + ["{broken", "", json.dumps(records[3])]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    result = ingest_folder(_source(str(root)), "en")
    assert result.found == 5 and len(result.items) == 2
    items = result.items.set_index("utterance_id")
    assert items.loc["lab/a@0.5", "sentiment"] == "positive" and items.loc["lab/a@0.5", "duration_s"] == 1.0
    assert items.loc["lab/a@1.5", "sentiment_origin"] == "mapped_emotion"
    assert items.loc["lab/a@1.5", "split"] == "dev" and items.loc["lab/a@1.5", "duration_s"] == pytest.approx(0.5)
    rejects = result.rejects.set_index("input_ref")
    assert list(rejects.index) == ["metadata.jsonl:3", "metadata.jsonl:4", "metadata.jsonl:6"]
    assert set(rejects["reason"]) == {"malformed_metadata"}

    root = tmp_path / "t"
    write_tone(root / "a.wav", 0.5)
    write_tone(root / "b.wav", 0.5, seed=1)
    (root / "metadata.tsv").write_text('file_name\ttranscript\tsentiment\na.wav\t"quoted" words\tnegative\n')
    result = ingest_folder(_source(str(root)), "en")
    items = result.items.set_index("utterance_id")
    assert result.found == 2 and items.loc["lab/a", "transcript_raw"] == '"quoted" words'
    assert items.loc["lab/b", "sentiment"] is None


def test_unknown_metadata_columns_are_named_in_a_note_not_rejected(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "a.wav", 0.5)
    write_tone(root / "b.wav", 0.5, seed=1)
    (root / "metadata.csv").write_text("file_name,text,label\na.wav,hello there,Neutral\nb.wav,hi,positive\n")
    result = ingest_folder(_source(str(root)), "en")
    # Every row is still accepted (extra columns can be legitimate) but nothing was read from them ...
    assert result.found == 2 and len(result.items) == 2 and result.rejects.empty
    assert result.items["sentiment"].isna().all() and result.items["transcript_raw"].isna().all()
    # ... and one note says which columns were ignored and what they were probably meant to be.
    assert len(result.notes) == 1
    note = result.notes[0]
    assert "column(s) label, text are not read" in note and str(root / "metadata.csv") in note
    assert "text -> transcript" in note and "label -> sentiment" in note
    assert "accepted columns: file_name, transcript, sentiment" in note


def test_known_columns_give_no_note_and_jsonl_extras_are_collected(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus")
    assert ingest_folder(_source(str(root)), "en").notes == []
    root = tmp_path / "j"
    write_tone(root / "a.wav", 0.5)
    write_tone(root / "b.wav", 0.5, seed=1)
    records = [{"file_name": "a.wav", "sentiment": "positive"},
               {"file_name": "b.wav", "sentiment": "negative", "snr": 12, "room": "kitchen"}]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = ingest_folder(_source(str(root)), "en")
    assert len(result.items) == 2 and set(result.items["sentiment"]) == {"positive", "negative"}
    assert len(result.notes) == 1 and "column(s) room, snr are not read" in result.notes[0]
    assert "rename them" not in result.notes[0]  # no likely rename for these: just named


def test_second_metadata_file_is_reported_not_silently_dropped(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "a.wav", 0.5)
    (root / "metadata.csv").write_text("file_name,sentiment\na.wav,positive\n")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "a.wav", "sentiment": "negative"}) + "\n")
    result = ingest_folder(_source(str(root)), "en")
    assert result.found == 2 and result.items.iloc[0]["sentiment"] == "positive"
    assert result.rejects.iloc[0]["input_ref"] == str(root / "metadata.jsonl")


def test_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "notes.txt").write_text("x")
    with pytest.raises(CorpusLayoutError, match=r"expected audio files .* found no audio files \(1 files: notes.txt\)"):
        ingest_folder(_source(str(root)), "en")
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        ingest_folder(_source(str(tmp_path / "nope")), "en")


def _comparable(result: pd.DataFrame, root: str, column: str) -> pd.DataFrame:
    frame = result.copy()
    frame[column] = [v.replace(root, "<root>") for v in frame[column]]
    return frame


@pytest.mark.aws
def test_s3_copy_ingests_identically(tmp_path: Path, s3_bucket: str) -> None:
    root = make_corpus(tmp_path / "corpus")
    uri = f"s3://{s3_bucket}/corpora/lab"
    for path in storage.list_files(str(root)):
        storage.copy_file(path, storage.join(uri, storage.relative_to(path, str(root))))
    local = ingest_folder(_source(str(root)), "en")
    remote = ingest_folder(_source(uri + "/"), "en")

    assert remote.found == local.found
    key = "utterance_id"
    left = _comparable(local.items, str(root), "audio_uri").sort_values(key).reset_index(drop=True)
    right = _comparable(remote.items, uri, "audio_uri").sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)
    assert right.loc[0, "audio_uri"].startswith("<root>/")
    cols = ["input_ref", "reason"]
    left_r = _comparable(local.rejects, str(root), "input_ref")[cols].sort_values(cols).reset_index(drop=True)
    right_r = _comparable(remote.rejects, uri, "input_ref")[cols].sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(left_r, right_r)
    assert any(uri in d for d in remote.rejects["detail"])


def test_row_matches_file_differing_in_case_or_unicode_form(tmp_path: Path) -> None:
    """`b.wav` names `B.WAV`, NFC `café.wav` names a decomposed (macOS/zip) `café.wav`: labels kept, no double item."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "caf\u00e9.wav")
    write_tone(tmp_path / "B.WAV", 0.3, seed=1)
    write_tone(tmp_path / nfd, 0.3, seed=2)
    write_tone(tmp_path / "x.wav", 0.3, seed=3)
    write_tone(tmp_path / "X.WAV", 0.3, seed=4)
    (tmp_path / "metadata.csv").write_text(
        "file_name,transcript,sentiment\n"
        'b.wav,"hello, world",negative\n'
        "caf\u00e9.wav,caf\u00e9,positive\n"
        "X.wav,ambiguous,neutral\n",
        encoding="utf-8",
    )

    result = ingest_folder(_source(str(tmp_path)), "en")

    assert result.found == 5 and len(result.items) == 4
    items = result.items.set_index("audio_uri")
    assert items.loc[str(tmp_path / "B.WAV"), "sentiment"] == "negative"
    assert items.loc[str(tmp_path / "B.WAV"), "transcript_raw"] == "hello, world"
    assert items.loc[str(tmp_path / nfd), "sentiment"] == "positive"
    # x.wav and X.WAV both differ from X.wav only in case: no guess, the row is missing_audio
    reject = result.rejects.iloc[0]
    assert reject["input_ref"] == "metadata.csv:4" and reject["reason"] == "missing_audio"
    assert items.loc[str(tmp_path / "x.wav"), "sentiment"] is None


def test_broken_line_claims_the_file_it_names(tmp_path: Path) -> None:
    """A line with too many fields is one reject naming line and file; the file is not ingested unlabelled."""
    write_tone(tmp_path / "a.wav", 0.3, seed=1)
    write_tone(tmp_path / "b.wav", 0.3, seed=2)
    write_tone(tmp_path / "c.wav", 0.3, seed=3)
    (tmp_path / "metadata.csv").write_text(
        "file_name,transcript,sentiment\n"
        "a.wav,hello, world,positive\n"  # unquoted comma: 4 fields
        "b.wav,fine,neutral\n"
        "gone.wav,x,y,z\n",  # names no file: a plain reject
        encoding="utf-8",
    )

    result = ingest_folder(_source(str(tmp_path)), "en")

    assert result.found == 4 and len(result.items) == 2
    assert set(result.items["audio_uri"]) == {str(tmp_path / "b.wav"), str(tmp_path / "c.wav")}
    rejects = result.rejects.set_index("input_ref")
    assert set(rejects["reason"]) == {"malformed_metadata"} and len(rejects) == 2
    detail = rejects.loc["metadata.csv:2", "detail"]
    assert "line 2" in detail and str(tmp_path / "a.wav") in detail and "fix the line" in detail
    assert "gone.wav" not in rejects.loc["metadata.csv:4", "detail"]
