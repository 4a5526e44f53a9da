"""The default noise pool (no augment.noise_paths): generated deterministically, babble only from other
training speakers, non-speech windows from it, lazy == materialised, and the card and guards say so."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from manifests.augmentation import Recipe, apply_recipe
from tasks.augment import noise_pool
from tasks.augment.materialize import materialize
from tasks.augment.pools import AugmentPools, build_pools
from tasks.augment.recipes import draw_recipe
from tasks.core.audio import read_audio
from tasks.label import speech_check
from tasks.spec import AugmentSpec, parse_spec

SR = 16000
REPO = Path(__file__).resolve().parents[3]
ACTED = REPO / "flows" / "demo" / "sources" / "acted"


def _files(pools: AugmentPools) -> dict[str, bytes]:
    return {i: Path(u).read_bytes() for i, u in pools.noises.items()}


def test_synthetic_pool_is_deterministic_path_free_and_never_speech(tmp_path: Path) -> None:
    a = build_pools(AugmentSpec(), 13, str(tmp_path / "a" / "work"))
    b = build_pools(AugmentSpec(), 13, str(tmp_path / "elsewhere" / "b"))
    assert a.noises and _files(a) == {i: Path(u).read_bytes() for i, u in b.noises.items()}
    assert (a.train_noises, a.eval_noises) == (b.train_noises, b.eval_noises)
    assert all(i.startswith("default/") and "tmp" not in i for i in a.noises)  # ids from content, not paths
    assert not set(a.train_noises) & set(a.eval_noises)
    kinds = {"white", "pink", "brown", "hum", "tone"}
    assert {noise_pool.kind_of(i) for i in a.train_noises} == kinds == {noise_pool.kind_of(i) for i in a.eval_noises}
    assert not set(build_pools(AugmentSpec(), 14, str(tmp_path / "c")).noises) & set(a.noises)
    # Non-speech windows are cut from these files: neither detector may hear speech in them.
    from tasks.label.speech import speech_intervals

    for noise_id in a.noises:
        audio = a.load_noise(noise_id)[4 * SR : 9 * SR]  # a window's worth, past the start
        assert speech_check.second_opinion(audio, SR) == [], noise_id
        assert speech_intervals(audio, SR, 0.5) == [], noise_id
    # Off, or recorded noise given: no default pool.
    assert build_pools(AugmentSpec(default_noise="off"), 13, str(tmp_path / "d")).noises == {}


def _acted_items(tmp_path: Path) -> pd.DataFrame:
    from tasks.ingest.corpora.ravdess import ingest_ravdess
    from tasks.spec import SourceSpec

    items = ingest_ravdess(SourceSpec(name="acted", kind="ravdess", path=str(ACTED)), "en").items
    split = {"actor_01": "train", "actor_02": "train", "actor_03": "train", "actor_04": "train",
             "actor_05": "dev", "actor_06": "test"}
    items = items.assign(split=items["speaker_id"].map(split))
    held = items["split"] != "train"  # babble must never read dev/test audio: make it unreadable
    items.loc[held, "audio_uri"] = [str(tmp_path / f"held-out-{i}.wav") for i in range(int(held.sum()))]
    return items


def test_babble_comes_only_from_other_training_speakers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = _acted_items(tmp_path)
    spec = AugmentSpec(splits=["train", "dev"], p_noise=1.0)
    with caplog.at_level(logging.WARNING, logger="tasks.augment.noise_pool"):
        pools = noise_pool.add_babble(build_pools(spec, 13, str(tmp_path / "w")), spec, 13, str(tmp_path / "w"),
                                   items)
    assert not [r for r in caplog.records if "babble" in r.getMessage()]  # no dev/test file was read
    babble = sorted(i for i in pools.noises if noise_pool.kind_of(i) == "babble")
    assert len(babble) == noise_pool.BABBLE_FILES and set(babble) <= set(pools.train_noises)
    assert not set(babble) & set(pools.eval_noises)
    train_speakers = {f"acted/actor_0{k}" for k in (1, 2, 3, 4)}
    assert set().union(*map(set, pools.noise_speakers.values())) == train_speakers
    assert all(len(pools.noise_speakers[i]) == 3 for i in babble)  # 4 train speakers: 3 talkers leave one out
    for i in babble:  # real mixed speech, at the generated level
        assert speech_check.analyse(pools.load_noise(i)[: 5 * SR], SR)["voiced_s"] > 0.3  # voices, not hiss
    speaker_of = dict(zip(items["utterance_id"], noise_pool.speaker_keys(items), strict=True))
    drawn = []
    for utt, split in zip(items["utterance_id"], items["split"], strict=True):
        for k in range(40):
            recipe = draw_recipe(13, f"{utt}#{k}", split, spec, pools, 2.0, speaker_of[utt])
            if recipe.noise_id in pools.noise_speakers:
                assert split == "train" and speaker_of[utt] not in pools.noise_speakers[recipe.noise_id]
                drawn.append(recipe.noise_id)
    assert len(set(drawn)) == len(babble)  # every babble file is used, never on its own talkers
    # The same items give the same babble ids and bytes in another work folder.
    again = noise_pool.add_babble(build_pools(spec, 13, str(tmp_path / "x")), spec, 13, str(tmp_path / "x"), items)
    assert _files(again) == _files(pools)


def test_babble_needs_two_training_speakers(tmp_path: Path) -> None:
    items = _acted_items(tmp_path)
    one = items[(items["speaker_id"] == "actor_01") | (items["split"] != "train")]
    pools = noise_pool.add_babble(build_pools(AugmentSpec(), 13, str(tmp_path / "w")), AugmentSpec(), 13,
                               str(tmp_path / "w"), one)
    assert not pools.noise_speakers and all(noise_pool.kind_of(i) != "babble" for i in pools.noises)
    facts, fired = noise_pool.pool_report(pools, parse_spec(
        {"name": "t", "output": str(tmp_path), "sources": [{"name": "a", "kind": "ravdess", "path": str(ACTED)}]}))
    assert [g["guard"] for g in fired] == ["noise_pool_synthetic"] and "no babble" in fired[0]["message"]
    assert facts["noise_source"] == "default" and facts["babble_files"] == 0


def test_pool_report_warns_when_the_pool_is_empty_and_not_for_recorded_noise(tmp_path: Path) -> None:
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    import soundfile as sf

    for i in range(3):
        sf.write(noise_dir / f"n{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(SR * 3)).astype(np.float32), SR)
    base = {"name": "t", "output": str(tmp_path / "out"), "sources": [{"name": "a", "kind": "ravdess", "path": str(ACTED)}]}
    for augment_spec, expected in (({"default_noise": "off"}, ["noise_pool_empty"]),
                                   ({"noise_paths": [str(noise_dir)]}, [])):
        spec = parse_spec({**base, "augment": augment_spec})
        pools = build_pools(spec.augment, spec.seed, str(tmp_path / "w"))
        facts, fired = noise_pool.pool_report(pools, spec)
        assert [g["guard"] for g in fired] == expected
        assert all(g["level"] == "warning" for g in fired)
    assert facts["noise_source"] == "recorded" and facts["noise_kinds"]["train"] == {"recorded": 2}


def test_lazy_recipe_reproduces_materialised_audio_for_every_default_kind(tmp_path: Path) -> None:
    from manifests.audio_io import RowReader
    from manifests.release import write_pool_index

    items = _acted_items(tmp_path)
    spec = AugmentSpec()
    pools = noise_pool.add_babble(build_pools(spec, 13, str(tmp_path / "w")), spec, 13, str(tmp_path / "w"), items)
    by_kind = {}
    for noise_id in pools.train_noises:
        by_kind.setdefault(noise_pool.kind_of(noise_id), noise_id)
    assert set(by_kind) == {"white", "pink", "brown", "hum", "tone", "babble"}
    clip = items[items["split"] == "train"].iloc[0]
    rows = []
    for k, (kind, noise_id) in enumerate(sorted(by_kind.items())):
        recipe = Recipe(speed=(0.95, 1.0, 1.05)[k % 3], noise_id=noise_id, noise_offset_s=1.5 + k,
                                snr_db=3.0 + k, rir_id=pools.train_rirs[0] if k % 2 else None, aug_seed=k)
        rows.append({"row_id": f"r{kind}", "utterance_id": clip["utterance_id"], "source": "acted", "split": "train",
                     "source_audio_uri": clip["audio_uri"], "audio_uri": clip["audio_uri"], "offset_s": 0.0,
                     "duration_s": float(clip["duration_s"]), "recipe_applied": False, **recipe.to_row()})
    rows = pd.DataFrame(rows)
    done, failures = materialize(rows, pools, str(tmp_path / "audio"))
    assert failures.empty and len(done) == len(rows)
    index = write_pool_index(str(tmp_path / "release"), pools.rirs, pools.noises)
    carried = json.loads(Path(index).read_text())
    reader = RowReader({k: carried[k] for k in ("rirs", "noises")})  # only what a release carries
    for (_, lazy_row), (_, out) in zip(rows.iterrows(), done.iterrows(), strict=True):
        lazy = reader.utterance(lazy_row.to_dict())
        materialised = read_audio(out["audio_uri"], 0.0, None, target_sr=SR)
        assert lazy.shape == materialised.shape, lazy_row["row_id"]
        assert np.max(np.abs(lazy - materialised)) < 1e-3, lazy_row["row_id"]  # FLAC's 16-bit rounding
        clean = read_audio(clip["audio_uri"], 0.0, None, target_sr=SR)
        direct, _ = apply_recipe(clean, SR, Recipe.from_row(lazy_row),
                                 pools.load_rir(lazy_row["rir_id"]) if isinstance(lazy_row["rir_id"], str) else None,
                                 pools.load_noise(lazy_row["noise_id"]))
        assert np.array_equal(direct, lazy), lazy_row["row_id"]


def _build(tmp_path: Path, name: str, materialize: bool) -> dict:
    from tasks.augment import step as augment_step
    from tasks.ingest import step as ingest_step
    from tasks.label import steps as label_steps
    from tasks.plan import step as plan_step
    from tasks.publish import step as publish_step
    spec = parse_spec({"name": "t", "output": str(tmp_path / name),
                       "labelers": {"transcripts": "none", "sentiment": "none"},
                       "augment": {"copies_per_utterance": 3, "materialize": materialize},
                       "sources": [{"name": "acted", "kind": "ravdess", "path": str(ACTED)}]})
    ingest = [ingest_step.ingest_source(spec, 0)]
    labelled = []
    for uri in ingest_step.make_shards(spec, ingest):
        speech = label_steps.speech_shard(spec, label_steps.sentiment_shard(spec, label_steps.transcripts_shard(spec, uri)["items_uri"])["items_uri"])
        labelled.append({**speech, "rejects_uris": []})
    plan = plan_step.plan_stages(spec, labelled)
    augmented = [augment_step.augment_shard(spec, u) for u in plan["row_shard_uris"]]
    warnings: list[str] = []
    result = publish_step.publish(spec, plan, augmented, ingest, {}, warn=lambda m, *a: warnings.append(m % a))
    return {"spec": spec, "plan": plan, "result": result, "warnings": warnings}


def test_build_without_noise_files_augments_with_the_default_pool_and_says_so(tmp_path: Path) -> None:
    from manifests.dataset import ClassifierDataset
    from manifests.io import read_card, read_release, resolve_release
    from manifests.release import open_release
    from manifests.validate import validate_release

    built = _build(tmp_path, "mat", materialize=True)
    out = built["spec"].output
    assert validate_release(out).ok
    tables = read_release(out)
    clf, utts = tables["classifier_stage"], tables["utterances"]
    rows = pd.concat([tables["asr_stage"], clf], ignore_index=True)
    kinds = {noise_pool.kind_of(i) for i in rows["noise_id"].dropna()}
    assert {"babble", "hum"} <= kinds and len(kinds) >= 4
    pools = AugmentPools.from_json(Path(built["plan"]["pools_uri"]).read_text())
    speaker = dict(zip(utts["utterance_id"], utts["source"] + "/" + utts["speaker_id"], strict=True))
    for utt, noise_id in zip(rows["utterance_id"], rows["noise_id"], strict=True):
        if isinstance(noise_id, str) and noise_pool.kind_of(noise_id) == "babble":
            assert speaker[utt] not in pools.noise_speakers[noise_id]
            assert set(pools.noise_speakers[noise_id]) <= set(utts.loc[utts["split"] == "train", "source"] + "/"
                                                              + utts.loc[utts["split"] == "train", "speaker_id"])
    # Non-speech windows from the pool, inside the release, never sharing a file between train and dev/test.
    non_speech = clf[~clf["speech_present"]]
    noise_rows = non_speech[non_speech["source"] == "noise"]
    assert (noise_rows["split"] == "train").sum() >= 10 and set(noise_rows["split"]) >= {"train"}
    assert not (noise_rows["row_id"].str.contains("babble")).any()
    train_files = set(noise_rows.loc[noise_rows["split"] == "train", "audio_uri"])
    assert train_files and not train_files & set(noise_rows.loc[noise_rows["split"] != "train", "audio_uri"])
    root = resolve_release(out).root
    # inside the release, named relative to its root (docs/manifest-contract.md, "Audio URIs"), hashed
    assert all(u.startswith("audio/noise_pool/") and Path(root, u).is_file() for u in noise_rows["audio_uri"])
    assert noise_rows["audio_sha256"].notna().all()
    # The card says which kinds were used, and the synthetic-only guard is on top, and logged.
    card = read_card(resolve_release(out))
    facts = card["augment"]["pools"]
    assert facts["noise_source"] == "default" and facts["noise_kinds"]["train"]["babble"] == noise_pool.BABBLE_FILES
    assert card["guards"][0]["guard"] == "noise_pool_synthetic" and card["guards"][0]["level"] == "warning"
    assert any("noise_pool_synthetic" in w for w in built["warnings"])
    # The pool index travels with the release (relative entries) and a lazy twin reads the same audio.
    index = json.loads(Path(root, "manifests", "augment_pools.json").read_text())
    assert all(not v.startswith("/") for k, v in index["noises"].items())
    assert set(open_release(out).pools["noises"]) == set(pools.noises)
    shutil.copytree(Path(out) / "cache", tmp_path / "lazy" / "cache")  # the same labels, not computed again
    lazy = _build(tmp_path, "lazy", materialize=False)["spec"].output
    # Another output folder draws the same recipes: noise ids come from content, not paths.
    recipe_cols = ["row_id", "noise_id", "noise_offset_s", "snr_db", "speed"]
    lazy_rows = read_release(lazy)["asr_stage"][recipe_cols].sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(tables["asr_stage"][recipe_cols].sort_values("row_id").reset_index(drop=True),
                                  lazy_rows)
    mat_data, lazy_data = ClassifierDataset(out, split=None), ClassifierDataset(lazy, split=None)
    where = {r["row_id"]: i for i, r in enumerate(lazy_data.records)}
    compared = 0
    for i, row in enumerate(mat_data.records):
        if isinstance(row["noise_id"], str) and row["recipe_applied"]:
            a, b = mat_data[i]["waveform"].numpy(), lazy_data[where[row["row_id"]]]["waveform"].numpy()
            assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-3, row["row_id"]
            compared += 1
    assert compared >= 5
