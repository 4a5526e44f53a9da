"""Paths read from metadata cannot leave the corpus root (`../`, absolute, symlinks out): every adapter
that takes a path or file name from a metadata file, and the shared guard in build_result."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.ingest.corpora.base import Candidate, build_result
from tasks.ingest.corpora.commonvoice import ingest_commonvoice
from tasks.ingest.corpora.hf_dataset import ingest_hf_dataset
from tasks.ingest.corpora.msp_podcast import ingest_msp_podcast
from tasks.ingest.corpora.paths import UnsafePathError, safe_relative_path, symlink_escape
from tasks.ingest.corpora.ravdess import ingest_ravdess
from tasks.ingest.corpora.slue_voxceleb import ingest_slue_voxceleb
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone


def _source(kind: str, root: Path, **options: object) -> SourceSpec:
    return SourceSpec(name="s", kind=kind, path=str(root), options=options)


def _reasons(result) -> dict[str, str]:
    return dict(zip(result.rejects["input_ref"], result.rejects["reason"], strict=True))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A real audio file outside every corpus root: the target of the escape attempts."""
    return write_tone(tmp_path / "elsewhere" / "private.wav", 0.5, seed=99)


@pytest.mark.parametrize("name", ["../x.wav", "a/../../x.wav", "/etc/passwd", "\\\\server\\share\\x.wav",
                                  "C:\\Users\\x.wav", "c:x.wav", "s3://other-bucket/x.wav", "https://h/x.wav", ".."])
def test_safe_relative_path_refuses_escapes(name: str) -> None:
    with pytest.raises(UnsafePathError) as err:
        safe_relative_path(name, "file_name")
    assert err.value.reason == "unsafe_path" and repr(name) in str(err.value)


@pytest.mark.parametrize(("name", "rel"), [("a/b.wav", "a/b.wav"), ("./a//b.wav", "a/b.wav"),
                                           ("a/../b.wav", "b.wav"), ("a\\b.wav", "a/b.wav")])
def test_safe_relative_path_normalises(name: str, rel: str) -> None:
    assert safe_relative_path(name) == rel


def test_symlink_escape(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    inside = write_tone(root / "in.wav", 0.2)
    (root / "link_in.wav").symlink_to(inside)
    (root / "link_out.wav").symlink_to(outside)
    assert symlink_escape(str(root), str(root / "link_in.wav")) is None
    assert symlink_escape(str(root), str(root / "link_out.wav")) == str(outside.resolve())
    assert symlink_escape(str(root), str(outside)) is None  # not below the root: not this guard's call
    assert symlink_escape("s3://b/root", "s3://b/root/x.wav") is None
    linked_root = tmp_path / "linked-root"
    linked_root.symlink_to(root)  # a root that is itself a symlink is fine
    assert symlink_escape(str(linked_root), str(linked_root / "in.wav")) is None


def test_build_result_rejects_symlinks_out_for_every_adapter(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    good = write_tone(root / "good.wav", 0.3)
    (root / "bad.wav").symlink_to(outside)
    source = _source("folder", root)
    result = build_result(source, [Candidate("good", str(good), "good"), Candidate("bad", str(root / "bad.wav"), "bad")])
    assert list(result.items["utterance_id"]) == ["s/good"]
    row = result.rejects.iloc[0]
    assert (row["input_ref"], row["reason"]) == ("bad", "unsafe_path") and "symlink" in row["detail"]


def test_ravdess_symlink_out(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "ravdess"
    write_tone(root / "Actor_01" / "03-01-05-01-02-01-01.wav", 0.3)
    (root / "Actor_01" / "03-01-03-01-01-01-01.wav").symlink_to(outside)
    result = ingest_ravdess(_source("ravdess", root), "en")
    assert len(result.items) == 1
    assert [r for r in result.rejects["reason"]] == ["unsafe_path"]


def test_slue_ids_and_symlinks(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "slue"
    header = "id\tnormalized_text\tspeaker_id\tsplit\tsentiment\tstart_second\tend_second"
    rows = ["good_00001\thi\tspk\tfine-tune\tNeutral\t0.0\t0.3",
            "../../elsewhere/private\thi\tspk\tfine-tune\tNeutral\t0.0\t0.3",
            "/etc/passwd\thi\tspk\tfine-tune\tNeutral\t0.0\t0.3",
            "linked_00001\thi\tspk\tfine-tune\tNeutral\t0.0\t0.3"]
    root.mkdir()
    (root / "slue-voxceleb_fine-tune.tsv").write_text("\n".join([header, *rows]) + "\n")
    write_tone(root / "fine-tune_raw" / "good_00001.flac", 0.5)
    (root / "fine-tune_raw" / "linked_00001.flac").symlink_to(outside)
    result = ingest_slue_voxceleb(_source("slue_voxceleb", root), "en")
    assert list(result.items["utterance_id"]) == ["s/good_00001"]
    reasons = _reasons(result)
    assert reasons == {"slue-voxceleb_fine-tune.tsv:3": "unsafe_path", "slue-voxceleb_fine-tune.tsv:4": "unsafe_path",
                       "slue-voxceleb_fine-tune.tsv:5": "unsafe_path"}


def test_msp_podcast_file_names_and_symlinks(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "msp"
    write_tone(root / "Audios" / "MSP-PODCAST_0001_0001.wav", 0.3)
    (root / "Audios" / "MSP-PODCAST_0001_0002.wav").symlink_to(outside)
    (root / "Labels").mkdir(parents=True)
    header = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
    rows = ["MSP-PODCAST_0001_0001.wav,H,3,4,3,1,Male,Train", "MSP-PODCAST_0001_0002.wav,H,3,4,3,1,Male,Train",
            "../../elsewhere/private.wav,H,3,4,3,1,Male,Train", "/etc/private.wav,H,3,4,3,1,Male,Train"]
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join([header, *rows]) + "\n")
    result = ingest_msp_podcast(_source("msp_podcast", root), "en")
    assert list(result.items["utterance_id"]) == ["s/MSP-PODCAST_0001_0001"]
    assert sorted(_reasons(result).values()) == ["unsafe_path"] * 3


def test_hf_dataset_paths(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "hf"
    write_tone(root / "clips" / "inside.wav", 0.3, seed=1)
    (root / "clips" / "link.wav").symlink_to(outside)
    data = outside.read_bytes()
    cells = [
        {"path": "clips/inside.wav", "bytes": None},  # 0: fine
        {"path": str(root / "clips" / "inside.wav"), "bytes": None},  # 1: absolute but inside: fine
        {"path": str(outside), "bytes": None},  # 2: absolute outside
        {"path": "../elsewhere/private.wav", "bytes": None},  # 3: climbs out
        {"path": "clips/link.wav", "bytes": None},  # 4: symlink out
        {"path": str(outside), "bytes": data},  # 5: outside path but bytes embedded: the bytes are used
    ]
    table = pa.table({"audio": pa.array(cells, type=pa.struct([("path", pa.string()), ("bytes", pa.binary())])),
                      "text": [f"t{i}" for i in range(len(cells))]})
    pq.write_table(table, root / "train.parquet")
    result = ingest_hf_dataset(_source("hf_dataset", root, columns={"audio": "audio", "transcript": "text"}), "en")
    base = f"{root}#train"
    assert _reasons(result) == {f"{base}:2": "unsafe_path", f"{base}:3": "unsafe_path", f"{base}:4": "unsafe_path"}
    uris = dict(zip(result.items["utterance_id"], result.items["audio_uri"], strict=True))
    assert uris["s/train/0"] == uris["s/train/1"] == str(root / "clips" / "inside.wav")
    assert ".voicetone-audio" in uris["s/train/5"] and str(outside) not in uris.values()
    # the trusted, locally written case is an explicit opt-in
    allowed = ingest_hf_dataset(_source("hf_dataset", root, columns={"audio": "audio", "transcript": "text"},
                                        allow_absolute_paths=True), "en")
    assert f"{base}:2" not in _reasons(allowed)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_commonvoice_path_column(tmp_path: Path) -> None:
    clips = tmp_path / "cv" / "en" / "clips"
    wav = write_tone(clips / "a.wav", 0.5)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav), str(clips / "a.mp3")], check=True,
                   timeout=60)
    os.remove(wav)
    header = "client_id\tpath\tsentence"
    rows = ["c1\ta.mp3\tfine", "c2\t/etc/passwd\tabsolute", "c3\tC:\\x.mp3\tdrive", "c4\tclips/../../../x.mp3\tclimbs"]
    (clips.parent / "validated.tsv").write_text("\n".join([header, *rows]) + "\n")
    result = ingest_commonvoice(_source("commonvoice", tmp_path / "cv"), "en")
    assert len(result.items) == 1
    assert sorted(_reasons(result).values()) == ["unsafe_path"] * 3
