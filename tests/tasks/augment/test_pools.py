"""RIR and noise pools (tasks.augment.pools) on RIRS_NOISES/MUSAN-like folders written here."""

from __future__ import annotations

import pickle

import pytest

from tasks.augment.pools import build_pools
from tasks.spec import AugmentSpec
from tests.tasks.augment.conftest import augment_spec


def test_pools_find_layouts_split_disjoint_and_skip_non_rirs(rir_root, noise_root, tmp_path) -> None:
    pools = build_pools(augment_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))
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
    again = build_pools(augment_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))
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
