"""Common Voice adapter: two releases' headers, empty fields, split files, bad rows; real Persian sample."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

from tasks.core import audio
from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.commonvoice import ingest_commonvoice, read_tsv
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

REAL = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real" / "commonvoice_fa"

NEW_HEADER = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"  # noqa: E501
OLD_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent"


def _mp3(path: Path, seconds: float, seed: int) -> None:
    wav = write_tone(path.with_suffix(".wav"), seconds, sample_rate=32000, seed=seed)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-b:a", "48k", str(path)],
        check=True,
        timeout=60,
    )
    wav.unlink()


def _new_row(client: str, clip: str, sentence: str, age: str, gender: str, accents: str, locale: str = "en") -> str:
    return "\t".join([client, clip, "sid" + clip[-6:-4], sentence, "", "2", "0", age, gender, accents, "", locale, ""])


def make_release(root: Path) -> Path:
    """root/{en (new header), de (old header, no locale column)} with clips and .tsv files."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    en = root / "en"
    for i, name in enumerate(["en_1", "en_2", "en_3", "en_4", "en_5", "en_6", "en_unlisted"]):
        _mp3(en / "clips" / f"common_voice_{name}.mp3", 0.6 + 0.1 * i, seed=i)
    validated = [
        NEW_HEADER,
        _new_row("aaa", "common_voice_en_1.mp3", 'He said "hello" to me', "twenties", "male_masculine", "United States English"),
        _new_row("bbb", "common_voice_en_2.mp3", "Empty demographics", "", "", ""),
        _new_row("ccc", "common_voice_en_3.mp3", "Only in validated", "fourties", "female_feminine", ""),
        _new_row("ddd", "common_voice_en_4.mp3", "Listed in two splits", "teens", "do_not_wish_to_say", ""),
        _new_row("eee", "common_voice_en_missing.mp3", "No clip on disk", "", "", ""),
        "fff\tcommon_voice_en_6.mp3\ttoo few fields",
        _new_row("ggg", "../../etc/passwd", "Escapes the folder", "", "", ""),
        _new_row("aaa", "common_voice_en_1.mp3", "Repeated row", "", "", ""),
        "",
    ]
    (en / "validated.tsv").write_text("\n".join(validated) + "\n")
    (en / "train.tsv").write_text("\n".join([NEW_HEADER, validated[1], validated[4], validated[5]]) + "\n")
    dev_only = _new_row("hhh", "common_voice_en_5.mp3", "Only in dev", "sixties", "other", "", locale="en-GB")
    (en / "dev.tsv").write_text("\n".join([NEW_HEADER, validated[2], dev_only]) + "\n")
    (en / "test.tsv").write_text("\n".join([NEW_HEADER, validated[4]]) + "\n")
    (en / "invalidated.tsv").write_text(NEW_HEADER + "\n" + _new_row("zzz", "common_voice_en_6.mp3", "x", "", "", "") + "\n")

    de = root / "de"
    _mp3(de / "clips" / "common_voice_de_1.mp3", 0.5, seed=20)
    old_rows = [OLD_HEADER, "iii\tcommon_voice_de_1\tGuten Tag\t2\t0\tthirties\tfemale\tgermany"]
    (de / "validated.tsv").write_text("\r\n".join(old_rows) + "\r\n")
    (root / "README.md").write_text("Common Voice\n")
    return root


def _source(path: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="cv", kind="commonvoice", path=str(path), **kw)


def test_two_releases_splits_and_bad_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_release(tmp_path / "cv-corpus")

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("ingest decoded audio; probing must read headers only")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    monkeypatch.setattr(audio, "_decode_ffmpeg", no_decoding)
    result = ingest_commonvoice(_source(root), "fa")

    # en: 5 listed clips + missing + short row + unsafe + repeat; de: 1 clip (en_unlisted, invalidated.tsv: no items)
    assert result.found == 5 + 4 + 1 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    assert sorted(items.index) == [
        "cv/common_voice_de_1",
        "cv/common_voice_en_1",
        "cv/common_voice_en_2",
        "cv/common_voice_en_3",
        "cv/common_voice_en_5",
    ]
    first = items.loc["cv/common_voice_en_1"]
    assert first["transcript_raw"] == 'He said "hello" to me' and first["transcript_origin"] == "human"
    assert (first["age"], first["age_bucket"], first["gender"]) == ("twenties", "20s", "male")
    assert (first["accent"], first["speaker_id"], first["split"]) == ("United States English", "aaa", "train")
    assert (first["language"], first["license"], first["sample_rate"]) == ("en", "CC0-1.0", 32000)
    empty = items.loc["cv/common_voice_en_2"]
    assert [empty[c] for c in ("age", "age_bucket", "gender", "accent")] == [None] * 4
    assert empty["split"] == "dev"
    assert items.loc["cv/common_voice_en_3", "split"] is None  # validated only
    assert (items.loc["cv/common_voice_en_3", "age_bucket"], items.loc["cv/common_voice_en_3", "gender"]) == (
        "40s",
        "female",
    )
    dev_only = items.loc["cv/common_voice_en_5"]
    assert (dev_only["split"], dev_only["language"], dev_only["gender"]) == ("dev", "en-GB", "other")
    old = items.loc["cv/common_voice_de_1"]  # old header: accent column, no locale column, no extension
    assert (old["language"], old["accent"], old["age_bucket"], old["gender"]) == ("de", "germany", "30s", "female")
    assert old["transcript_raw"] == "Guten Tag" and old["split"] is None
    assert items["sentiment"].isna().all() and items["emotion"].isna().all()
    assert items.loc["cv/common_voice_en_1", "duration_s"] == pytest.approx(0.6, abs=0.06)

    rejects = result.rejects.set_index("input_ref")
    validated = str(root / "en" / "validated.tsv")
    assert rejects.loc[f"{validated}:5", "reason"] == "malformed_metadata"
    assert "train (" in rejects.loc[f"{validated}:5", "detail"] and "test (" in rejects.loc[f"{validated}:5", "detail"]
    assert rejects.loc[f"{validated}:6", "reason"] == "missing_audio"
    assert rejects.loc[f"{validated}:7", "reason"] == "malformed_metadata"
    assert "3 tab-separated fields" in rejects.loc[f"{validated}:7", "detail"]
    assert rejects.loc[f"{validated}:8", "reason"] == "unsafe_path"
    assert rejects.loc[f"{validated}:9", "reason"] == "malformed_metadata"
    assert f"first at {validated}:2" in rejects.loc[f"{validated}:9", "detail"]


def test_locale_folder_as_root_and_default_language(tmp_path: Path) -> None:
    root = make_release(tmp_path / "release")
    de = ingest_commonvoice(_source(root / "de"), "fa")
    assert de.found == 1 and de.items.loc[0, "language"] == "de"
    renamed = root / "german_sample"
    (root / "de").rename(renamed)
    result = ingest_commonvoice(_source(renamed, language="de-AT", license="custom"), "fa")
    assert (result.items.loc[0, "language"], result.items.loc[0, "license"]) == ("de-AT", "custom")
    assert ingest_commonvoice(_source(renamed), "fa").items.loc[0, "language"] == "fa"


def test_layout_errors(tmp_path: Path) -> None:
    write_tone(tmp_path / "clips" / "a.wav", 0.2)
    with pytest.raises(CorpusLayoutError, match=r"expected a locale folder with clips/ and validated\.tsv"):
        ingest_commonvoice(_source(tmp_path), "en")
    (tmp_path / "validated.tsv").write_text("client_id\tsentence\nx\ty\n")
    with pytest.raises(CorpusLayoutError, match="header has a path column"):
        ingest_commonvoice(_source(tmp_path), "en")


def test_read_tsv_keeps_quotes_literal() -> None:
    header, rows = read_tsv('path\tsentence\r\na.mp3\t"quoted\tstart\r\n\r\nb.mp3\tend"\r\n')
    assert header == ["path", "sentence"]
    assert rows == [(2, ["a.mp3", '"quoted', "start"]), (4, ["b.mp3", 'end"'])]


@pytest.mark.realdata
def test_real_persian_sample() -> None:
    if not (REAL / "validated.tsv").is_file():
        pytest.skip(f"real Common Voice sample not found at {REAL}")
    result = ingest_commonvoice(_source(REAL), "en")
    assert result.found == 83 and len(result.items) == 83 and result.rejects.empty
    items = result.items
    assert set(items["language"]) == {"fa"} and set(items["license"]) == {"CC0-1.0"}
    assert items["transcript_raw"].notna().all() and set(items["sample_rate"]) == {32000}
    assert items["split"].isna().all()  # only validated.tsv is present
    assert set(items["gender"].dropna()) <= {"male", "female", "other"}
    assert set(items["age_bucket"].dropna()) <= {"20s", "30s"}
    assert items["gender"].isna().sum() == 45  # 45 rows give no demographics at all
    assert (items["duration_s"] > 0.5).all()


def test_row_that_is_not_utf8_is_rejected_not_mangled(tmp_path: Path) -> None:
    """A Latin-1 byte in one row rejects that row (naming file:line); the rest of the file is read."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    en = tmp_path / "en"
    _mp3(en / "clips" / "a.mp3", 0.5, seed=1)
    _mp3(en / "clips" / "b.mp3", 0.5, seed=2)
    lines = [OLD_HEADER.encode(), b"c1\ta.mp3\tcaf\xe9 au lait\t2\t0\t\t\t", "c2\tb.mp3\tcafé\t2\t0\t\t\t".encode()]
    (en / "validated.tsv").write_bytes(b"\n".join(lines) + b"\n")

    result = ingest_commonvoice(_source(en), "en")

    assert result.found == 2 and len(result.items) == 1
    assert result.items.loc[0, "transcript_raw"] == "café"
    reject = result.rejects.iloc[0]
    assert reject["input_ref"] == f"{en / 'validated.tsv'}:2" and reject["reason"] == "malformed_metadata"
    assert "not valid UTF-8" in reject["detail"] and f"{en / 'validated.tsv'}:2" in reject["detail"]
    assert not any("\ufffd" in str(v) for v in result.items["transcript_raw"])


def test_header_that_is_not_utf8_is_a_layout_error(tmp_path: Path) -> None:
    (tmp_path / "validated.tsv").write_bytes(b"client_id\tpath\tsent\xe9nce\nc1\ta.mp3\thello\n")
    with pytest.raises(CorpusLayoutError, match="not valid UTF-8"):
        ingest_commonvoice(_source(tmp_path), "en")


def test_extension_case_exact_wins_single_match_taken_ambiguity_rejected(tmp_path: Path) -> None:
    """`X.mp3` in the TSV is the clip `X.MP3`; with `Y.MP3` and `Y.Mp3` nothing is guessed."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    clips = tmp_path / "clips"
    for seed, name in enumerate(["x.MP3", "y.MP3", "y.Mp3", "z.mp3", "z.MP3"]):
        _mp3(clips / name, 0.4 + 0.1 * seed, seed=seed)
    rows = [OLD_HEADER] + [f"c{i}\t{n}\tsentence {n}\t2\t0\t\t\t" for i, n in enumerate(["x.mp3", "y.mp3", "z.mp3"])]
    (tmp_path / "validated.tsv").write_text("\n".join(rows) + "\n")

    result = ingest_commonvoice(_source(tmp_path), "en")

    assert result.found == 3 and len(result.items) == 2
    items = result.items.set_index("transcript_raw")
    assert items.loc["sentence x.mp3", "audio_uri"] == str(clips / "x.MP3")
    assert items.loc["sentence z.mp3", "audio_uri"] == str(clips / "z.mp3")
    reject = result.rejects.iloc[0]
    assert reject["input_ref"] == f"{tmp_path / 'validated.tsv'}:3" and reject["reason"] == "malformed_metadata"
    assert "y.MP3" in reject["detail"] and "y.Mp3" in reject["detail"]
