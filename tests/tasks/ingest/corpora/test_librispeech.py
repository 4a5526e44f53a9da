"""LibriSpeech adapter on a real-layout fixture (nested roots, gaps, S3 copy) and on real dev-clean."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.core import storage
from tasks.ingest.corpora.base import CorpusLayoutError
from tasks.ingest.corpora.librispeech import ingest_librispeech, parse_speakers, subset_split
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone

REAL = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real" / "librispeech"

SPEAKERS = """\
; Some pipe(|) separated metadata about all LibriVox readers
;ID  |SEX| SUBSET           |MINUTES| NAME
1272 | M | dev-clean        |  8.08 | John Rose
19   | F | train-clean-100  | 25.19 | Kara Shallenberg
60   | M | train-clean-100  | 20.18 | |CBW|Simon
garbage line
"""
# rel path -> transcript (None: the .flac has no transcript line)
FLACS = {
    "dev-clean/1272/128104/1272-128104-0000.flac": "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES",
    "dev-clean/1272/128104/1272-128104-0001.flac": "NOR IS MISTER QUILTER'S MANNER LESS INTERESTING",
    "dev-clean/1272/128104/1272-128104-0003.flac": None,
    "train-clean-100/19/198/19-198-0000.flac": "NORTHANGER ABBEY",
    "test-other/60/7/60-7-0000.flac": "HE SAID",
    "custom/19/227/19-227-0000.flac": "THIS SUBSET HAS NO PREFIX",
    "dev-clean/777/1/777-1-0000.flac": "A READER NOT IN SPEAKERS TXT",
}
MISSING_FLAC = "dev-clean/1272/128104/1272-128104-0002.flac"
MISPLACED = "dev-clean/1272/1272-128104-0009.flac"
BADNAME = "dev-clean/1272/128104/take-two.flac"
CORRUPT = "train-clean-100/19/198/19-198-0001.flac"


def make_librispeech(parent: Path) -> Path:
    """parent/LibriSpeech/... with every awkward case; returns the LibriSpeech folder."""
    root = parent / "LibriSpeech"
    lines: dict[Path, list[str]] = {}
    for i, (rel, text) in enumerate(FLACS.items()):
        write_tone(root / rel, 0.3 + 0.05 * i, seed=i)
        utt = Path(rel).stem
        spk, chapter, _ = utt.split("-")
        if text is not None:
            lines.setdefault(root / rel.rsplit("/", 1)[0] / f"{spk}-{chapter}.trans.txt", []).append(f"{utt} {text}")
    chapter = root / "dev-clean/1272/128104/1272-128104.trans.txt"
    lines[chapter] += ["1272-128104-0002 THIS LINE HAS NO FLAC", "1272-128104-0000 A REPEATED LINE", "oops", ""]
    lines[root / "train-clean-100/19/198/19-198.trans.txt"].append("19-198-0001 A CORRUPT FILE")
    lines[root / "train-clean-100/19/198/19-198.trans.txt"].append("60-7-0001 WRONG CHAPTER")
    for path, content in lines.items():
        path.write_text("\n".join(content) + "\n")
    write_tone(root / MISPLACED, 0.3, seed=50)
    write_tone(root / BADNAME, 0.3, seed=51)
    (root / CORRUPT).write_bytes(b"fLaC" + bytes(range(200)))
    (root / "dev-clean/1272/128104/._1272-128104-0000.flac").write_bytes(b"\x00\x05\x16\x07")
    (root / "SPEAKERS.TXT").write_text(SPEAKERS)
    (root / "README.TXT").write_text("LibriSpeech ASR corpus\n")
    return root


def _source(path: str, **kw: object) -> SourceSpec:
    return SourceSpec(name="ls", kind="librispeech", path=path, **kw)


def test_labels_splits_and_gaps(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    result = ingest_librispeech(_source(str(tmp_path)), "fa")

    # 7 named .flac + misplaced + bad name + corrupt + line without flac + repeated/oops/wrong-chapter lines
    assert result.found == 7 + 3 + 1 + 3 == len(result.items) + len(result.rejects)
    items = result.items.set_index("utterance_id")
    accepted = {f"ls/{Path(rel).stem}": text for rel, text in FLACS.items() if text is not None}
    assert sorted(items.index) == sorted(accepted)
    for uid, text in accepted.items():
        assert items.loc[uid, "transcript_raw"] == text and items.loc[uid, "transcript_origin"] == "human"
    assert items["sentiment"].isna().all() and items["sentiment_origin"].isna().all()
    assert set(items["language"]) == {"en"} and set(items["license"]) == {"CC-BY-4.0"}
    assert set(items["corpus"]) == {"librispeech"}
    assert items["split"].to_dict() == {
        "ls/1272-128104-0000": "dev",
        "ls/1272-128104-0001": "dev",
        "ls/19-198-0000": "train",
        "ls/60-7-0000": "test",
        "ls/19-227-0000": "train",  # subset "custom": SPEAKERS.TXT puts speaker 19 in train-clean-100
        "ls/777-1-0000": "dev",
    }
    assert items["gender"].to_dict() == {
        "ls/1272-128104-0000": "male",
        "ls/1272-128104-0001": "male",
        "ls/19-198-0000": "female",
        "ls/60-7-0000": "male",  # NAME "|CBW|Simon" holds separators
        "ls/19-227-0000": "female",
        "ls/777-1-0000": None,
    }
    assert items.loc["ls/1272-128104-0000", "speaker_id"] == "1272"
    assert items.loc["ls/19-198-0000", "audio_uri"] == str(root / "train-clean-100/19/198/19-198-0000.flac")

    rejects = result.rejects.set_index("input_ref")
    chapter = str(root / "dev-clean/1272/128104/1272-128104.trans.txt")
    assert rejects.loc[f"{chapter}:3", "reason"] == "missing_audio"
    assert str(root / MISSING_FLAC) in rejects.loc[f"{chapter}:3", "detail"]
    no_line = str(root / "dev-clean/1272/128104/1272-128104-0003.flac")
    assert rejects.loc[no_line, "reason"] == "malformed_metadata" and "no line" in rejects.loc[no_line, "detail"]
    assert "repeats utterance 1272-128104-0000" in rejects.loc[f"{chapter}:4", "detail"]
    assert "utterance id" in rejects.loc[f"{chapter}:5", "detail"]
    wrong = str(root / "train-clean-100/19/198/19-198.trans.txt") + ":3"
    assert "does not belong to chapter 19-198" in rejects.loc[wrong, "detail"]
    assert "not in 1272/128104/" in rejects.loc[str(root / MISPLACED), "detail"]
    assert rejects.loc[str(root / BADNAME), "reason"] == "malformed_metadata"
    assert rejects.loc[str(root / CORRUPT), "reason"] == "unreadable_audio"
    assert not any("._" in ref for ref in rejects.index)


def test_nested_roots_give_the_same_items(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path / "corpus")
    outer = ingest_librispeech(_source(str(tmp_path / "corpus")), "en")
    inner = ingest_librispeech(_source(str(root) + "/"), "en")
    pd.testing.assert_frame_equal(outer.items, inner.items)
    assert outer.found == inner.found

    subset = ingest_librispeech(_source(str(root / "dev-clean")), "en")
    dev = outer.items[outer.items["audio_uri"].str.contains("/dev-clean/")].reset_index(drop=True)
    pd.testing.assert_frame_equal(subset.items.reset_index(drop=True), dev)
    assert subset.items["gender"].tolist() == ["male", "male", None]  # SPEAKERS.TXT found next to dev-clean


def test_license_override_and_helpers(tmp_path: Path) -> None:
    make_librispeech(tmp_path)
    result = ingest_librispeech(_source(str(tmp_path), license="custom"), "en")
    assert set(result.items["license"]) == {"custom"}
    assert [subset_split(s) for s in ("train-other-500", "dev-clean", "test-clean", "custom", None)] == [
        "train", "dev", "test", None, None,
    ]
    speakers = parse_speakers(SPEAKERS)
    assert sorted(speakers) == ["1272", "19", "60"] and speakers["19"].subset == "train-clean-100"


def test_wrong_folder_is_a_layout_error(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav", 0.2)
    write_tone(tmp_path / "b.flac", 0.2)
    with pytest.raises(CorpusLayoutError, match=r"expected <subset>/<speaker>/<chapter>/.*found no \.trans\.txt"):
        ingest_librispeech(_source(str(tmp_path)), "en")
    with pytest.raises(CorpusLayoutError, match="empty or does not exist"):
        ingest_librispeech(_source(str(tmp_path / "nope")), "en")
    with pytest.raises(ValueError, match="unknown option"):
        ingest_librispeech(_source(str(tmp_path), options={"subset": "dev"}), "en")


@pytest.mark.aws
def test_s3_copy_ingests_identically(tmp_path: Path, s3_bucket: str) -> None:
    root = make_librispeech(tmp_path / "corpus")
    uri = f"s3://{s3_bucket}/corpora/LibriSpeech"
    for path in storage.list_files(str(root)):
        storage.copy_file(path, storage.join(uri, storage.relative_to(path, str(root))))
    local = ingest_librispeech(_source(str(root)), "en")
    remote = ingest_librispeech(_source(uri + "/"), "en")

    assert remote.found == local.found and len(remote.items) == len(local.items) == 6
    left = local.items.assign(audio_uri=local.items["audio_uri"].str.replace(str(root), "<root>"))
    right = remote.items.assign(audio_uri=remote.items["audio_uri"].str.replace(uri, "<root>"))
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True))
    cols = ["input_ref", "reason"]
    lrej = local.rejects.assign(input_ref=local.rejects["input_ref"].str.replace(str(root), "<root>"))[cols]
    rrej = remote.rejects.assign(input_ref=remote.rejects["input_ref"].str.replace(uri, "<root>"))[cols]
    pd.testing.assert_frame_equal(
        lrej.sort_values(cols).reset_index(drop=True), rrej.sort_values(cols).reset_index(drop=True)
    )
    # A subset-folder root on S3 still finds SPEAKERS.TXT next to it.
    subset = ingest_librispeech(_source(f"{uri}/dev-clean"), "en")
    assert subset.items["gender"].tolist() == ["male", "male", None]


@pytest.mark.realdata
def test_real_dev_clean() -> None:
    dev = REAL / "LibriSpeech" / "dev-clean"
    if not dev.is_dir():
        pytest.skip(f"real LibriSpeech sample not found at {dev}")
    result = ingest_librispeech(_source(str(dev)), "en")

    assert result.found == 75 and len(result.items) == 75 and result.rejects.empty
    items = result.items.set_index("utterance_id")
    expected: dict[str, str] = {}
    for trans in dev.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, text = line.split(" ", 1)
            expected[f"ls/{utt}"] = text
    assert len(expected) == 75 and items["transcript_raw"].to_dict() == expected
    assert items.index.str.rsplit("-", n=1).str[0].nunique() == 6  # six chapters
    speakers = parse_speakers((REAL / "LibriSpeech" / "SPEAKERS.TXT").read_text())
    for uid, row in items.iterrows():
        assert row["gender"] == speakers[row["speaker_id"]].gender, uid
    assert set(items["gender"]) == {"female", "male"}
    assert set(items["split"]) == {"dev"} and set(items["sample_rate"]) == {16000}
    assert items["duration_s"].sum() == pytest.approx(663.9, abs=0.1)
    assert items["sentiment"].isna().all()


def test_bom_crlf_latin1_and_upper_case_flac(tmp_path: Path) -> None:
    """Re-saved copies: a BOM + CRLF transcript, a Latin-1 SPEAKERS.TXT, a `.FLAC`, a tab after the id."""
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1272" / "128104"
    write_tone(chapter / "1272-128104-0000.flac", 0.3, seed=1)
    write_tone(chapter / "1272-128104-0001.FLAC", 0.3, seed=2)
    write_tone(chapter / "1272-128104-0002.flac", 0.3, seed=3)
    (chapter / "1272-128104.trans.txt").write_bytes(
        "\ufeff1272-128104-0000 MISTER QUILTER\r\n1272-128104-0001 NOR IS MISTER QUILTER'S\r\n"
        "1272-128104-0002\tCAF\u00c9 AU LAIT\r\n".encode()
    )
    (tmp_path / "LibriSpeech" / "SPEAKERS.TXT").write_bytes("1272 | F | dev-clean | 8.0 | Ren\u00e9e\n".encode("latin-1"))

    result = ingest_librispeech(_source(str(tmp_path)), "en")

    assert result.rejects.empty, result.rejects.to_dict("records")
    assert result.found == 3
    items = result.items.set_index("utterance_id")
    assert items["transcript_raw"].to_dict() == {
        "ls/1272-128104-0000": "MISTER QUILTER",
        "ls/1272-128104-0001": "NOR IS MISTER QUILTER'S",
        "ls/1272-128104-0002": "CAF\u00c9 AU LAIT",
    }
    assert items.loc["ls/1272-128104-0001", "audio_uri"] == str(chapter / "1272-128104-0001.FLAC")
    assert set(items["gender"]) == {"female"}


def test_same_utterance_in_two_cases_is_one_reject(tmp_path: Path) -> None:
    chapter = tmp_path / "dev-clean" / "1272" / "128104"
    write_tone(chapter / "1272-128104-0000.flac", 0.3, seed=1)
    write_tone(chapter / "1272-128104-0000.FLAC", 0.3, seed=2)
    (chapter / "1272-128104.trans.txt").write_text("1272-128104-0000 HELLO\n")

    result = ingest_librispeech(_source(str(tmp_path)), "en")

    assert result.found == 2 and len(result.items) == 1
    reject = result.rejects.iloc[0]
    assert reject["reason"] == "malformed_metadata" and "same utterance" in reject["detail"]
    assert reject["input_ref"] == str(chapter / "1272-128104-0000.flac")
