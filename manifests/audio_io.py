"""Decode exactly the audio a manifest row names: a range of a file, and the row's recipe when needed.

Training jobs install only `manifests/`, so this mirrors `tasks.core.audio.read_audio` (soundfile with a
little resampling context on both sides, ffmpeg for MP4-family containers, channels averaged,
`scipy.signal.resample_poly` to 16 kHz) without importing the pipeline. The lazy path therefore
rebuilds the same samples the materialiser wrote, up to FLAC's 16-bit rounding.

Only the needed range is decoded: soundfile seeks, ffmpeg gets `-ss`/`-t`, and an S3 object is read
through ranged GETs (`_S3File`), so a 5 s window of an hour-long file costs about 5 s of I/O.
Nothing here holds open files or clients between calls, so readers are safe to pickle into
DataLoader workers; decoded RIR/noise arrays are cached per process.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from manifests import uri as fs
from manifests.augmentation import Recipe, apply_recipe, load_noise, load_rir

SAMPLE_RATE = 16000
FFMPEG_SUFFIXES: tuple[str, ...] = (".mp4", ".m4a", ".webm", ".mkv", ".mov", ".aac", ".opus", ".amr")
S3_BUFFER = 1 << 20


class _S3File(io.RawIOBase):
    """A seekable read-only S3 object: each read is one ranged GET (buffered by the caller)."""

    def __init__(self, uri: str) -> None:
        self._bucket, self._key = fs.split_s3(uri)
        self._client = fs._client()
        self._size = int(self._client.head_object(Bucket=self._bucket, Key=self._key)["ContentLength"])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        rng = f"bytes={self._pos}-{self._pos + want - 1}"
        data = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=rng)["Body"].read()
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


@contextlib.contextmanager
def open_audio(uri: str) -> Iterator[Any]:
    """A path (local) or a buffered seekable file object (S3) that soundfile can read."""
    if not fs.is_s3(uri):
        yield uri
        return
    with io.BufferedReader(_S3File(uri), buffer_size=S3_BUFFER) as fh:
        yield fh


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to `n` samples (pads only rounding leftovers of a sample or two)."""
    x = x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))
    return np.ascontiguousarray(x, dtype=np.float32)


def read_audio(uri: str, offset_s: float = 0.0, duration_s: float | None = None,
               sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sr`: `duration_s` seconds from `offset_s` (None: to the end of the file)."""
    if not fs.is_s3(uri) and not os.path.exists(uri):
        raise FileNotFoundError(f"audio file not found: {uri} (moved or deleted since the release was built?)")
    if os.path.splitext(uri)[1].lower() in FFMPEG_SUFFIXES:
        return _read_ffmpeg(uri, offset_s, duration_s, sr)
    import soundfile as sf
    from scipy.signal import resample_poly

    with open_audio(uri) as src, sf.SoundFile(src) as f:
        file_sr, total = f.samplerate, f.frames
        start = round(offset_s * file_sr)
        if start >= total:
            raise ValueError(f"{uri}: range starts at {offset_s:.3f} s, past the end ({total / file_sr:.3f} s)")
        want = total - start if duration_s is None else max(1, round(duration_s * file_sr))
        stop = min(start + want, total)
        frac = Fraction(sr, file_sr)
        up, down = frac.numerator, frac.denominator
        left = right = 0
        if up != down:  # resampling context, as tasks.core.audio.read_audio decodes it
            ctx = math.ceil(10 * max(up, down) / up) + 1
            left = (min(ctx + down, start) // down) * down
            right = min(ctx, total - stop)
        f.seek(start - left)
        data = f.read(left + (stop - start) + right, dtype="float32", always_2d=True)
    in_range = min(data.shape[0] - left, stop - start)
    if in_range <= 0:
        raise ValueError(f"{uri}: no samples decoded from {offset_s:.3f} s")
    x = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if up != down:
        x = resample_poly(x, up, down)
    n_out = round(duration_s * sr) if duration_s is not None and in_range >= want else round(in_range * up / down)
    return _fit(x[left * up // down :], max(n_out, 1))


def _read_ffmpeg(uri: str, offset_s: float, duration_s: float | None, sr: int) -> np.ndarray:
    """The audio track of an MP4-family file through ffmpeg (S3 objects are fetched to a temp file)."""
    with contextlib.ExitStack() as stack:
        path = uri
        if fs.is_s3(uri):
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=os.path.splitext(uri)[1]))
            tmp.write(fs.read_bytes(uri))
            tmp.flush()
            path = tmp.name
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
        if offset_s > 0:
            cmd += ["-ss", f"{offset_s:.6f}"]
        if duration_s is not None:
            cmd += ["-t", f"{duration_s + 0.1:.6f}"]
        cmd += ["-i", path, "-map", "0:a:0", "-vn", "-c:a", "pcm_f32be", "-f", "au", "-ar", str(sr), "-"]
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    out = proc.stdout
    if proc.returncode != 0 or len(out) < 24 or out[:4] != b".snd":
        raise ValueError(f"{uri}: ffmpeg cannot decode it ({proc.stderr.decode('utf-8', 'replace').strip()[-200:]})")
    data_offset, channels = int.from_bytes(out[4:8], "big"), int.from_bytes(out[20:24], "big")
    raw = np.frombuffer(out, dtype=">f4", offset=data_offset, count=(len(out) - data_offset) // 4)
    x = raw[: raw.size - raw.size % channels].reshape(-1, channels).mean(axis=1)
    if duration_s is not None:
        x = x[: round(duration_s * sr)]
    if len(x) == 0:
        raise ValueError(f"{uri}: no samples decoded from {offset_s:.3f} s")
    return np.ascontiguousarray(x, dtype=np.float32)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return None if math.isnan(float(value)) else float(value)
    except (TypeError, ValueError):
        return None


class RowReader:
    """Turns a stage row into the waveform the model hears; applies a recipe at most once.

    `pools` maps "rirs"/"noises" to {id: uri} (a release's manifests/augment_pools.json); it is
    needed only for rows whose recipe has not been applied (`recipe_applied` false).
    """

    def __init__(self, pools: Mapping[str, Mapping[str, str]] | None = None, sr: int = SAMPLE_RATE) -> None:
        self.pools = {k: dict(v) for k, v in (pools or {}).items()}
        self.sr = sr
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}  # never ship decoded arrays to workers

    def _pool_array(self, kind: str, item_id: str) -> np.ndarray:
        key = (kind, item_id)
        if key not in self._cache:
            uri = self.pools.get(f"{kind}s", {}).get(item_id)
            if uri is None:
                raise KeyError(f"{kind} {item_id!r} is not in the release's augment_pools.json; the lazy recipe "
                               f"cannot be applied (pass pools={{'{kind}s': {{id: uri}}}} to the reader)")
            loader = load_rir if kind == "rir" else load_noise
            with open_audio(uri) as src:
                self._cache[key] = loader(src, self.sr)
        return self._cache[key]

    @staticmethod
    def recipe(row: Mapping[str, Any]) -> Recipe:
        return Recipe.from_row(row)

    @staticmethod
    def _plain(recipe: Recipe) -> bool:
        """True when the recipe is at most a known gain: any range can be read directly."""
        return recipe.speed == 1.0 and recipe.rir_id is None and recipe.noise_id is None and recipe.gain is not None

    def utterance(self, row: Mapping[str, Any]) -> np.ndarray:
        """The whole utterance in utterance time (ASR rows)."""
        offset, duration = _num(row.get("offset_s")) or 0.0, _num(row.get("duration_s"))
        audio = read_audio(str(row["audio_uri"]), offset, duration, self.sr)
        if bool(row.get("recipe_applied")):
            return audio
        recipe = self.recipe(row)
        if self._plain(recipe):
            return audio * np.float32(recipe.gain) if recipe.gain != 1.0 else audio
        rir = self._pool_array("rir", recipe.rir_id) if recipe.rir_id else None
        noise = self._pool_array("noise", recipe.noise_id) if recipe.noise_id else None
        out, _gain = apply_recipe(audio, self.sr, recipe, rir, noise)
        return out

    def window(self, row: Mapping[str, Any]) -> tuple[np.ndarray, int]:
        """A classifier window [start_s, end_s) in utterance time, zero-padded; and its real samples."""
        start_s, end_s = float(row["start_s"]), float(row["end_s"])
        n_win = round((end_s - start_s) * self.sr)
        valid = _num(row.get("valid_s"))
        n_valid = n_win if valid is None else min(n_win, round(valid * self.sr))
        if bool(row.get("recipe_applied")) or self._plain(self.recipe(row)):
            offset = (_num(row.get("offset_s")) or 0.0) + start_s
            audio = read_audio(str(row["audio_uri"]), offset, n_valid / self.sr, self.sr)
            gain = 1.0 if bool(row.get("recipe_applied")) else float(self.recipe(row).gain)
            if gain != 1.0:
                audio = audio * np.float32(gain)
        else:
            first = round(start_s * self.sr)
            audio = self.utterance(row)[first : first + n_valid]
        n_real = min(len(audio), n_valid)
        return _fit(audio[:n_real], n_win), n_real
