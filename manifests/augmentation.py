"""Waveform augmentation from a recorded recipe: speed, reverberation, additive noise, gain.

A manifest row carries a `Recipe`; `apply_recipe` turns the clean utterance into exactly the audio
the model hears, so a training job can either read the materialised FLAC or rebuild it on the fly
from the clean source with this module (numpy + scipy only, no pipeline imports).

Processing order and definitions (see docs/manifest-contract.md, "The augmentation unit"):
1. **Speed** (sox ``speed`` / lhotse ``perturb_speed``: tempo and pitch change together) by polyphase
   resampling with ``scipy.signal.resample_poly`` at the rational ``up/down`` closest to ``1/speed``
   with denominators up to 100 (0.95 -> 20/19, 1.05 -> 20/21). The output has exactly
   ``floor(n / speed + 0.5)`` samples (``speed_output_length``): resample_poly's ceil length is cut or
   zero-padded by at most a sample or two.
2. **Reverberation**: block overlap-add FFT convolution with the RIR, shifted by the index of the RIR's
   direct-path peak (largest absolute sample) so speech does not move in time, cut to the input length,
   then scaled so the wet signal has the dry signal's energy.
3. **Noise**: the noise is read circularly from ``noise_offset_s`` (looped when shorter than the
   utterance) and scaled so that ``active speech level / noise power = snr_db``. The active speech level
   is the mean energy of the 20 ms frames whose energy is within 40 dB of the loudest frame
   (``active_level``), so pauses and silence do not lower the speech level; the noise power is its mean
   energy over the whole utterance. The speech is the signal after steps 1-2.
4. **Gain**: ``recipe.gain`` when given; otherwise 1.0, or ``PEAK_LIMIT / peak`` when the mix would peak
   above ``PEAK_LIMIT`` (so 16-bit FLAC never clips). ``apply_recipe`` returns the gain it used; the
   materialiser records it, and re-applying a recipe with that gain reproduces the audio exactly.

Determinism: no random numbers are drawn here (everything random is in the recipe); all reductions
are sequential numpy/scipy calls on fixed blocks, so the same inputs give bit-identical float32 output
in any process on the same numpy/scipy build.

Memory: the signal is processed in blocks of ``BLOCK`` samples; beyond the input and the output
(float32) a call holds at most one more float32 copy of the signal plus block-sized temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

RECIPE_COLUMNS: tuple[str, ...] = ("speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain", "aug_seed")

FRAME_S = 0.020  # frame length for the active speech level
ACTIVE_RANGE_DB = 40.0  # frames within this many dB of the loudest frame count as active speech
PEAK_LIMIT = 0.99  # largest absolute sample after the automatic gain (-0.09 dBFS)
MAX_DENOMINATOR = 100  # of the rational speed approximation
BLOCK = 1 << 18  # samples per block for energies, noise mixing and peak search


def _is_null(value: Any) -> bool:
    """None, NaN or pandas' NA (checked by type name so pandas is not imported)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


@dataclass(frozen=True)
class Recipe:
    """One utterance's augmentation, as recorded in the stage manifests.

    ``gain`` None means "choose the anti-clipping gain when applied"; a float is applied as is.
    """

    speed: float = 1.0
    rir_id: str | None = None
    noise_id: str | None = None
    noise_offset_s: float | None = None
    snr_db: float | None = None
    gain: float | None = None
    aug_seed: int = 0

    @property
    def is_identity(self) -> bool:
        """True when applying the recipe leaves the audio unchanged (for audio within PEAK_LIMIT)."""
        return (
            self.speed == 1.0
            and self.rir_id is None
            and self.noise_id is None
            and (self.gain is None or self.gain == 1.0)
        )

    def to_row(self) -> dict[str, Any]:
        """The manifest columns (RECIPE_COLUMNS) of this recipe."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Recipe:
        """Rebuild a recipe from a manifest row (dict or pandas Series); NaN and missing become None."""

        def get(name: str) -> Any:
            value = row.get(name) if hasattr(row, "get") else row[name]
            return None if _is_null(value) else value

        speed = get("speed")
        seed = get("aug_seed")
        return cls(
            speed=1.0 if speed is None else float(speed),
            rir_id=None if get("rir_id") is None else str(get("rir_id")),
            noise_id=None if get("noise_id") is None else str(get("noise_id")),
            noise_offset_s=None if get("noise_offset_s") is None else float(get("noise_offset_s")),
            snr_db=None if get("snr_db") is None else float(get("snr_db")),
            gain=None if get("gain") is None else float(get("gain")),
            aug_seed=0 if seed is None else int(seed),
        )


# ------------------------------------------------------------------------------------------ speed
def speed_output_length(num_samples: int, speed: float) -> int:
    """Samples after speed perturbation: round(n / speed), halves rounded up."""
    return int(math.floor(num_samples / speed + 0.5))


def speed_ratio(speed: float) -> tuple[int, int]:
    """(up, down) for resample_poly: the rational closest to 1/speed with small terms."""
    frac = Fraction(speed).limit_denominator(MAX_DENOMINATOR)
    return frac.denominator, frac.numerator


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Resample so that playback at the same rate is `speed` times faster (pitch moves too)."""
    if speed <= 0:
        raise ValueError(f"speed must be positive (got {speed})")
    target = speed_output_length(len(audio), speed)
    if speed == 1.0:
        return np.array(audio, dtype=np.float32, copy=True)
    up, down = speed_ratio(speed)
    out = scipy.signal.resample_poly(np.asarray(audio, dtype=np.float32), up, down)
    if len(out) >= target:
        return np.ascontiguousarray(out[:target], dtype=np.float32)
    return np.concatenate([out.astype(np.float32, copy=False), np.zeros(target - len(out), np.float32)])


# ------------------------------------------------------------------------------------- reductions
def _energy(x: np.ndarray) -> float:
    """Sum of squares in float64, block by block (bounded memory, fixed order)."""
    total = 0.0
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK].astype(np.float64)
        total += float(np.sum(block * block))  # not np.dot: BLAS may thread and reorder
    return total


def _peak(x: np.ndarray) -> float:
    peak = 0.0
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK]
        if len(block):
            peak = max(peak, float(np.max(np.abs(block))))
    return peak


def frame_energies(audio: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """Mean square of each full `frame_s` frame (the whole signal when shorter than one frame)."""
    frame = max(1, int(round(frame_s * sr)))
    n_frames = len(audio) // frame
    if n_frames == 0:
        if len(audio) == 0:
            return np.zeros(0)
        block = audio.astype(np.float64)
        return np.array([float(np.mean(block * block))])
    out = np.empty(n_frames, dtype=np.float64)
    per_block = max(1, BLOCK // frame)
    for first in range(0, n_frames, per_block):
        last = min(n_frames, first + per_block)
        block = audio[first * frame : last * frame].astype(np.float64).reshape(last - first, frame)
        out[first:last] = np.mean(block * block, axis=1)
    return out


def active_level(audio: np.ndarray, sr: int, range_db: float = ACTIVE_RANGE_DB) -> float:
    """Active speech power: mean energy of 20 ms frames within `range_db` of the loudest frame."""
    energies = frame_energies(audio, sr)
    if len(energies) == 0:
        return 0.0
    loudest = float(np.max(energies))
    if loudest <= 0.0:
        return 0.0
    active = energies[energies >= loudest * 10.0 ** (-range_db / 10.0)]
    return float(np.mean(active))


# ------------------------------------------------------------------------------------------ reverb
def direct_path_index(rir: np.ndarray) -> int:
    """Index of the RIR's direct-path peak (largest absolute sample, first if tied)."""
    return int(np.argmax(np.abs(rir)))


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir`, aligned on the direct path, same length and energy as the input."""
    x = np.asarray(audio, dtype=np.float32)
    h = np.asarray(rir, dtype=np.float64).reshape(-1)
    n, m = len(x), len(h)
    if m == 0 or not np.any(h):
        raise ValueError("the room impulse response is empty or all zeros")
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    shift = direct_path_index(h)
    step = max(1 << 15, 4 * m)  # input samples per block; FFT size ~ step + m
    nfft = scipy.fft.next_fast_len(step + m - 1, real=True)
    spectrum = scipy.fft.rfft(h, nfft)
    for start in range(0, n, step):
        block = x[start : start + step].astype(np.float64)
        wet = scipy.fft.irfft(scipy.fft.rfft(block, nfft) * spectrum, nfft)[: len(block) + m - 1]
        lo = start - shift  # output index of wet[0]
        a, b = max(0, lo), min(n, lo + len(wet))
        if a < b:
            out[a:b] += wet[a - lo : b - lo].astype(np.float32)
    dry_energy, wet_energy = _energy(x), _energy(out)
    if dry_energy == 0.0:
        return out
    if wet_energy == 0.0:
        raise ValueError("reverberation produced silence (the RIR's energy lies outside the utterance)")
    out *= np.float32(math.sqrt(dry_energy / wet_energy))
    return out


# ------------------------------------------------------------------------------------------- noise
def _noise_block(noise: np.ndarray, start: int, first: int, last: int) -> np.ndarray:
    """noise[(start + i) % len(noise)] for i in [first, last), from contiguous slices."""
    size = len(noise)
    pos = (start + first) % size
    if pos + (last - first) <= size:
        return noise[pos : pos + last - first]
    parts, need = [], last - first
    while need > 0:
        take = min(need, size - pos)
        parts.append(noise[pos : pos + take])
        need -= take
        pos = 0
    return np.concatenate(parts)


def add_noise(speech: np.ndarray, sr: int, noise: np.ndarray, snr_db: float, offset_s: float = 0.0) -> np.ndarray:
    """Add `noise` (looped from `offset_s`) in place at `snr_db` against the active speech level."""
    noise = np.asarray(noise, dtype=np.float32).reshape(-1)
    n = len(speech)
    if n == 0:
        return speech
    if len(noise) == 0:
        raise ValueError("the noise recording is empty")
    speech_level = active_level(speech, sr)
    if speech_level <= 0.0:
        raise ValueError("the utterance is silent, so a signal-to-noise ratio is undefined")
    start = int(round(offset_s * sr)) % len(noise)
    noise_energy = 0.0
    for first in range(0, n, BLOCK):
        block = _noise_block(noise, start, first, min(n, first + BLOCK)).astype(np.float64)
        noise_energy += float(np.sum(block * block))
    noise_level = noise_energy / n
    if noise_level <= 0.0:
        raise ValueError("the noise segment is silent, so it cannot be scaled to an SNR")
    scale = np.float32(math.sqrt(speech_level / (noise_level * 10.0 ** (snr_db / 10.0))))
    for first in range(0, n, BLOCK):
        last = min(n, first + BLOCK)
        speech[first:last] += scale * _noise_block(noise, start, first, last)
    return speech


# ------------------------------------------------------------------------------------------- gain
def required_gain(audio: np.ndarray) -> float:
    """1.0, or the factor that brings the peak down to PEAK_LIMIT when it is above it."""
    peak = _peak(audio)
    return 1.0 if peak <= PEAK_LIMIT else PEAK_LIMIT / peak


def apply_recipe(
    audio: np.ndarray,
    sr: int,
    recipe: Recipe,
    rir: np.ndarray | None = None,
    noise: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The augmented float32 audio and the gain used; `rir`/`noise` must be at `sr` (see load_*)."""
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"apply_recipe expects mono 1-D audio (got shape {x.shape})")
    if recipe.rir_id is not None and rir is None:
        raise ValueError(f"recipe names RIR {recipe.rir_id!r} but no RIR array was given")
    if recipe.noise_id is not None and (noise is None or recipe.snr_db is None):
        raise ValueError(f"recipe names noise {recipe.noise_id!r} but no noise array or snr_db was given")
    if recipe.speed != 1.0:
        y = change_speed(x, recipe.speed)
    elif recipe.rir_id is not None:
        y = np.asarray(x, dtype=np.float32)  # reverberate writes a new array: no copy needed
    else:
        y = np.array(x, dtype=np.float32, copy=True)  # never modify the caller's array in place
    if recipe.rir_id is not None:
        y = reverberate(y, rir)
    if recipe.noise_id is not None:
        add_noise(y, sr, noise, float(recipe.snr_db), recipe.noise_offset_s or 0.0)
    gain = required_gain(y) if recipe.gain is None else float(recipe.gain)
    if gain != 1.0:
        y *= np.float32(gain)
    return y, gain


# ---------------------------------------------------------------------------------------- loading
def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling to `target_sr` (float32)."""
    if orig_sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    frac = Fraction(target_sr, orig_sr)
    out = scipy.signal.resample_poly(np.asarray(audio, dtype=np.float32), frac.numerator, frac.denominator)
    return out.astype(np.float32, copy=False)


def _read(path: Any) -> tuple[np.ndarray, int]:
    import soundfile

    data, file_sr = soundfile.read(path, dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError(f"{path}: no audio samples")
    return data, int(file_sr)


def load_rir(path: Any, sr: int = 16000) -> np.ndarray:
    """A RIR as mono float32 at `sr`: the first channel (averaging mics would smear the direct path)."""
    data, file_sr = _read(path)
    return resample(data[:, 0], file_sr, sr)


def load_noise(path: Any, sr: int = 16000) -> np.ndarray:
    """A noise recording as mono float32 at `sr` (channels averaged)."""
    data, file_sr = _read(path)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
    return resample(mono, file_sr, sr)
