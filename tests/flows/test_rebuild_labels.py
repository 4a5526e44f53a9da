"""Rebuilds through the real flow: edited labels and licences reach the release and the card counts
them; a rebuild with no change publishes nothing; a held output lock stops a second build
(issue 14 items 1 and 7, issue 15 item 5)."""

from __future__ import annotations

from pathlib import Path

import yaml

from flows import cli
from flows.build_dataset import build_dataset
from manifests.io import read_card, read_release, resolve_release
from manifests.schema import UTTERANCES
from tasks.core.output_lock import hold
from tasks.spec import load_spec

HEADER = "file_name,transcript,sentiment,speaker_id\n"


def _write_spec(path: Path, corpus: Path, output: Path, license: str) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "relabel", "output": str(output),
        "sources": [{"name": "s", "kind": "folder", "path": str(corpus), "license": license}],
        "augment": {"enabled": False}, "run": {"lock_wait_s": 0},
    }))
    return path


def _utterance(output: Path) -> dict:
    (row,) = read_release(str(output))[UTTERANCES].to_dict("records")
    return row


def test_rebuild_reflects_edited_labels_and_licence(prefect_harness, tmp_path, speech_wav, capsys):
    corpus = tmp_path / "corpus"
    speech_wav("I am so happy to see you", name="corpus/a.wav")
    out = tmp_path / "out"
    spec_path = _write_spec(tmp_path / "spec.yaml", corpus, out, "CC-BY-4.0")

    (corpus / "metadata.csv").write_text(HEADER + "a.wav,I am so happy to see you,positive,spk1\n")
    first = build_dataset(load_spec(spec_path))
    row = _utterance(out)
    assert (row["sentiment"], row["speaker_id"]) == ("positive", "spk1") and "happy" in row["transcript"]

    # The repro of issue 14: the same clip, its row edited. Before, the release still said happy/positive.
    (corpus / "metadata.csv").write_text(HEADER + "a.wav,I am so angry to see you,negative,spk2\n")
    second = build_dataset(load_spec(spec_path))
    row = _utterance(out)
    assert (row["sentiment"], row["sentiment_origin"], row["speaker_id"]) == ("negative", "human", "spk2")
    assert "angry" in row["transcript"] and second["release"] != first["release"]
    changes = read_card(resolve_release(str(out)))["changes"]
    assert changes["changed"] == 1 and changes["previous_release"] == first["release"]
    assert {"transcript", "sentiment", "speaker_id"} <= set(changes["changed_columns"])

    # The licence edited in the spec, and the human sentiment dropped: the text labeler labels the
    # *current* transcript (happy), it does not keep the human "negative" nor anything cached.
    _write_spec(spec_path, corpus, out, "CC0-1.0")
    (corpus / "metadata.csv").write_text(HEADER + "a.wav,I am so happy to see you,,spk2\n")
    third = build_dataset(load_spec(spec_path))
    row = _utterance(out)
    assert row["license"] == "CC0-1.0"
    assert (row["sentiment"], row["sentiment_origin"]) == ("positive", "text_classifier")
    changes = third["changes"]
    assert changes["changed"] >= 1 and {"license", "sentiment", "transcript"} <= set(changes["changed_columns"])

    # Nothing changed: nothing is published, LATEST stays, and the CLI says so.
    releases = sorted(p.name for p in (out / "releases").iterdir())
    capsys.readouterr()
    assert cli.main(["build", str(spec_path)]) == cli.EXIT_OK
    said = capsys.readouterr().out
    assert f"no change: the build equals release {third['release']}" in said and "nothing was published" in said
    assert sorted(p.name for p in (out / "releases").iterdir()) == releases
    assert (out / "LATEST").read_text().strip() == third["release"]

    # Another build holds the output: this one stops at once (lock_wait_s 0), naming the holder, exit 3.
    with hold(str(out), "someone-else", wait_s=0):
        assert cli.main(["build", str(spec_path)]) == cli.EXIT_BUSY
    err = capsys.readouterr().err
    assert "another build is writing to" in err and "spec 'someone-else'" in err
