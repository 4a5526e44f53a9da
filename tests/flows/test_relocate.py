"""The demo release, copied as a folder to another place, is the same release (issue 14, items 2 and 8)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from flows.cli import main
from manifests import io as mio
from manifests.release import open_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE
from manifests.validate import validate_release


def test_demo_release_copied_elsewhere_validates_deep_with_the_same_hash(demo_release, tmp_path: Path,
                                                                         monkeypatch) -> None:
    spec, result = demo_release
    root = Path(mio.resolve_release(spec.output).root)
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        df = mio.read_manifest(str(root / "manifests" / f"{name}.parquet"))
        applied = df[df["recipe_applied"].astype(bool)]
        assert len(applied) and applied["audio_uri"].str.startswith("audio/").all()
        for uri, sha in zip(applied["audio_uri"], applied["audio_sha256"], strict=True):
            assert hashlib.sha256((root / uri).read_bytes()).hexdigest() == sha  # the identity covers the bytes
        assert df.loc[~df["recipe_applied"].astype(bool), "audio_sha256"].isna().all()

    copy = tmp_path / "other-disk" / "the-release"
    shutil.copytree(root, copy)  # the release folder alone, under another name
    monkeypatch.delenv("VOICETONE_AUDIO_ROOTS", raising=False)
    assert main(["validate", "--deep", str(copy)]) == 0
    report = validate_release(str(copy), deep=True)
    assert report.ok and any(c.startswith("deep:") for c in report.checks)
    assert mio.release_identity(mio.ReleasePaths(str(copy))) == result["content_sha256"]
    release = open_release(str(copy))
    applied = release.asr[release.asr["recipe_applied"].astype(bool)]
    assert applied["audio_uri"].str.startswith(str(copy) + "/audio/").all()  # the copy's files, not the build's
