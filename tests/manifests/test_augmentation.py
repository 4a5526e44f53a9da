"""The augmentation DSP, checked with measurements written independently of the mixing code."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from manifests.augmentation import (
    PEAK_LIMIT,
    RECIPE_COLUMNS,
    Recipe,
    apply_recipe,
    load_noise,
    load_rir,
    resample,
)

SR = 16000
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------- fixtures
def speech_like(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    """Syllable-like harmonic bursts with pauses of near-silence (-70 dB) between them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.zeros(n)
    pos = int(0.3 * SR)
    while pos < n - SR // 4:
        length = min(int(rng.uniform(0.15, 0.35) * SR), n - pos)
        envelope[pos : pos + length] = np.hanning(length) * rng.uniform(0.4, 1.0)
        pos += length + int(rng.uniform(0.1, 0.5) * SR)
    floor = 10 ** (-70 / 20) * rng.standard_normal(n)
    return (0.25 * voiced * envelope + floor).astype(np.float32)


def noise_like(seconds: float, seed: int = 1) -> np.ndarray:
    """Pink-ish noise (white noise through a one-pole low-pass)."""
    import scipy.signal

    white = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return scipy.signal.lfilter([0.3], [1, -0.7], white).astype(np.float32)


def rir_with_predelay(predelay_s: float = 0.020, rt60: float = 0.4, seed: int = 2) -> np.ndarray:
    """Zeros for the pre-delay, a direct path of 1.0, then a decaying noise tail (direct-to-reverberant ~0 dB)."""
    rng = np.random.default_rng(seed)
    start = int(predelay_s * SR)
    tail_n = int(rt60 * SR)
    t = np.arange(tail_n) / SR
    tail = 0.05 * rng.standard_normal(tail_n) * np.exp(-6.9 * t / rt60)
    rir = np.zeros(start + 1 + tail_n, dtype=np.float32)
    rir[start] = 1.0
    rir[start + 1 + int(0.002 * SR) :] = tail[: tail_n - int(0.002 * SR)]
    return rir


def active_power(x: np.ndarray, frame: int = 320, range_db: float = 40.0) -> float:
    """Test's own active level: plain loop over 20 ms frames, keep those within 40 dB of the max."""
    energies = []
    for start in range(0, len(x) - frame + 1, frame):
        chunk = [float(v) for v in x[start : start + frame]]
        energies.append(sum(v * v for v in chunk) / frame)
    top = max(energies)
    kept = [e for e in energies if e >= top / 10 ** (range_db / 10)]
    return sum(kept) / len(kept)


# ------------------------------------------------------------------------------------------ speed
@pytest.mark.parametrize("speed", [0.9, 0.95, 1.05, 1.1])
@pytest.mark.parametrize("n", [16000, 16001, 48017, 99991])
def test_speed_gives_round_len_over_speed_samples(speed: float, n: int) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    y, _ = apply_recipe(x, SR, Recipe(speed=speed, gain=1.0))
    assert len(y) == round(n / speed)
    assert y.dtype == np.float32


@pytest.mark.parametrize("speed", [0.95, 1.05])
def test_speed_shifts_pitch_like_sox_speed(speed: float) -> None:
    t = np.arange(2 * SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y, _ = apply_recipe(tone, SR, Recipe(speed=speed, gain=1.0))
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * SR / len(y)
    assert abs(peak_hz - 1000 * speed) < 2.0


# ----------------------------------------------------------------------------------------- reverb
def test_reverb_keeps_length_level_and_direct_path_timing() -> None:
    dry_in = speech_like(3.0)
    rir = rir_with_predelay(0.020)
    dry, _ = apply_recipe(dry_in, SR, Recipe(speed=1.05, gain=1.0))
    wet, _ = apply_recipe(dry_in, SR, Recipe(speed=1.05, rir_id="r", gain=1.0), rir=rir)
    assert len(wet) == len(dry) == round(len(dry_in) / 1.05)
    # Cross-correlation computed here with an explicit FFT, lags -max..+max.
    n = len(dry) + len(wet)
    xc = np.fft.irfft(np.fft.rfft(wet, n) * np.conj(np.fft.rfft(dry, n)), n)
    max_lag = 2000
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([xc[: max_lag + 1], xc[-max_lag:]])
    lag = lags[np.argmax(values)]
    assert abs(lag) <= 16, f"wet output is shifted by {lag} samples"
    # Energy-normalised: the reverberant speech keeps the dry level.
    ratio = float(np.sum(wet.astype(np.float64) ** 2) / np.sum(dry.astype(np.float64) ** 2))
    assert ratio == pytest.approx(1.0, rel=1e-3)
    # ...and it really is reverberant: energy fills the pause after the first syllable.
    assert not np.allclose(wet, dry, atol=1e-3)


def test_reverb_without_alignment_would_move_speech() -> None:
    """Guard for the test above: the same RIR convolved naively shifts by the pre-delay (320 samples)."""
    x = speech_like(2.0)
    rir = rir_with_predelay(0.020)
    naive = np.convolve(x, rir)[: len(x)]
    n = 2 * len(x)
    xc = np.fft.irfft(np.fft.rfft(naive, n) * np.conj(np.fft.rfft(x, n)), n)
    assert np.argmax(xc[:2000]) == pytest.approx(320, abs=16)


# ------------------------------------------------------------------------------------------ noise
@pytest.mark.parametrize("snr_db", [0.0, 5.0, 12.3, 15.0])
@pytest.mark.parametrize("with_reverb", [False, True])
def test_snr_against_active_speech_level(snr_db: float, with_reverb: bool) -> None:
    speech = speech_like(4.0, seed=3)
    noise = noise_like(1.3, seed=4)  # shorter than the speech: it loops
    rir = rir_with_predelay() if with_reverb else None
    rir_id = "r" if with_reverb else None
    clean, _ = apply_recipe(speech, SR, Recipe(speed=0.95, rir_id=rir_id, gain=1.0), rir=rir)
    mix, _ = apply_recipe(
        speech, SR,
        Recipe(speed=0.95, rir_id=rir_id, noise_id="n", noise_offset_s=0.4, snr_db=snr_db, gain=1.0),
        rir=rir, noise=noise,
    )
    added = mix.astype(np.float64) - clean.astype(np.float64)
    measured = 10 * np.log10(active_power(clean) / np.mean(added**2))
    assert abs(measured - snr_db) < 0.5
    # Measured over the whole signal, pauses included, the SNR would read lower: the choice matters.
    overall = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added**2))
    assert overall < snr_db - 1.0


def test_snr_on_espeak_speech(speech_wav) -> None:
    data, file_sr = sf.read(speech_wav("The weather is lovely and I am very happy today."), dtype="float32")
    speech = resample(data, file_sr, SR)
    noise = noise_like(10.0, seed=9)
    clean, _ = apply_recipe(speech, SR, Recipe(speed=1.05, gain=1.0))
    mix, _ = apply_recipe(speech, SR, Recipe(speed=1.05, noise_id="n", noise_offset_s=2.5, snr_db=7.0, gain=1.0),
                          noise=noise)
    added = mix.astype(np.float64) - clean.astype(np.float64)
    assert abs(10 * np.log10(active_power(clean) / np.mean(added**2)) - 7.0) < 0.5


def test_noise_starts_at_offset_and_loops() -> None:
    speech = speech_like(2.0, seed=5)
    noise = noise_like(0.3, seed=6)  # 4800 samples, looped over 32000
    clean, _ = apply_recipe(speech, SR, Recipe(gain=1.0))
    mix, _ = apply_recipe(speech, SR, Recipe(noise_id="n", noise_offset_s=0.1, snr_db=5.0, gain=1.0), noise=noise)
    added = mix.astype(np.float64) - clean.astype(np.float64)
    expected = np.array([noise[(1600 + i) % len(noise)] for i in range(len(speech))], dtype=np.float64)
    scale = float(np.dot(added, expected) / np.dot(expected, expected))
    assert scale > 0
    np.testing.assert_allclose(added, scale * expected, atol=1e-5)


def test_noise_on_silent_utterance_is_an_error() -> None:
    with pytest.raises(ValueError, match="silent"):
        apply_recipe(np.zeros(SR, np.float32), SR, Recipe(noise_id="n", snr_db=5.0), noise=noise_like(1.0))


def test_recipe_needs_its_arrays() -> None:
    x = speech_like(1.0)
    with pytest.raises(ValueError, match="RIR"):
        apply_recipe(x, SR, Recipe(rir_id="r"))
    with pytest.raises(ValueError, match="noise"):
        apply_recipe(x, SR, Recipe(noise_id="n", snr_db=3.0))


# ------------------------------------------------------------------------------------------- gain
def test_automatic_gain_prevents_clipping_and_reapplies_exactly() -> None:
    speech = speech_like(3.0, seed=7) * 3.5  # peaks well above 1.0 once noise is added
    noise = noise_like(2.0, seed=8)
    rir = rir_with_predelay()
    drawn = Recipe(speed=1.05, rir_id="r", noise_id="n", noise_offset_s=0.3, snr_db=2.0, aug_seed=42)
    y, gain = apply_recipe(speech, SR, drawn, rir=rir, noise=noise)
    assert gain < 1.0
    assert np.max(np.abs(y)) <= PEAK_LIMIT + 1e-6
    recorded = Recipe.from_row({**drawn.to_row(), "gain": gain})
    again, gain_again = apply_recipe(speech, SR, recorded, rir=rir, noise=noise)
    assert gain_again == gain
    assert again.tobytes() == y.tobytes()


def test_identity_recipe_leaves_audio_unchanged() -> None:
    x = speech_like(1.0)
    y, gain = apply_recipe(x, SR, Recipe(gain=1.0))
    assert gain == 1.0 and y.tobytes() == x.tobytes()
    assert y is not x  # never aliases the caller's array


# ----------------------------------------------------------------------------------------- recipe
def test_recipe_row_round_trip_and_nulls() -> None:
    recipe = Recipe(speed=0.95, rir_id="sim/room_03", noise_id="musan/noise/x.wav", noise_offset_s=1.25,
                    snr_db=7.5, gain=0.8, aug_seed=2**62 + 5)
    row = recipe.to_row()
    assert list(row) == list(RECIPE_COLUMNS)
    assert Recipe.from_row(row) == recipe
    assert Recipe.from_row(pd.Series(row)) == recipe
    nulls = pd.Series({"speed": 1.0, "rir_id": None, "noise_id": pd.NA, "noise_offset_s": np.nan,
                       "snr_db": float("nan"), "gain": np.nan, "aug_seed": 0})
    parsed = Recipe.from_row(nulls)
    assert parsed == Recipe()
    assert parsed.is_identity and Recipe(gain=1.0).is_identity
    assert not Recipe(speed=1.05).is_identity and not Recipe(rir_id="r").is_identity


# ------------------------------------------------------------------------------------ determinism
_CHILD = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from manifests.augmentation import Recipe, apply_recipe
    rng = np.random.default_rng(123)
    x = (0.2 * rng.standard_normal(16000 * 5)).astype(np.float32)
    rir = (rng.standard_normal(6000) * np.exp(-np.arange(6000) / 900)).astype(np.float32)
    noise = rng.standard_normal(16000 * 2).astype(np.float32)
    r = Recipe(speed=1.05, rir_id="r", noise_id="n", noise_offset_s=0.7, snr_db=6.5)
    y, g = apply_recipe(x, 16000, r, rir, noise)
    print(hashlib.sha256(y.tobytes()).hexdigest(), repr(g))
    """
)


def test_identical_output_across_processes() -> None:
    script = _CHILD.format(repo=str(REPO))
    outputs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120).stdout
        for _ in range(2)
    ]
    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(compile(script, "<child>", "exec"), {})
    here = here.getvalue()
    assert outputs[0] == outputs[1] == here


# ---------------------------------------------------------------------------------------- loading
def test_load_rir_and_noise_resample_and_pick_channels(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(rate // 2) / rate
    tone = np.sin(2 * np.pi * 300 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([0.8 * tone, 0.2 * tone], axis=1).astype(np.float32), rate, subtype="FLOAT")

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x[800:-800].astype(np.float64) ** 2)))

    rir = load_rir(path, SR)  # first channel only
    noise = load_noise(path, SR)  # channels averaged
    assert rir.dtype == noise.dtype == np.float32
    assert abs(len(rir) - SR // 2) <= 1 and abs(len(noise) - SR // 2) <= 1
    assert rms(rir) == pytest.approx(0.8 / np.sqrt(2), rel=0.01)
    assert rms(noise) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    crossings = np.sum(np.diff(np.signbit(rir[800:-800])) != 0)
    assert crossings / ((len(rir) - 1600) / SR) == pytest.approx(600, rel=0.02)  # still 300 Hz


# ------------------------------------------------------------------------------------ SpecAugment
def test_specaugment_import_is_light() -> None:
    code = "import sys; import manifests.specaugment as s; assert s.SPECAUGMENT_POLICY; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         timeout=120).stdout
    assert out.strip() == "False"


def test_specaugment_masks_within_policy_bounds() -> None:
    import torch

    from manifests.specaugment import SPECAUGMENT_POLICY, SpecAugment

    torch.manual_seed(0)
    policy = {**SPECAUGMENT_POLICY, "time_warp_w": 0, "mask_value": -100.0}
    module = SpecAugment(policy)
    spec = torch.randn(8, 80, 400)
    out = module(spec)
    assert out.shape == spec.shape
    masked = out == -100.0
    max_t = min(policy["time_mask_t"], int(400 * policy["time_mask_max_ratio"]))
    masked_rows = masked.all(dim=2).sum(dim=1)  # whole mel bins masked, per example
    masked_cols = masked.all(dim=1).sum(dim=1)  # whole frames masked, per example
    assert int(masked_rows.max()) <= policy["freq_masks"] * policy["freq_mask_f"]
    assert int(masked_cols.max()) <= policy["time_masks"] * max_t
    assert int(masked_rows.sum()) > 0 and int(masked_cols.sum()) > 0
    assert torch.equal(out[~masked], spec[~masked])  # nothing else changes
    assert len({tuple(m.all(dim=1).nonzero().flatten().tolist()) for m in masked}) > 1  # iid per example
    module.eval()
    assert torch.equal(module(spec), spec)


def test_specaugment_time_warp_and_mean_fill() -> None:
    import torch

    from manifests.specaugment import SpecAugment, time_warp

    torch.manual_seed(1)
    ramp = torch.arange(200, dtype=torch.float32).repeat(40, 1)  # (freq, time): value = frame index
    warped = time_warp(ramp, 5)
    assert warped.shape == ramp.shape and not torch.equal(warped, ramp)
    assert bool((warped[:, 1:] >= warped[:, :-1] - 1e-4).all())  # a warp keeps time order
    assert float((warped - ramp).abs().max()) <= 5.0 + 1e-4
    out = SpecAugment()(torch.randn(2, 80, 300) + 5.0)
    assert out.shape == (2, 80, 300) and float(out.mean()) == pytest.approx(5.0, abs=0.2)


# ------------------------------------------------------------------------ block FFT vs references
def band_limited(seconds: float, seed: int, top_hz: float = 6000.0) -> np.ndarray:
    """Noise with nothing above `top_hz` (FFT-masked), so every resampler agrees on it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / SR) > top_hz] = 0
    return (0.1 * np.fft.irfft(spectrum, n)).astype(np.float32)


def error_db(got: np.ndarray, want: np.ndarray, trim: int = 2000) -> float:
    """Error energy relative to the reference, in dB, away from the ends."""
    got, want = got[trim:-trim].astype(np.float64), want[trim:-trim].astype(np.float64)
    return float(10 * np.log10(np.sum((got - want) ** 2) / np.sum(want**2)))


@pytest.mark.parametrize("speed", [0.9, 0.95, 1.05, 1.1])
def test_speed_over_many_blocks_matches_whole_signal_fft_resampling(speed: float) -> None:
    import scipy.signal

    from manifests.augmentation import speed_ratio

    up, down = speed_ratio(speed)
    x = band_limited(12.0, seed=11)  # several FFT blocks
    x = x[: len(x) // down * down]  # so that len / speed is a whole number and both grids line up
    y, _ = apply_recipe(x, SR, Recipe(speed=speed, gain=1.0))
    reference = scipy.signal.resample(x.astype(np.float64), len(x) * up // down)  # one FFT, no blocks
    assert len(y) == len(reference)
    assert error_db(y, reference) < -60


@pytest.mark.parametrize("speed", [0.95, 1.05])
def test_speed_tones_are_exact_and_out_of_band_tones_vanish(speed: float) -> None:
    t = np.arange(4 * SR) / SR
    y, _ = apply_recipe((0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), SR, Recipe(speed=speed, gain=1.0))
    n = np.arange(len(y))
    ideal = 0.5 * np.sin(2 * np.pi * 3000 * speed * n / SR)
    assert error_db(y, ideal) < -80
    # 7.9 kHz played 5 % faster is above Nyquist: removed, not folded back into the band.
    high, _ = apply_recipe((0.5 * np.sin(2 * np.pi * 7900 * t)).astype(np.float32), SR, Recipe(speed=1.05, gain=1.0))
    assert np.sqrt(np.mean(high[2000:-2000].astype(np.float64) ** 2)) < 1e-3


@pytest.mark.parametrize("speed", [1.0, 0.95, 1.05])
def test_fused_speed_and_reverb_equal_direct_convolution(speed: float) -> None:
    x = speech_like(10.0, seed=12) + band_limited(10.0, seed=13)
    rir = rir_with_predelay(0.020, rt60=0.5)
    dry, _ = apply_recipe(x, SR, Recipe(speed=speed, gain=1.0))
    wet, _ = apply_recipe(x, SR, Recipe(speed=speed, rir_id="r", gain=1.0), rir=rir)
    shift = int(np.argmax(np.abs(rir)))
    direct = np.convolve(dry.astype(np.float64), rir.astype(np.float64))[shift : shift + len(dry)]
    direct *= np.sqrt(np.sum(dry.astype(np.float64) ** 2) / np.sum(direct**2))
    assert len(wet) == len(dry)
    assert error_db(wet, direct, trim=1) < -60


_HOUR_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    from manifests.augmentation import Recipe, apply_recipe

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    rng = np.random.default_rng(0)
    rir = (rng.standard_normal(8000) * np.exp(-np.arange(8000) / 1500)).astype(np.float32)
    noise = (0.1 * rng.standard_normal(16000 * 10)).astype(np.float32)
    recipe = Recipe(speed=0.95, rir_id="r", noise_id="n", noise_offset_s=1.0, snr_db=5.0)
    apply_recipe(np.ones(16000, np.float32), 16000, recipe, rir, noise)
    audio = np.tile((0.1 * rng.standard_normal(16000 * 60)).astype(np.float32), 60)  # one hour
    before = peak_mb()
    out, _ = apply_recipe(audio, 16000, recipe, rir, noise)
    print(json.dumps({{"extra_mb": peak_mb() - before, "input_mb": audio.nbytes / 2**20,
                       "output_mb": out.nbytes / 2**20, "samples": len(out)}}))
    """
)


@pytest.mark.slow
def test_one_hour_recording_needs_only_the_output_beyond_the_input() -> None:
    """Peak RSS while augmenting 1 h of 16 kHz audio grows by the output array plus blocks (< 64 MiB)."""
    import json

    result = subprocess.run([sys.executable, "-c", _HOUR_CHILD.format(repo=str(REPO))], capture_output=True,
                            text=True, check=True, timeout=600)
    stats = json.loads(result.stdout)
    assert stats["samples"] == round(3600 * SR / 0.95)
    assert stats["extra_mb"] < stats["output_mb"] + 64, stats
