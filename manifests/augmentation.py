"""Waveform augmentation from a recorded recipe: speed, reverberation, additive noise, gain.

A manifest row carries a `Recipe`; `apply_recipe` turns the clean utterance into exactly the audio
the model hears, so a training job can either read the materialised FLAC or rebuild it on the fly
from the clean source with this module (numpy + scipy only, no pipeline imports).

Processing order and definitions (see docs/manifest-contract.md, "The augmentation unit"):
1. **Speed** (sox ``speed`` / lhotse ``perturb_speed``: tempo and pitch change together) by
   band-limited resampling at the rational ``up/down`` closest to ``1/speed`` with denominators up to
   100 (0.95 -> 20/19, 1.05 -> 20/21): each block of ``down * q`` input samples is transformed once and
   its first bins are read as the spectrum of ``up * q`` output samples, under a low-pass that is flat
   to 90 % of the lower Nyquist frequency and rolls off (raised cosine) to zero at it, so nothing
   aliases. The output has exactly ``floor(n / speed + 0.5)`` samples (``speed_output_length``).
2. **Reverberation**: convolution with the RIR in the same FFT blocks (overlap-add), with the RIR
   rotated so its direct-path peak (largest absolute sample) is at time 0, so speech does not move in
   time; cut to the (speed-changed) input length, then scaled so the wet signal has the dry signal's
   energy. Speed and reverb together cost one forward and one inverse FFT per block.
3. **Noise**: the noise is read circularly from ``noise_offset_s`` (looped when shorter than the
   utterance) and scaled so that ``active speech level / noise power = snr_db``. The active speech level
   is the mean energy of the 20 ms frames whose energy is within 40 dB of the loudest frame
   (``active_level``), so pauses and silence do not lower the speech level; the noise power is its mean
   energy over the whole utterance. The speech is the signal after steps 1-2.
4. **Gain**: ``recipe.gain`` when given; otherwise 1.0, or ``PEAK_LIMIT / peak`` when the mix would peak
   above ``PEAK_LIMIT`` (so 16-bit FLAC never clips). ``apply_recipe`` returns the gain it used; the
   materialiser records it, and re-applying a recipe with that gain reproduces the audio exactly.

Determinism: no random numbers are drawn here (everything random is in the recipe); FFTs are
scipy's pocketfft (single-threaded, no BLAS) on fixed block sizes and all reductions are sequential
numpy calls on fixed blocks, so the same inputs give bit-identical float32 output in any process on
the same numpy/scipy build. ``DSP_VERSION`` changes whenever the same recipe would give other samples.

Memory: everything runs in blocks (``FFT_SIZE`` output samples for speed and reverb, ``BLOCK`` for
energies, noise and peak), in place where possible: beyond the input, a call holds the float32 output
plus block-sized temporaries (a 1-hour recording: +output, measured in docs/augmentation.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np

RECIPE_COLUMNS: tuple[str, ...] = ("speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain", "aug_seed")

FRAME_S = 0.020  # frame length for the active speech level
ACTIVE_RANGE_DB = 40.0  # frames within this many dB of the loudest frame count as active speech
PEAK_LIMIT = 0.99  # largest absolute sample after the automatic gain (-0.09 dBFS)
MAX_DENOMINATOR = 100  # of the rational speed approximation
BLOCK = 1 << 18  # samples per block for energies, noise mixing and peak search
FFT_SIZE = 1 << 16  # output points per FFT block for speed and reverb (smaller for short utterances)
TAPER = 0.10  # share of the lower Nyquist band the resampling low-pass rolls off over
KERNEL_PAD = 256  # output samples kept free on each side of a block for the resampling kernel's tails
DSP_VERSION = 2  # bump whenever the same recipe would produce different samples


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
        """The manifest columns (RECIPE_COLUMNS) of this recipe (flat scalars: no deep copy as `asdict` makes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

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
    """(up, down): the rational closest to 1/speed with small terms (1.05 -> 20/21, 0.95 -> 20/19)."""
    frac = Fraction(speed).limit_denominator(MAX_DENOMINATOR)
    return frac.denominator, frac.numerator


def change_speed(audio: np.ndarray, speed: float) -> np.ndarray:
    """Resample so that playback at the same rate is `speed` times faster (pitch moves too)."""
    if speed <= 0:
        raise ValueError(f"speed must be positive (got {speed})")
    if speed == 1.0:
        return np.array(audio, dtype=np.float32, copy=True)
    return _speed_and_convolve(np.asarray(audio, dtype=np.float32).reshape(-1), speed, None)[0]


def _taper(n_in: int, n_out: int) -> np.ndarray:
    """Resampling low-pass on the first min(n_in, n_out)/2 + 1 bins, with irfft's n_out/n_in scale.

    Flat up to (1 - TAPER) of the lower Nyquist, then a raised cosine down to zero at it: the
    matching time kernel decays like 1/t^3, below -100 dB after KERNEL_PAD samples.
    """
    half = min(n_in, n_out) // 2
    f = np.arange(half + 1, dtype=np.float64) / half
    ramp = np.clip((1.0 - f) / TAPER, 0.0, 1.0)
    return ((0.5 - 0.5 * np.cos(np.pi * ramp)) * (n_out / n_in)).astype(np.float32)


def _parseval(spectrum: np.ndarray, n: int) -> float:
    """Energy of irfft(spectrum, n) from its (possibly truncated) rfft bins, in float64."""
    parts = spectrum.view(np.float32)  # re, im interleaved: no complex temporaries
    total = 2.0 * float(np.sum(np.square(parts, dtype=np.float64))) - float(abs(spectrum[0]) ** 2)
    if n % 2 == 0 and len(spectrum) == n // 2 + 1:
        total -= float(abs(spectrum[-1]) ** 2)
    return total / n


def _fast_units(minimum: int) -> int:
    """Smallest 2^a or 3 * 2^a >= minimum: block sizes down * k and up * k then FFT fastest."""
    power = 1 << max(0, (minimum - 1).bit_length())
    three = 3 << max(0, (-(-minimum // 3) - 1).bit_length())
    return min(power, three)


def _speed_and_convolve(x: np.ndarray, speed: float, rir: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Speed change and (optionally) RIR convolution in one block FFT pass; returns (output, dry energy).

    Each block of ``down * q`` input samples is transformed once (rfft of ``down * k`` points); its
    first bins, read as the spectrum of ``up * k`` output points, are the block resampled by
    ``up/down`` (band-limited by ``_taper``), and multiplying them by the RIR's spectrum convolves in
    the same step, so speed + reverb cost one forward and one inverse FFT per block. The RIR is
    rotated so its direct-path peak sits at index 0 (no time shift); circular wrap-around is avoided
    by reserving ``2 * pad + len(rir) - 1`` output slots per block, and the wrapped left spill is added
    before the block. The dry energy (speech after the speed change, before the RIR) comes from the
    block spectra by Parseval; blocks overlap only by their kernel tails, so it is exact to ~1e-4.
    """
    import scipy.fft  # here, not at module level: importing scipy costs ~1 s in every process that reads manifests

    n = len(x)
    target = speed_output_length(n, speed)
    up, down = speed_ratio(speed)
    resampling = up != down
    pad = int(math.ceil(KERNEL_PAD * max(1.0, up / down))) if resampling else 0
    if rir is not None:
        h = np.asarray(rir, dtype=np.float32).reshape(-1)
        if len(h) == 0 or not np.any(h):
            raise ValueError("the room impulse response is empty or all zeros")
        shift, m = direct_path_index(h), len(h)
    else:
        h, shift, m = None, 0, 1
    out = np.zeros(target, dtype=np.float32)
    if n == 0 or target == 0:
        return out, 0.0
    reserved = 2 * pad + m - 1
    want = max(reserved + up, min(max(FFT_SIZE, 4 * reserved), target + reserved))
    k = _fast_units(-(-want // up))
    n_in, n_out = down * k, up * k
    units = (n_out - reserved) // up  # block length in units of (down in, up out) samples
    step_in, step_out = down * units, up * units
    bins = min(n_in, n_out) // 2 + 1
    taper = _taper(n_in, n_out) if resampling else None
    spectrum_h = None
    if h is not None:
        rotated = np.zeros(n_out, dtype=np.float32)
        rotated[: m - shift] = h[shift:]
        if shift:
            rotated[n_out - shift :] = h[:shift]
        spectrum_h = scipy.fft.rfft(rotated)[:bins]
    left = pad + shift  # output samples before the block's origin, found at the buffer's end
    right = n_out - left
    dry_energy = 0.0
    for block, start in enumerate(range(0, n, step_in)):
        spec = scipy.fft.rfft(x[start : start + step_in], n_in)[:bins]
        if taper is not None:
            spec *= taper
            if h is not None:
                dry_energy += _parseval(spec, n_out)
        if spectrum_h is not None:
            spec *= spectrum_h
        y = scipy.fft.irfft(spec, n_out)
        origin = block * step_out
        hi = min(target, origin + right)
        if hi > origin:
            out[origin:hi] += y[: hi - origin]
        lo = max(0, origin - left)
        if lo < origin:
            out[lo:origin] += y[n_out - (origin - lo) :]
    if h is not None and not resampling:
        dry_energy = _energy(x)
    return out, dry_energy


# ------------------------------------------------------------------------------------- reductions
def _energy(x: np.ndarray) -> float:
    """Sum of squares in float64, block by block (bounded memory, fixed order)."""
    total = 0.0
    for start in range(0, len(x), BLOCK):  # not np.dot: BLAS may thread and reorder
        total += float(np.sum(np.square(x[start : start + BLOCK], dtype=np.float64)))
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
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    wet, dry_energy = _speed_and_convolve(x, 1.0, rir)
    return _match_energy(wet, dry_energy)


def _match_energy(wet: np.ndarray, dry_energy: float) -> np.ndarray:
    """Scale the reverberant signal in place to the dry signal's energy."""
    if dry_energy == 0.0 or len(wet) == 0:
        return wet
    wet_energy = _energy(wet)
    if wet_energy == 0.0:
        raise ValueError("reverberation produced silence (the RIR's energy lies outside the utterance)")
    wet *= np.float32(math.sqrt(dry_energy / wet_energy))
    return wet


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
        block = _noise_block(noise, start, first, min(n, first + BLOCK))
        noise_energy += float(np.sum(np.square(block, dtype=np.float64)))
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
    if recipe.speed <= 0:
        raise ValueError(f"speed must be positive (got {recipe.speed})")
    if recipe.rir_id is not None:  # speed and reverb in one FFT pass; a new array either way
        y = _match_energy(*_speed_and_convolve(np.asarray(x, dtype=np.float32), recipe.speed, rir))
    elif recipe.speed != 1.0:
        y = change_speed(x, recipe.speed)
    else:
        y = np.array(x, dtype=np.float32, copy=True)  # never modify the caller's array in place
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
    import scipy.signal

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
