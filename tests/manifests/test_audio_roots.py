"""audio_roots / $VOICETONE_AUDIO_ROOTS: training on a machine where the source corpora live elsewhere."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from manifests.audio_io import read_audio
from manifests.dataset import AsrDataset, ClassifierDataset, collate_pad
from manifests.export import export_lhotse, export_nemo
from manifests.hf import to_hf_dataset
from manifests.release import AUDIO_ROOTS_ENV, AudioRoots, open_release, parse_audio_roots, write_pool_index
from tests.manifests.conftest import tone_wav
from tests.manifests.release_factory import make_tables, write_release


@pytest.fixture(autouse=True)
def _no_env_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIO_ROOTS_ENV, raising=False)


def _build(base: Path, audio_dir: Path, uri_prefix: str | None = None) -> Path:
    """The factory release with real audio under `audio_dir/src/`; its manifests name `uri_prefix/src/...`
    (default: the real folder) so a test can write S3-style URIs that only a mirror resolves."""
    tables = make_tables()
    (audio_dir / "src").mkdir(parents=True)
    uris = {}
    for i, uid in enumerate(tables["utterances"]["utterance_id"]):
        tone_wav(audio_dir / "src" / f"u{i}.wav", seed=i)
        uris[uid] = f"{uri_prefix or audio_dir}/src/u{i}.wav"
    for name in ("utterances", "asr_stage", "classifier_stage"):
        df = tables[name]
        df["audio_uri"] = df["utterance_id"].map(uris)
        df["source_audio_uri"] = df["audio_uri"] if "source_audio_uri" in df else None
    write_release(str(base / "out"), tables)
    return base / "out"


def _batch(release, stage=ClassifierDataset) -> dict:
    data = stage(release, split=None)
    return next(iter(DataLoader(data, batch_size=len(data), collate_fn=collate_pad)))


def test_remapped_audio_reads_the_same_arrays_everywhere(tmp_path: Path) -> None:
    corpora = tmp_path / "data" / "corpora"
    out = _build(tmp_path, corpora)
    original = open_release(str(out))
    want_clf, want_asr = _batch(original), _batch(original, AsrDataset)
    mirror = tmp_path / "mnt" / "mirror"
    shutil.copytree(corpora, mirror)
    shutil.rmtree(corpora)  # only the copy exists now

    release = open_release(str(out), audio_roots={str(corpora): str(mirror)})
    for table in (release.classifier, release.asr, release.utterances):
        assert all(u.startswith(f"{mirror}/src/") for u in table["audio_uri"])
    assert release.arrow("classifier")["audio_uri"].to_pylist() == release.classifier["audio_uri"].tolist()
    assert release.audio_origins[f"{mirror}/src/u0.wav"] == f"{corpora}/src/u0.wav"
    got_clf, got_asr = _batch(release), _batch(release, AsrDataset)
    assert torch.equal(got_clf["waveform"], want_clf["waveform"])
    assert torch.equal(got_asr["waveform"], want_asr["waveform"])  # lazy speed recipe applied to the copy

    hf = to_hf_dataset(release, "classifier", decode=True)
    assert np.array_equal(np.asarray(hf[0]["audio"]["array"]), want_clf["waveform"][0].numpy())
    assert hf[0]["audio"]["path"] == f"{mirror}/src/u0.wav"

    export_nemo(release, "classifier", str(tmp_path / "clf.jsonl"))
    paths = [json.loads(line)["audio_filepath"] for line in (tmp_path / "clf.jsonl").read_text().splitlines()]
    assert paths == release.classifier["audio_uri"].tolist()
    export_nemo(release, "asr", str(tmp_path / "asr.jsonl"), render_dir=str(tmp_path / "render"))
    assert len((tmp_path / "asr.jsonl").read_text().splitlines()) == len(release.asr)
    cuts = export_lhotse(release, "classifier", str(tmp_path / "lhotse"))
    sources = {s["source"] for line in gzip.open(tmp_path / "lhotse" / "recordings.jsonl.gz", "rt")
               for s in json.loads(line)["sources"]}
    assert sources == {f"{mirror}/src/u{i}.wav" for i in range(6)}
    assert len(cuts) == len(release.classifier)


def test_prefix_matches_on_component_boundaries_longest_first(tmp_path: Path) -> None:
    roots = AudioRoots({"/data/corp": "/a", "/data": "/b", "/data/corp/x/": "/c/", "s3://bucket/corpora": "/m"})
    assert roots.rewrite("/data/corp/u.wav") == "/a/u.wav"
    assert roots.rewrite("/data/corpora2/u.wav") == "/b/corpora2/u.wav"  # not "/a" + "ora2/..."
    assert roots.rewrite("/data/corp/x/u.wav") == "/c/u.wav"             # the longest prefix wins
    assert roots.rewrite("/database/u.wav") == "/database/u.wav"
    assert roots.rewrite("s3://bucket/corpora/s/u.wav") == "/m/s/u.wav"
    assert roots.rewrite("s3://bucket/corpora2/u.wav") == "s3://bucket/corpora2/u.wav"
    assert AudioRoots({"/data/corp": "/a"}).rewrite("/data/corpora2/u.wav") == "/data/corpora2/u.wav"

    # the same through a release: a sibling folder sharing the prefix's spelling stays put
    out = _build(tmp_path, tmp_path / "corpora2")
    release = open_release(str(out), audio_roots={str(tmp_path / "corpora"): "/nowhere"})
    assert release.classifier["audio_uri"].str.startswith(str(tmp_path / "corpora2") + "/").all()
    assert release.audio_origins == {}


def test_s3_prefix_maps_onto_a_local_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "local" / "corpora"
    out = _build(tmp_path, mirror, uri_prefix="s3://bucket/corpora")
    assert open_release(str(out)).classifier["audio_uri"].str.startswith("s3://bucket/corpora/").all()
    release = open_release(str(out), audio_roots={"s3://bucket/corpora/": str(mirror), "s3://bucket/corp": "/x"})
    got = _batch(release)["waveform"]
    want = _batch(open_release(str(out), audio_roots={"s3://bucket": str(tmp_path / "local")}))["waveform"]
    assert torch.equal(got, want) and float(got.abs().sum()) > 0
    first = read_audio(str(mirror / "src" / "u0.wav"), 0.0, 3.0)
    assert np.array_equal(got[0, : len(first)].numpy(), first)


def test_environment_variable_and_explicit_argument_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpora = tmp_path / "corpora"
    out = _build(tmp_path, corpora)
    monkeypatch.setenv(AUDIO_ROOTS_ENV, f" s3://b/c=/local/c ; {corpora}=/mnt/env ;")
    assert open_release(str(out)).classifier["audio_uri"].iloc[0] == "/mnt/env/src/u0.wav"
    assert open_release(str(out), audio_roots={str(corpora): "/mnt/arg"}).classifier["audio_uri"].iloc[0] \
        == "/mnt/arg/src/u0.wav"
    assert open_release(str(out), audio_roots={}).classifier["audio_uri"].iloc[0] == f"{corpora}/src/u0.wav"
    # string URIs given to the readers open the release with the environment's map
    assert ClassifierDataset(str(out), split=None).records[0]["audio_uri"] == "/mnt/env/src/u0.wav"
    monkeypatch.setenv(AUDIO_ROOTS_ENV, "/data/corpora")
    with pytest.raises(ValueError, match=AUDIO_ROOTS_ENV):
        open_release(str(out))


def test_parse_audio_roots_syntax() -> None:
    assert parse_audio_roots("/data/corpora=/mnt/corpora;s3://b/c=/local/c") == {
        "/data/corpora": "/mnt/corpora", "s3://b/c": "/local/c"}
    assert parse_audio_roots("") == {}
    for bad in ("/a=", "=/b", "/a"):
        with pytest.raises(ValueError, match="OLD_PREFIX=NEW_PREFIX"):
            parse_audio_roots(bad)


def test_materialised_audio_inside_the_release_is_not_remapped(tmp_path: Path) -> None:
    tables = make_tables()
    root = tmp_path / "out" / "releases" / "r1"
    (root / "audio").mkdir(parents=True)
    clf = tables["classifier_stage"]
    clf["audio_uri"] = [str(tone_wav(root / "audio" / f"w{i}.wav", seed=i)) for i in range(len(clf))]
    clf["recipe_applied"] = True
    write_release(str(tmp_path / "out"), tables)
    release = open_release(str(tmp_path / "out"), audio_roots={str(tmp_path): "/elsewhere"})
    assert release.classifier["audio_uri"].tolist() == clf["audio_uri"].tolist()
    assert release.asr["audio_uri"].str.startswith("/elsewhere/").sum() == 0  # "/data/..." is not under tmp_path
    assert ClassifierDataset(release, split=None)[0]["waveform"].shape == (80000,)


def test_pool_files_outside_the_release_are_remapped(tmp_path: Path) -> None:
    out = _build(tmp_path, tmp_path / "corpora")
    write_pool_index(str(out / "releases" / "r1"), {"room.wav": "/data/rirs/room.wav"},
                     {"hum.wav": "pools/hum.wav"})
    pools = open_release(str(out), audio_roots={"/data": "/mnt/data", str(out): "/x"}).pools
    assert pools["rirs"] == {"room.wav": "/mnt/data/rirs/room.wav"}
    assert pools["noises"] == {"hum.wav": str(out / "releases" / "r1" / "pools" / "hum.wav")}


def test_missing_rewritten_file_names_both_paths(tmp_path: Path) -> None:
    corpora = tmp_path / "corpora"
    out = _build(tmp_path, corpora)
    mirror = tmp_path / "mirror"
    shutil.copytree(corpora, mirror)
    (mirror / "src" / "u0.wav").unlink()
    release = open_release(str(out), audio_roots={str(corpora): str(mirror)})
    both = f"{mirror}/src/u0.wav.*rewrote it from {corpora}/src/u0.wav"
    with pytest.raises(FileNotFoundError, match=both):
        ClassifierDataset(release, split=None)[0]
    with pytest.raises(FileNotFoundError, match=both):
        AsrDataset(release, split=None)[0]
    with pytest.raises(FileNotFoundError, match=both):
        to_hf_dataset(release, "classifier", decode=True)[0]
    with pytest.raises(FileNotFoundError, match=both):
        export_nemo(release, "asr", str(tmp_path / "a.jsonl"), render_dir=str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match=both):
        export_lhotse(release, "classifier", str(tmp_path / "lh"))
    # without a rewrite the error stays as it was: one path
    shutil.rmtree(corpora)
    with pytest.raises(FileNotFoundError, match="audio file not found") as err:
        ClassifierDataset(open_release(str(out), audio_roots={}), split=None)[0]
    assert "rewrote" not in str(err.value)
