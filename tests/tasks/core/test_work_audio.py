"""Materialised work audio is verified before reuse: size, sidecar sha256, decodability (issue 14, item 2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from manifests.augmentation import Recipe
from tasks.augment import materialize as augment
from tasks.augment.materialize import materialize
from tasks.augment.pools import AugmentPools
from tasks.core.work_audio import check_reusable


def _rows(tmp_path: Path) -> pd.DataFrame:
    src = tmp_path / "src" / "a.wav"
    src.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    sf.write(src, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000, subtype="PCM_16")
    recipe = Recipe(speed=1.05, gain=None, aug_seed=7).to_row()
    return pd.DataFrame([{"row_id": "s/a#0", "utterance_id": "s/a", "source": "s", "split": "train",
                          "source_audio_uri": str(src), "audio_uri": str(src), "offset_s": 0.0, "duration_s": 1.0,
                          "recipe_applied": False, **recipe}])


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _refuse_render(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("a verified work file was rendered again")

    monkeypatch.setattr(augment, "_render", refuse)


def test_materialize_records_the_sha256_and_reuses_a_verified_file(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "work" / "audio"
    done, failures = materialize(_rows(tmp_path), AugmentPools(), str(out))
    assert failures.empty
    flac = done["audio_uri"].iloc[0]
    assert done["audio_sha256"].iloc[0] == _sha(flac)
    sidecar = json.loads(Path(flac).with_suffix(".json").read_text())
    assert sidecar["sha256"] == _sha(flac) and sidecar["num_samples"] == sf.info(flac).frames
    _refuse_render(monkeypatch)
    again, _ = materialize(_rows(tmp_path), AugmentPools(), str(out))
    pd.testing.assert_frame_equal(done, again)


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "other_bytes", "sidecar_without_sha",
                                    "sidecar_not_json"])
def test_a_damaged_work_file_is_redone_and_named(tmp_path: Path, damage: str) -> None:
    out = tmp_path / "work" / "audio"
    done, _ = materialize(_rows(tmp_path), AugmentPools(), str(out))
    flac = Path(done["audio_uri"].iloc[0])
    sidecar = flac.with_suffix(".json")
    good, good_sha = flac.read_bytes(), done["audio_sha256"].iloc[0]
    if damage == "zero_bytes":
        flac.write_bytes(b"")  # what a crash left behind; it used to be hard-linked into the release
    elif damage == "truncated":
        flac.write_bytes(good[: len(good) // 2])
    elif damage == "other_bytes":
        flac.write_bytes(good[:-32] + bytes(32))
    elif damage == "sidecar_without_sha":
        meta = json.loads(sidecar.read_text())
        del meta["sha256"]
        sidecar.write_text(json.dumps(meta))
    else:
        sidecar.write_text("{not json")
    meta, problem = check_reusable(str(flac), str(sidecar))
    assert meta is None and problem and (str(flac) in problem or str(sidecar) in problem)

    logged: list[str] = []
    redone, failures = materialize(_rows(tmp_path), AugmentPools(), str(out), log=lambda m, *a: logged.append(m % a))
    assert failures.empty
    assert len(logged) == 1 and "redoing" in logged[0] and (str(flac) in logged[0] or str(sidecar) in logged[0])
    assert flac.read_bytes() == good and redone["audio_sha256"].iloc[0] == good_sha
    assert check_reusable(str(flac), str(sidecar))[0] is not None


def test_nothing_to_reuse_is_not_a_problem(tmp_path: Path) -> None:
    assert check_reusable(str(tmp_path / "x.flac"), str(tmp_path / "x.json")) == (None, None)
