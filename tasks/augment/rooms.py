"""Simulated rooms: shoebox RIRs by the image method, for builds that name no RIR folders.

Each room is drawn from (seed, room index) alone and written once as a float WAV under the work
folder (``seed<seed>-<SIM_VERSION>/room_XX.wav``), so a resumed or repeated build reuses the same
rooms, and the path below the work folder (not the absolute path) names them in content hashes.
"""

from __future__ import annotations

import io
import math

import numpy as np

from manifests import uri as fs
from tasks.augment.recipes import derive_seed

SR = 16000
SIM_VERSION = "v1"  # bump when the simulator changes, so cached rooms are rebuilt
SPEED_OF_SOUND = 343.0


def simulate_rir(rng: np.random.Generator, sr: int = SR) -> tuple[np.ndarray, dict[str, float]]:
    """One shoebox-room RIR by the image method (Allen & Berkley 1979), and the room's parameters.

    Room 3-10 x 3-8 x 2.5-4 m, RT60 0.2-0.7 s (Sabine's formula gives one wall reflection coefficient),
    source and microphone >= 0.5 m from walls and >= 1 m apart. Images up to RT60 of delay are summed
    with linearly interpolated fractional delays; an 80 Hz high-pass removes the method's DC offset.
    """
    import scipy.signal

    dims = rng.uniform([3.0, 3.0, 2.5], [10.0, 8.0, 4.0])
    rt60 = float(rng.uniform(0.2, 0.7))
    volume = float(np.prod(dims))
    surface = 2.0 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    alpha = min(0.95, 0.161 * volume / (surface * rt60))
    beta = math.sqrt(1.0 - alpha)
    src = rng.uniform(0.5, dims - 0.5)
    mic = rng.uniform(0.5, dims - 0.5)
    for _ in range(100):
        if np.linalg.norm(src - mic) >= 1.0:
            break
        mic = rng.uniform(0.5, dims - 0.5)
    length = int(rt60 * sr)
    max_dist = SPEED_OF_SOUND * length / sr

    def axis(d: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis image offsets from the mic and their reflection counts."""
        n = np.arange(-(int(max_dist / (2 * dims[d])) + 1), int(max_dist / (2 * dims[d])) + 2)
        offsets, refl = [], []
        for q in (0, 1):
            offsets.append((1 - 2 * q) * src[d] + 2 * n * dims[d] - mic[d])
            refl.append(np.abs(n - q) + np.abs(n))
        return np.concatenate(offsets), np.concatenate(refl)

    (dx, rx), (dy, ry), (dz, rz) = axis(0), axis(1), axis(2)
    h = np.zeros(length + 2)
    yz_dist2 = dy[:, None] ** 2 + dz[None, :] ** 2
    yz_refl = ry[:, None] + rz[None, :]
    for x_off, x_refl in zip(dx, rx, strict=True):
        dist = np.sqrt(x_off**2 + yz_dist2)
        delay = dist / SPEED_OF_SOUND * sr
        keep = delay < length
        if not keep.any():
            continue
        amp = beta ** (x_refl + yz_refl[keep]) / (4.0 * math.pi * dist[keep])
        pos = delay[keep]
        base = np.floor(pos).astype(np.int64)
        frac = pos - base
        h += np.bincount(base, amp * (1.0 - frac), minlength=length + 2)[: length + 2]
        h += np.bincount(base + 1, amp * frac, minlength=length + 2)[: length + 2]
    sos = scipy.signal.butter(2, 80.0, btype="highpass", fs=sr, output="sos")
    h = scipy.signal.sosfilt(sos, h[:length])
    h /= np.max(np.abs(h))
    params = {"room_x": float(dims[0]), "room_y": float(dims[1]), "room_z": float(dims[2]), "rt60_s": rt60,
              "distance_m": float(np.linalg.norm(src - mic))}
    return h.astype(np.float32), params


def simulate_rirs(count: int, seed: int, folder: str, sr: int = SR) -> dict[str, str]:
    """`count` simulated rooms as WAV files (reused when already written); ids ``sim/room_XX``."""
    import soundfile

    target = fs.join(folder, f"seed{seed}-{SIM_VERSION}")
    out: dict[str, str] = {}
    for i in range(count):
        uri = fs.join(target, f"room_{i:02d}.wav")
        if not fs.exists(uri):
            rng = np.random.default_rng(derive_seed(seed, f"simulated_rir:{i}"))
            rir, _ = simulate_rir(rng, sr)
            buf = io.BytesIO()
            soundfile.write(buf, rir, sr, format="WAV", subtype="FLOAT")
            fs.write_bytes(uri, buf.getvalue())
        out[f"sim/room_{i:02d}"] = uri
    return out
