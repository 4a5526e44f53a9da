"""Pre-flight (tasks/preflight.py via check_spec_paths): specs that cannot work stop before any work.

#15.3: an output inside a source folder, a metadata header without `file_name`; #14.12: a missing S3
source bucket; #15.7: a metadata file named by the spec. Each is refused with a message naming the
field and the fix, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.stub import Stubber

from tasks.core import storage
from tasks.preflight import check_spec_paths
from tasks.spec import SpecError, parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone


def _spec(source: dict, output: str, **extra: object):
    return parse_spec({"name": "d", "output": output, "sources": [{"name": "s", "kind": "folder", **source}], **extra})


def _corpus(root: Path) -> Path:
    write_tone(root / "a.wav", 0.3)
    return root


def test_output_inside_a_source_is_refused(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    with pytest.raises(SpecError) as err:
        check_spec_paths(_spec({"path": str(root)}, str(root / "releases")))
    assert f"output: '{root / 'releases'}' is inside source 's'" in str(err.value)
    assert "would ingest this build's releases" in str(err.value)
    assert not (root / "releases").exists()
    # through a symlink it is the same folder
    (tmp_path / "link").symlink_to(root)
    with pytest.raises(SpecError, match="is inside source 's'"):
        check_spec_paths(_spec({"path": str(tmp_path / "link")}, str(root / "out")))
    check_spec_paths(_spec({"path": str(root)}, str(tmp_path / "corpus-out")))  # a sibling is fine


def test_output_inside_an_s3_source_is_refused() -> None:
    spec = _spec({"path": "s3://bkt/corpora/en"}, "s3://bkt/corpora/en/out")
    from tasks.preflight import _output_inside_source

    assert len(_output_inside_source(spec)) == 1
    assert not _output_inside_source(_spec({"path": "s3://bkt/corpora/en"}, "s3://bkt/corpora/english-out"))


def test_metadata_header_without_file_name_stops_preflight(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    (root / "metadata.csv").write_text("filename,transcript,sentiment\na.wav,hello,positive\n")
    with pytest.raises(SpecError) as err:
        check_spec_paths(_spec({"path": str(root)}, str(tmp_path / "out")))
    message = str(err.value)
    assert "sources.0 ('s'): metadata file" in message and "no file_name column" in message
    assert "the closest is 'filename': rename it to file_name" in message
    assert "check `kind" not in message  # the kind is right; the metadata is wrong


def test_stray_quote_in_metadata_stops_preflight(tmp_path: Path) -> None:
    """#14.6: the build exited 0 on pseudo-labels; now pre-flight refuses and names the opening line."""
    root = _corpus(tmp_path / "corpus")
    write_tone(root / "b.wav", 0.3, seed=2)
    (root / "metadata.csv").write_text('file_name,transcript,sentiment\na.wav,"oops,positive\nb.wav,fine,negative\n')
    with pytest.raises(SpecError, match=r"sources\.0 \('s'\): metadata file .* line 2 opens a quoted field"):
        check_spec_paths(_spec({"path": str(root)}, str(tmp_path / "out")))


def test_wrong_kind_is_found_in_preflight(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    spec = parse_spec({"name": "d", "output": str(tmp_path / "out"),
                       "sources": [{"name": "r", "kind": "librispeech", "path": str(root)}]})
    with pytest.raises(SpecError, match=r"sources\.0 \('r'\): librispeech source 'r'.*check `kind: librispeech`"):
        check_spec_paths(spec)


def test_missing_s3_source_bucket_stops_preflight(s3_bucket: str, tmp_path: Path) -> None:
    """#14.12: a missing S3 source bucket started the flow, retried and exited 1."""
    with pytest.raises(SpecError) as err:
        check_spec_paths(_spec({"path": "s3://no-such-bucket-here/corpus"}, str(tmp_path / "out")))
    assert "sources.0.path: nothing at s3://no-such-bucket-here/corpus" in str(err.value)
    assert "bucket 'no-such-bucket-here' does not exist" in str(err.value)
    with pytest.raises(SpecError, match=f"bucket '{s3_bucket}' exists but has no objects under that prefix"):
        check_spec_paths(_spec({"path": f"s3://{s3_bucket}/empty"}, str(tmp_path / "out")))
    storage.write_bytes(f"s3://{s3_bucket}/corpus/a.wav", (write_tone(tmp_path / "a.wav", 0.3)).read_bytes())
    check_spec_paths(_spec({"path": f"s3://{s3_bucket}/corpus"}, str(tmp_path / "out")))


def test_s3_source_access_denied_is_named_in_preflight(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    with Stubber(storage.s3_client()) as stub:
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("list_objects_v2", service_error_code="AccessDenied", service_message="Access Denied",
                              http_status_code=403)
        with pytest.raises(SpecError) as err:
            check_spec_paths(_spec({"path": "s3://locked/corpus"}, str(tmp_path / "out")))
    assert "access denied listing s3://locked/corpus (ListObjectsV2 on bucket 'locked')" in str(err.value)


def test_metadata_named_by_the_spec_is_checked(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    out = str(tmp_path / "out")
    with pytest.raises(SpecError, match=r"sources\.0\.metadata: metadata file .*labels\.csv' does not exist"):
        check_spec_paths(_spec({"path": str(root), "metadata": str(tmp_path / "labels.csv")}, out))
    (tmp_path / "labels.txt").write_text("file_name\na.wav\n")
    with pytest.raises(SpecError, match=r"must end in \.csv, \.tsv, \.jsonl"):
        check_spec_paths(_spec({"path": str(root), "metadata": str(tmp_path / "labels.txt")}, out))
    spec = parse_spec({"name": "d", "output": out, "sources": [
        {"name": "r", "kind": "ravdess", "path": str(root), "metadata": str(tmp_path / "labels.txt")}]})
    with pytest.raises(SpecError, match="only `folder` sources read a metadata file"):
        check_spec_paths(spec)


def test_allow_failed_sources_must_name_sources(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    with pytest.raises(SpecError, match=r"run\.allow_failed_sources: 'typo' is not a source of this spec"):
        check_spec_paths(_spec({"path": str(root)}, str(tmp_path / "out"), run={"allow_failed_sources": ["typo"]}))


def test_layout_check_writes_nothing(tmp_path: Path) -> None:
    """Pre-flight stops each adapter before audio is probed or cached: an hf_dataset whose audio is
    embedded bytes gets no `.voicetone-audio` cache from pre-flight (the build writes it later)."""
    datasets = pytest.importorskip("datasets")
    wav = write_tone(tmp_path / "src" / "clip.wav", 0.3)
    ds = datasets.Dataset.from_dict({"audio": [str(wav)], "text": ["hello"]})
    ds.cast_column("audio", datasets.Audio(decode=False)).save_to_disk(str(tmp_path / "saved"))
    spec = parse_spec({"name": "d", "output": str(tmp_path / "out"), "sources": [
        {"name": "hf", "kind": "hf_dataset", "path": str(tmp_path / "saved"),
         "options": {"columns": {"transcript": "text"}}}]})
    check_spec_paths(spec)
    assert not (tmp_path / "saved" / ".voicetone-audio").exists()
    bad = spec.model_copy(deep=True)
    bad.sources[0].options = {"columns": {"transcript": "txt"}}
    with pytest.raises(SpecError, match="options.columns names column"):  # found without reading audio
        check_spec_paths(bad)
    from tasks.ingest.corpora.hf_dataset import ingest_hf_dataset

    assert len(ingest_hf_dataset(spec.sources[0], "en").items) == 1  # the real ingest still writes the cache
    assert (tmp_path / "saved" / ".voicetone-audio").exists()
