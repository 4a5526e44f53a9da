"""Shared fixtures of the augment tests: RIRS_NOISES- and MUSAN-like folders written here, and their pools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tasks.augment.pools import AugmentPools, build_pools
from tasks.spec import AugmentSpec

SR = 16000


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


def augment_spec(rir_root: Path | None, noise_root: Path, **kw) -> AugmentSpec:
    """The spec's augment block over these folders (keywords override the defaults)."""
    return AugmentSpec(rir_paths=[str(rir_root)] if rir_root else [], noise_paths=[str(noise_root)], **kw)


@pytest.fixture
def pools(rir_root, noise_root, tmp_path) -> AugmentPools:
    """Pools over the RIRS_NOISES and MUSAN folders (seed 13)."""
    return build_pools(augment_spec(rir_root, noise_root), seed=13, work_dir=str(tmp_path / "work"))
