"""Pools, recipe drawing and materialisation, on RIRS_NOISES/MUSAN-like folders written here."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from manifests.augmentation import Recipe, apply_recipe
from tasks.augment import materialize as augment
from tasks.augment.materialize import build_pools, draw_recipe, materialize
from tasks.core.audio import read_audio, write_flac
from tasks.spec import AugmentSpec

SR = 16000
REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------------------------- fixtures
def _rir(seed: int, seconds: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    h = 0.05 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.05 * SR))
    h[int(rng.integers(10, 200))] = 1.0
    return h.astype(np.float32)


def _noise(seed: int, seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture
def rir_root(tmp_path: Path) -> Path:
    """RIRS_NOISES layout: 20 simulated RIRs, plus noise files and junk that must not become RIRs."""
    root = tmp_path / "RIRS_NOISES"
    seed = 0
    for room_size in ("smallroom", "mediumroom"):
        for room in range(1, 6):
            folder = root / "simulated_rirs" / room_size / f"Room{room:03d}"
            folder.mkdir(parents=True)
            for k in (1, 2):
                sf.write(folder / f"Room{room:03d}-{k:05d}.wav", _rir(seed), SR)
                seed += 1
    (root / "pointsource_noises").mkdir()
    sf.write(root / "pointsource_noises" / "noise-free-sound-0001.wav", _noise(1, 2.0), SR)
    real = root / "real_rirs_isotropic_noises"
    real.mkdir()
    sf.write(real / "RVB2014_type1_noise_largeroom1_1.wav", np.stack([_noise(2, 1.0)] * 8, axis=1), SR)
    sf.write(real / "RVB2014_type1_rir_largeroom1_near_angla.wav", np.stack([_rir(90), _rir(91)], axis=1), SR)
    sf.write(real / "air_type1_air_binaural_stairway_1_1_90.wav", _rir(92), SR)
    (real / "rir_list").write_text("--rir-id 1 --room-id 1 real_rirs_isotropic_noises/air_type1.wav\n")
    sf.write(root / "simulated_rirs" / "smallroom" / "Room001" / "long-take.wav", _noise(3, 6.0), SR)
    (root / "simulated_rirs" / "smallroom" / "Room001" / "._Room001-00001.wav").write_bytes(b"\x00junk")
    return root


@pytest.fixture
def noise_root(tmp_path: Path) -> Path:
    """MUSAN layout: 10 noise files of 1.5-4 s and one corrupt file; 2 music and 3 speech files."""
    folder = tmp_path / "musan" / "noise" / "free-sound"
    folder.mkdir(parents=True)
    for i in range(10):
        sf.write(folder / f"noise-free-sound-{i:04d}.wav", _noise(100 + i, 1.5 + 0.25 * i), SR)
    (folder / "noise-free-sound-broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    music = tmp_path / "musan" / "music" / "fma"
    music.mkdir(parents=True)
    for i in range(2):
        sf.write(music / f"music-fma-{i:04d}.wav", _noise(200 + i, 3.0), SR)
    speech = tmp_path / "musan" / "speech" / "librivox"
    speech.mkdir(parents=True)
    for i in range(3):
        sf.write(speech / f"speech-librivox-{i:04d}.wav", _noise(300 + i, 2.0), SR)
    return tmp_path / "musan"


def _spec(rir_root: Path | None, noise_root: Path, **kw) -> AugmentSpec:
    return AugmentSpec(rir_paths=[str(rir_root)] if rir_root else [], noise_paths=[str(noise_root)], **kw)


# ------------------------------------------------------------------------------------------ pools
def test_pools_find_layouts_split_disjoint_and_skip_non_rirs(rir_root, noise_root, tmp_path) -> None:
    pools = build_pools(_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))
    assert len(pools.rirs) == 22 and len(pools.noises) == 12
    assert "simulated_rirs/smallroom/Room001/Room001-00001.wav" in pools.rirs
    assert {"real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_near_angla.wav",
            "real_rirs_isotropic_noises/air_type1_air_binaural_stairway_1_1_90.wav"} <= set(pools.rirs)
    assert "noise/free-sound/noise-free-sound-0003.wav" in pools.noises
    assert "music/fma/music-fma-0001.wav" in pools.noises  # MUSAN music is noise
    assert not any(i.startswith("speech/") for i in pools.noises)  # MUSAN speech is not
    assert pools.excluded == {"musan_speech": 3, "noise_in_rir_folder": 2}
    assert not any("noise" in i.rsplit("/", 1)[-1] or "long-take" in i for i in pools.rirs)
    assert any(p.endswith("long-take.wav") for p in pools.skipped)
    assert any(p.endswith("noise-free-sound-broken.wav") for p in pools.skipped)
    for train, held, everything in ((pools.train_rirs, pools.eval_rirs, pools.rirs),
                                    (pools.train_noises, pools.eval_noises, pools.noises)):
        assert not set(train) & set(held)  # no RIR or noise file is heard in both
        assert set(train) | set(held) == set(everything)
        assert held and len(train) > len(held)
    assert pools.noise_durations["noise/free-sound/noise-free-sound-0000.wav"] == pytest.approx(1.5)
    # Rebuilding (every shard does) gives the same pools; pickling drops the array cache.
    pools.load_rir(pools.train_rirs[0])
    again = build_pools(_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))
    assert again == pools
    assert not pickle.loads(pickle.dumps(pools))._cache


def test_rirs_noises_as_noise_folder_and_musan_speech_opt_in(rir_root, noise_root, tmp_path) -> None:
    spec = AugmentSpec(noise_paths=[str(rir_root), str(noise_root / "speech")], simulate_rirs=0)
    pools = build_pools(spec, seed=13, work_dir=str(tmp_path / "work"))
    assert set(pools.noises) == {
        "RIRS_NOISES/pointsource_noises/noise-free-sound-0001.wav",
        "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_noise_largeroom1_1.wav",
        "speech/librivox/speech-librivox-0000.wav",  # named explicitly: babble on purpose
        "speech/librivox/speech-librivox-0001.wav",
        "speech/librivox/speech-librivox-0002.wav",
    }
    assert pools.excluded == {"rir_in_noise_folder": 23}  # 20 simulated + 2 real RIRs + long-take.wav
    assert pools.load_noise("RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_noise_largeroom1_1.wav").ndim == 1
    assert pools.rirs == {}


def test_simulated_rirs_when_no_folders(noise_root, tmp_path) -> None:
    work = tmp_path / "work"
    start = time.perf_counter()
    pools = build_pools(_spec(None, noise_root, simulate_rirs=6), seed=5, work_dir=str(work))
    assert time.perf_counter() - start < 6.0  # well under a second per room
    assert sorted(pools.rirs) == [f"sim/room_{i:02d}" for i in range(6)]
    assert all(Path(u).is_relative_to(work / "simulated_rirs") for u in pools.rirs.values())
    assert pools.eval_rirs and not set(pools.eval_rirs) & set(pools.train_rirs)
    mtimes = {u: os.path.getmtime(u) for u in pools.rirs.values()}
    rebuilt = build_pools(_spec(None, noise_root, simulate_rirs=6), seed=5, work_dir=str(work))
    assert {u: os.path.getmtime(u) for u in rebuilt.rirs.values()} == mtimes  # reused, not rewritten
    for rir_id in pools.rirs:
        h = pools.load_rir(rir_id).astype(np.float64)
        peak = int(np.argmax(np.abs(h)))
        energy = np.cumsum(h[peak:] ** 2)
        tenth = len(energy) // 10
        assert 0 < peak < 0.05 * SR  # the direct path arrives first, within the room's size
        assert energy[-1] - energy[-tenth] < 0.01 * energy[-1]  # it decays
        assert energy[-1] - energy[0] > 0.05 * energy[-1]  # and it reverberates
    other = build_pools(_spec(None, noise_root, simulate_rirs=2), seed=6, work_dir=str(work))
    assert not np.array_equal(other.load_rir("sim/room_00"), pools.load_rir("sim/room_00"))


# ---------------------------------------------------------------------------------------- recipes
@pytest.fixture
def pools(rir_root, noise_root, tmp_path) -> augment.AugmentPools:
    return build_pools(_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))


def test_recipes_depend_only_on_seed_and_row_id(pools, rir_root, noise_root, tmp_path) -> None:
    spec = _spec(rir_root, noise_root)
    ids = [f"src/utt{i}#0" for i in range(200)]
    forward = {i: draw_recipe(13, i, "train", spec, pools, 2.0) for i in ids}
    fresh = build_pools(spec, seed=13, work_dir=str(tmp_path / "other-work"))
    backward = {i: draw_recipe(13, i, "train", spec, fresh, 2.0) for i in reversed(ids)}
    assert forward == backward
    other_seed = {i: draw_recipe(14, i, "train", spec, pools, 2.0) for i in ids}
    assert sum(forward[i] != other_seed[i] for i in ids) > 150
    assert len({r.aug_seed for r in forward.values()}) == len(ids)


def test_recipes_cover_pools_speeds_and_ranges(pools, rir_root, noise_root) -> None:
    spec = _spec(rir_root, noise_root)
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
    spec = _spec(rir_root, noise_root, copies_per_utterance=3)
    items = pd.DataFrame({"utterance_id": [f"src/u{i}" for i in range(300)],
                          "split": ["train"] * 200 + ["dev"] * 50 + ["test"] * 50})
    variants = augment.classifier_variants(items, spec)
    per_utt = variants.groupby("utterance_id")["variant"].apply(list)
    assert all(per_utt[f"src/u{i}"] == [0, 1, 2] for i in range(200))
    assert all(per_utt[f"src/u{i}"] == [0] for i in range(200, 300))  # eval splits: no copies
    assert len(augment.classifier_variants(items, _spec(rir_root, noise_root))) == 300  # default 1
    assert len(augment.classifier_variants(items, _spec(rir_root, noise_root, copies_per_utterance=3,
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
    spec = _spec(rir_root, noise_root)
    for split in ("dev", "test"):
        recipes = [draw_recipe(13, f"u{i}#0", split, spec, pools, 1.0) for i in range(50)]
        assert all(r.is_identity and r.speed == 1.0 and r.rir_id is None and r.noise_id is None for r in recipes)
    spec_dev = _spec(rir_root, noise_root, splits=["train", "dev"], p_reverb=1.0, p_noise=1.0)
    dev = [draw_recipe(13, f"u{i}#0", "dev", spec_dev, pools, 1.0) for i in range(60)]
    assert {r.rir_id for r in dev} <= set(pools.eval_rirs) and {r.noise_id for r in dev} <= set(pools.eval_noises)
    off = _spec(rir_root, noise_root, enabled=False)
    assert draw_recipe(13, "u1#0", "train", off, pools, 1.0).is_identity
    no_reverb = _spec(rir_root, noise_root, p_reverb=0.0)
    assert all(draw_recipe(13, f"u{i}#0", "train", no_reverb, pools, 1.0).rir_id is None for i in range(50))


# ------------------------------------------------------------------------------------ materialise
@pytest.fixture
def stage_rows(speech_wav, tmp_path, pools, rir_root, noise_root) -> pd.DataFrame:
    """Stage rows for espeak-ng utterances (one cut from a longer file), with train recipes."""
    spec = _spec(rir_root, noise_root, p_reverb=0.8, p_noise=0.9)
    a = speech_wav("I am so happy to see you today.", name="src/a.wav")
    b = speech_wav("This is terrible news. I am upset. Nothing works and I want to go home.", name="src/b.wav")
    rows = []
    for utt, path, offset, duration in (("demo/a", a, 0.0, sf.info(a).duration), ("demo/b", b, 1.0, 2.5)):
        for variant in range(4):
            row_id = f"{utt}#{variant}"
            recipe = draw_recipe(13, row_id, "train", spec, pools, duration)
            rows.append({"row_id": row_id, "utterance_id": utt, "source": "demo", "split": "train",
                         "source_audio_uri": str(path), "audio_uri": str(path), "offset_s": offset,
                         "duration_s": duration, "recipe_applied": False, **recipe.to_row()})
    return pd.DataFrame(rows)


def test_materialize_writes_flac_with_exact_length_and_reapplies_identically(stage_rows, pools, tmp_path) -> None:
    out_dir = tmp_path / "audio"
    done, failures = materialize(stage_rows, pools, str(out_dir))
    assert failures.empty and len(done) == len(stage_rows)
    assert list(done.index) == list(stage_rows.index)
    assert done["recipe_applied"].all() and (done["offset_s"] == 0.0).all() and done["gain"].notna().all()
    assert done["rir_id"].notna().any() and done["noise_id"].notna().any()
    for (_, src), (_, out) in zip(stage_rows.iterrows(), done.iterrows(), strict=True):
        clean = read_audio(src["source_audio_uri"], src["offset_s"], src["duration_s"], target_sr=SR)
        info = sf.info(out["audio_uri"])
        assert info.samplerate == SR and info.frames == round(len(clean) / src["speed"])
        assert out["duration_s"] == pytest.approx(info.frames / SR)
        # A training job re-applies the recorded recipe lazily: same audio, same FLAC bytes.
        recipe = Recipe.from_row(out)
        rir = pools.load_rir(recipe.rir_id) if recipe.rir_id else None
        noise = pools.load_noise(recipe.noise_id) if recipe.noise_id else None
        lazy, gain = apply_recipe(clean, SR, recipe, rir, noise)
        assert gain == out["gain"]
        lazy_uri = tmp_path / "lazy.flac"
        write_flac(str(lazy_uri), lazy, SR)
        assert lazy_uri.read_bytes() == Path(out["audio_uri"]).read_bytes()


def test_materialize_resumes_and_shares_files(stage_rows, pools, tmp_path, monkeypatch) -> None:
    out_dir = tmp_path / "audio"
    # The repeated rows also repeat index labels: results must still line up row by row.
    twice = pd.concat([stage_rows, stage_rows.iloc[:2].assign(row_id=lambda d: d["row_id"] + "-copy")])
    first, _ = materialize(twice, pools, str(out_dir))
    assert first["row_id"].tolist() == twice["row_id"].tolist()
    assert first["audio_uri"].iloc[-2:].tolist() == first["audio_uri"].iloc[:2].tolist()  # same variant, one file
    assert len(list(out_dir.glob("*.flac"))) == len(stage_rows)
    assert all(Path(u).name.startswith(("demo_a-", "demo_b-")) for u in first["audio_uri"])

    def refuse(*_args, **_kw):
        raise AssertionError("a finished file was rendered again")

    monkeypatch.setattr(augment, "apply_recipe", refuse)
    second, failures = materialize(twice, pools, str(out_dir))
    assert failures.empty
    pd.testing.assert_frame_equal(first, second)


def test_materialize_reports_bad_rows_and_keeps_the_rest(stage_rows, pools, tmp_path) -> None:
    rows = stage_rows.copy()
    rows.loc[0, "source_audio_uri"] = str(tmp_path / "gone.wav")
    rows.loc[1, ["rir_id", "speed"]] = ["no/such/rir.wav", 1.05]
    rows.loc[2, ["noise_id", "snr_db", "noise_offset_s"]] = [None, None, None]
    done, failures = materialize(rows, pools, str(tmp_path / "audio"))
    assert len(done) == len(rows) - 2
    assert set(failures["row_id"]) == {rows.loc[0, "row_id"], rows.loc[1, "row_id"]}
    by_row = failures.set_index("row_id")
    assert by_row.loc[rows.loc[0, "row_id"], "reason"] == "missing_audio"
    assert "gone.wav" in by_row.loc[rows.loc[0, "row_id"], "detail"]
    assert by_row.loc[rows.loc[1, "row_id"], "reason"] == "missing_audio"
    assert "no/such/rir.wav" in by_row.loc[rows.loc[1, "row_id"], "detail"]
    assert list(failures.columns) == augment.FAILURE_COLUMNS


_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    import pandas as pd
    from tasks.augment.materialize import build_pools, materialize
    from tasks.spec import AugmentSpec
    spec = AugmentSpec(rir_paths=[{rirs!r}], noise_paths=[{noises!r}])
    pools = build_pools(spec, seed=13, work_dir={work!r})
    done, failures = materialize(pd.read_pickle({rows!r}), pools, {out!r})
    assert failures.empty, failures
    print("\\n".join(done["audio_uri"]))
    """
)


def test_identical_bytes_across_processes(stage_rows, rir_root, noise_root, tmp_path) -> None:
    rows_path = tmp_path / "rows.pkl"
    stage_rows.to_pickle(rows_path)
    uris = []
    for k in range(2):
        script = _CHILD.format(repo=str(REPO), rirs=str(rir_root), noises=str(noise_root),
                               work=str(tmp_path / f"work{k}"), rows=str(rows_path), out=str(tmp_path / f"out{k}"))
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        uris.append(result.stdout.split())
    assert len(uris[0]) == len(stage_rows)
    for a, b in zip(*uris, strict=True):
        assert Path(a).name == Path(b).name and Path(a).parent != Path(b).parent
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_materialised_names_do_not_depend_on_the_output_folder(speech_wav, noise_root, tmp_path) -> None:
    """Simulated rooms live under <output>/work/augment: their absolute path must not name the file
    (it did, so two builds into two folders published different file names and content_sha256)."""
    spec = _spec(None, noise_root, simulate_rirs=3, p_reverb=1.0, p_noise=0.0)
    clip = speech_wav("The weather is nice today.", name="src/w.wav")
    names = []
    for output in ("first-output", "elsewhere/second-output"):
        pools = build_pools(spec, seed=13, work_dir=str(tmp_path / output / "work" / "augment"))
        recipe = draw_recipe(13, "demo/w#0", "train", spec, pools, sf.info(clip).duration)
        assert recipe.rir_id in pools.rirs
        row = {"row_id": "demo/w#0", "utterance_id": "demo/w", "source": "demo", "split": "train",
               "source_audio_uri": str(clip), "audio_uri": str(clip), "offset_s": 0.0,
               "duration_s": sf.info(clip).duration, "recipe_applied": False, **recipe.to_row()}
        done, failures = materialize(pd.DataFrame([row]), pools, str(tmp_path / output / "work" / "audio"))
        assert failures.empty
        names.append(Path(done["audio_uri"].iloc[0]).name)
    assert names[0] == names[1]


def test_a_source_file_replaced_under_its_name_gets_a_new_materialised_file(speech_wav, noise_root, tmp_path) -> None:
    """The materialised name hashed the source's path, not its bytes: a clip re-recorded under the same
    name reused the stale augmented audio. The segment key (the source's sha256) now names it too."""
    from tasks.augment.materialize import content_name

    spec = _spec(None, noise_root, simulate_rirs=2, p_reverb=1.0, p_noise=0.0)
    clip = speech_wav("The weather is nice today.", name="src/w.wav")
    pools = build_pools(spec, seed=13, work_dir=str(tmp_path / "work" / "augment"))
    recipe = draw_recipe(13, "demo/w#0", "train", spec, pools, sf.info(clip).duration)
    row = pd.Series({"utterance_id": "demo/w", "source_audio_uri": str(clip), "offset_s": 0.0,
                     "duration_s": sf.info(clip).duration, "segment_key": "aaaa:0.000:full"})
    before = content_name(row, recipe, pools, 16000)
    assert content_name(row.copy(), recipe, pools, 16000) == before
    assert content_name(row.copy().replace("aaaa:0.000:full", "bbbb:0.000:full"), recipe, pools, 16000) != before
