"""Publishing and pruning releases: no copy of an unchanged release, only complete releases count,
half-written ones are removed and reported, files honour the umask (issue 14 items 3-4, issue 15 item 5)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import MANIFEST_NAMES, UTTERANCES
from manifests.validate import validate_release
from tasks.publish.releases import is_complete, prune_releases
from tests.tasks.releasebuild import build, tone_corpus, tone_spec


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)


def _releases(output: Path) -> list[str]:
    return sorted(p.name for p in (output / "releases").iterdir())


def test_a_rebuild_without_change_publishes_nothing_and_leaves_latest(tmp_path: Path) -> None:
    corpus = tone_corpus(tmp_path / "c")
    spec = tone_spec(corpus, tmp_path / "out")
    first = build(spec)
    assert first["published"] is True
    log = Log()
    again = build(spec, log=log)
    assert again["published"] is False and again["release"] == again["unchanged_since"] == first["release"]
    assert again["content_sha256"] == first["content_sha256"] and again["release_uri"] == first["release_uri"]
    assert again["changes"]["added"] == again["changes"]["removed"] == again["changes"]["changed"] == 0
    assert again["counts"] == first["counts"] and again["changes"]["previous_release"] == first["release"]
    assert _releases(tmp_path / "out") == [first["release"]]  # the new folder was removed
    assert (tmp_path / "out" / "LATEST").read_text().strip() == first["release"]
    assert any(line.startswith(f"no change since {first['release']}") and "nothing published" in line
               for line in log.lines)

    # An edited label is a change: a new release, LATEST moves, the card counts it.
    tone_corpus(corpus, "a.wav,I am so angry,negative,spk1\nb.wav,Just a day,neutral,spk2\n")
    third = build(spec)
    assert third["published"] is True and third["release"] != first["release"]
    assert third["changes"]["changed"] == 1 and third["changes"]["changed_columns"] == {
        "transcript": 1, "transcript_raw": 1, "sentiment": 1}
    utts = mio.read_release(str(tmp_path / "out"))[UTTERANCES].set_index("utterance_id")
    assert utts.loc["s/a", "sentiment"] == "negative" and "angry" in utts.loc["s/a", "transcript"]


def _fake_release(output: Path, name: str, missing: tuple[str, ...] = ()) -> Path:
    """A release folder holding the files `is_complete` looks for, less `missing` (relative paths)."""
    paths = mio.release_paths(str(output), name)
    files = [*(paths.manifest(n) for n in MANIFEST_NAMES), paths.card_json, paths.card_md]
    for uri in files:
        if os.path.relpath(uri, paths.root) not in missing:
            data = json.dumps({"content_sha256": name}).encode() if uri == paths.card_json else b"x"
            fs.write_bytes(uri, data)
    return Path(paths.root)


def test_prune_counts_only_complete_releases_and_removes_half_written_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fake_release(out, "20240101T000000Z")
    _fake_release(out, "20240102T000000Z")  # LATEST
    _fake_release(out, "20250101T000000Z", missing=("dataset_card.json", "dataset_card.md"))
    _fake_release(out, "20250102T000000Z", missing=("manifests/rejects.parquet",))
    _fake_release(out, "20250103T000000Z", missing=("dataset_card.md",))
    _fake_release(out, "20260101T000000Z")  # the release just published
    (out / "releases" / "notes.txt").write_text("not a release: left alone")
    mio.point_latest(str(out), "20240102T000000Z")
    assert not is_complete(mio.release_paths(str(out), "20250103T000000Z"))

    report = prune_releases(str(out), keep=2, current="20260101T000000Z")
    # Three complete releases, keep 2: the oldest complete one goes; LATEST's and the new one stay.
    assert report.pruned == ["20240101T000000Z"]
    assert report.incomplete == ["20250101T000000Z", "20250102T000000Z", "20250103T000000Z"]
    assert _releases(out) == ["20240102T000000Z", "20260101T000000Z", "notes.txt"]


def test_a_release_that_failed_validation_does_not_count_and_is_removed(tmp_path: Path) -> None:
    """A release whose validation failed had every file, so it counted toward keep_releases and pushed
    a good release out. Publish now marks it invalid: it never counts and the next prune removes it."""
    from tasks.publish.releases import mark_invalid

    out = tmp_path / "out"
    _fake_release(out, "20240101T000000Z")
    _fake_release(out, "20240102T000000Z")  # LATEST
    bad = mio.release_paths(str(out), "20250101T000000Z")
    _fake_release(out, bad.name)
    assert is_complete(bad)
    marker = mark_invalid(bad, ["content_sha256 mismatch"])
    assert "content_sha256 mismatch" in Path(marker).read_text()
    assert not is_complete(bad)
    mio.point_latest(str(out), "20240102T000000Z")
    report = prune_releases(str(out), keep=2, current="20260101T000000Z")
    assert report.incomplete == ["20250101T000000Z"] and report.pruned == []
    assert _releases(out) == ["20240101T000000Z", "20240102T000000Z"]


def test_latest_is_never_pruned_even_when_incomplete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _fake_release(out, "20240101T000000Z", missing=("dataset_card.md",))
    _fake_release(out, "20250101T000000Z")
    mio.point_latest(str(out), "20240101T000000Z")
    report = prune_releases(str(out), keep=1)
    assert report.incomplete == [] and report.pruned == []
    assert _releases(out) == ["20240101T000000Z", "20250101T000000Z"]


def test_prune_on_s3(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/data"
    names = ["20240101T000000Z", "20240102T000000Z", "20240102T000000Z-2", "20250101T000000Z"]
    for name in names[:2]:
        _fake_release(out, name)
    _fake_release(out, names[2], missing=("dataset_card.json",))  # shares a prefix with the one before
    _fake_release(out, names[3])
    mio.point_latest(out, names[3])
    report = prune_releases(out, keep=2, current=names[3])
    assert report.pruned == [names[0]] and report.incomplete == [names[2]]
    assert fs.list_prefix(fs.join(out, "releases")) == [names[1], names[3]]
    assert is_complete(mio.release_paths(out, names[1]))


def test_publish_reports_and_removes_half_written_releases(tmp_path: Path) -> None:
    """The repro: killed publishes left two half-written releases; a good build with keep_releases=2."""
    corpus = tone_corpus(tmp_path / "c")
    out = tmp_path / "out"
    first = build(tone_spec(corpus, out, run={"keep_releases": 2}))
    older = mio.release_paths(str(out), "20200101T000000Z").root
    shutil.copytree(first["release_uri"], older)  # an older complete release
    for name, drop in (("20250101T000000Z", "dataset_card.json"), ("20250102T000000Z", "dataset_card.md")):
        half = Path(mio.release_paths(str(out), name).root)
        shutil.copytree(first["release_uri"], half)
        (half / drop).unlink()
    tone_corpus(corpus, "a.wav,I am so angry,negative,spk1\nb.wav,Just a day,neutral,spk2\n")
    warnings = Log()
    second = build(tone_spec(corpus, out, run={"keep_releases": 2}), warn=warnings)
    # Before: the two half-written ones counted and the complete LATEST-before-this-one could go.
    assert _releases(out) == [first["release"], second["release"]]
    (fired,) = [g for g in second["guards"] if g["guard"] == "incomplete_releases_removed"]
    assert fired["level"] == "warning" and fired["detail"]["releases"] == ["20250101T000000Z", "20250102T000000Z"]
    card = mio.read_card(mio.resolve_release(str(out)))
    assert any(g["guard"] == "incomplete_releases_removed" for g in card["guards"])
    assert any("removed 2 incomplete release(s)" in line for line in warnings.lines)
    assert validate_release(str(out)).ok


def test_published_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        result = build(tone_spec(tone_corpus(tmp_path / "c"), tmp_path / "out"))
    finally:
        os.umask(old)
    root = Path(result["release_uri"])
    files = [tmp_path / "out" / "LATEST", root / "dataset_card.json", root / "dataset_card.md",
             *(p for p in (root / "manifests").rglob("*") if p.is_file())]
    assert any(p.name == "part-00000.parquet" for p in files)  # the parts of the manifest folders
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o640)}
    folders = [root, *(p for p in (root / "manifests").rglob("*") if p.is_dir())]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o750)}
