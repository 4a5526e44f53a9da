"""Recipe drawing (tasks.augment.recipes): a row's recipe from (seed, row id) alone, speeds rotated over copies."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.augment.pools import build_pools
from tasks.augment.recipes import classifier_variants, draw_recipe
from tasks.spec import AugmentSpec
from tests.tasks.augment.conftest import augment_spec


def test_recipes_depend_only_on_seed_and_row_id(pools, rir_root, noise_root, tmp_path) -> None:
    spec = augment_spec(rir_root, noise_root)
    ids = [f"src/utt{i}#0" for i in range(200)]
    forward = {i: draw_recipe(13, i, "train", spec, pools, 2.0) for i in ids}
    fresh = build_pools(spec, seed=13, work_dir=str(tmp_path / "other-work"))
    backward = {i: draw_recipe(13, i, "train", spec, fresh, 2.0) for i in reversed(ids)}
    assert forward == backward
    other_seed = {i: draw_recipe(14, i, "train", spec, pools, 2.0) for i in ids}
    assert sum(forward[i] != other_seed[i] for i in ids) > 150
    assert len({r.aug_seed for r in forward.values()}) == len(ids)


def test_recipes_cover_pools_speeds_and_ranges(pools, rir_root, noise_root) -> None:
    spec = augment_spec(rir_root, noise_root)
    recipes = [draw_recipe(13, f"src/utt{i}#0", "train", spec, pools, 1.0) for i in range(400)]
    assert {r.speed for r in recipes} == {0.95, 1.0, 1.05}
    rirs = [r.rir_id for r in recipes if r.rir_id]
    noises = [r for r in recipes if r.noise_id]
    assert len(set(rirs)) >= 5 and set(rirs) <= set(pools.train_rirs)
    assert len({r.noise_id for r in noises}) >= 4 and {r.noise_id for r in noises} <= set(pools.train_noises)
    assert 0.4 < len(rirs) / len(recipes) < 0.6  # p_reverb 0.5
    assert 0.6 < len(noises) / len(recipes) < 0.8  # p_noise 0.7
    for r in noises:
        assert 0.0 <= r.snr_db <= 15.0
        assert 0.0 <= r.noise_offset_s <= pools.noise_durations[r.noise_id] - 1.0  # the utterance fits
        assert r.gain is None  # decided when applied
    assert all(r.gain == 1.0 for r in recipes if r.is_identity)
    assert len({round(r.snr_db, 3) for r in noises}) > 50


def test_copies_rotate_speeds_kaldi_style(pools, rir_root, noise_root) -> None:
    spec = augment_spec(rir_root, noise_root, copies_per_utterance=3)
    items = pd.DataFrame({"utterance_id": [f"src/u{i}" for i in range(300)],
                          "split": ["train"] * 200 + ["dev"] * 50 + ["test"] * 50})
    variants = classifier_variants(items, spec)
    per_utt = variants.groupby("utterance_id")["variant"].apply(list)
    assert all(per_utt[f"src/u{i}"] == [0, 1, 2] for i in range(200))
    assert all(per_utt[f"src/u{i}"] == [0] for i in range(200, 300))  # eval splits: no copies
    assert len(classifier_variants(items, augment_spec(rir_root, noise_root))) == 300  # default 1
    assert len(classifier_variants(items, augment_spec(rir_root, noise_root, copies_per_utterance=3,
                                                         enabled=False))) == 300
    first = []
    for i in range(200):
        recipes = [draw_recipe(13, f"src/u{i}#{v}", "train", spec, pools, 2.0) for v in range(3)]
        assert sorted(r.speed for r in recipes) == [0.95, 1.0, 1.05]  # each speed once per utterance
        assert len({r.aug_seed for r in recipes}) == 3
        first.append(recipes[0].speed)
    assert all(first.count(s) > 40 for s in (0.95, 1.0, 1.05))  # variant 0 alone is still uniform
    # Row ids without a variant number keep an independent draw per row.
    assert {draw_recipe(13, f"free-{i}", "train", spec, pools, 2.0).speed for i in range(60)} == {0.95, 1.0, 1.05}
    with pytest.raises(ValueError, match="copies_per_utterance"):
        AugmentSpec(copies_per_utterance=0)


def test_eval_splits_identity_by_default_and_eval_pools_when_asked(pools, rir_root, noise_root) -> None:
    spec = augment_spec(rir_root, noise_root)
    for split in ("dev", "test"):
        recipes = [draw_recipe(13, f"u{i}#0", split, spec, pools, 1.0) for i in range(50)]
        assert all(r.is_identity and r.speed == 1.0 and r.rir_id is None and r.noise_id is None for r in recipes)
    spec_dev = augment_spec(rir_root, noise_root, splits=["train", "dev"], p_reverb=1.0, p_noise=1.0)
    dev = [draw_recipe(13, f"u{i}#0", "dev", spec_dev, pools, 1.0) for i in range(60)]
    assert {r.rir_id for r in dev} <= set(pools.eval_rirs) and {r.noise_id for r in dev} <= set(pools.eval_noises)
    off = augment_spec(rir_root, noise_root, enabled=False)
    assert draw_recipe(13, "u1#0", "train", off, pools, 1.0).is_identity
    no_reverb = augment_spec(rir_root, noise_root, p_reverb=0.0)
    assert all(draw_recipe(13, f"u{i}#0", "train", no_reverb, pools, 1.0).rir_id is None for i in range(50))
