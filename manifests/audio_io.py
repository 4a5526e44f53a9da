"""Decode audio for the reader and the pipeline: one decoder, and the reader's row-to-waveform logic.

This is the only audio decoder in the repository: soundfile (libsndfile) with a little resampling
context on both sides of the range, ffmpeg for MP4-family containers, channels averaged,
`scipy.signal.resample_poly` to the target rate. The pipeline's `tasks.core.audio.read_audio` wraps
`decode_soundfile` / `read_ffmpeg` and adds its probing, size limits and reject codes, so the lazy
path rebuilds the same samples the materialiser wrote, up to FLAC's 16-bit rounding. Training jobs
install only `manifests/`, so nothing here imports the pipeline.

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
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any

import numpy as np

from manifests import uri as fs
from manifests.augmentation import Recipe, apply_recipe, load_noise, load_rir

SAMPLE_RATE = 16000
FFMPEG_SUFFIXES: tuple[str, ...] = (".mp4", ".m4a", ".webm", ".mkv", ".mov", ".aac", ".opus", ".amr")
FFMPEG_TIMEOUT_S = 120.0
MAX_CHANNELS = 64
S3_BUFFER = 1 << 20
# Reject codes of the manifest contract that a decode problem maps to (DecodeError.reason).
AUDIO_ERROR_REASONS: tuple[str, ...] = ("missing_audio", "unreadable_audio", "empty_audio", "unsupported_audio")


class AudioProblem(Exception):
    """An audio file problem with a reject code (``reason``, one of AUDIO_ERROR_REASONS) and a sentence
    naming the file (``detail``); the base of the reader's `DecodeError` and the pipeline's `AudioError`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in AUDIO_ERROR_REASONS:
            raise ValueError(f"unknown audio error reason {reason!r}")
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class DecodeError(AudioProblem, ValueError):
    """Audio that cannot give the samples asked for; ``reason`` is a reject code, ``detail`` names the file.

    A ValueError, so a training loop that skips bad rows catches it as before; the pipeline turns it
    into its `AudioError` (a reject row).
    """


class _S3File(io.RawIOBase):
    """A seekable read-only S3 object: each read is one ranged GET (buffered by the caller)."""

    def __init__(self, uri: str) -> None:
        self._bucket, self._key = fs.split_s3(uri)
        self._client = fs.s3_client()
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


def fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``n`` (pads at most rounding leftovers of a sample or two)."""
    if x.shape[-1] >= n:
        x = x[..., :n]
    else:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])
    return np.ascontiguousarray(x, dtype=np.float32)


def read_audio(uri: str, offset_s: float = 0.0, duration_s: float | None = None,
               sr: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sr`: `duration_s` seconds from `offset_s` (None: to the end of the file)."""
    if not fs.is_s3(uri) and not os.path.exists(uri):
        raise FileNotFoundError(f"audio file not found: {uri} (moved or deleted since the release was built?)")
    if os.path.splitext(uri)[1].lower() in FFMPEG_SUFFIXES:
        with contextlib.ExitStack() as stack:
            path = uri
            if fs.is_s3(uri):  # ffmpeg needs a file: fetch the object to a temp one
                tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=os.path.splitext(uri)[1]))
                tmp.write(fs.read_bytes(uri))
                tmp.flush()
                path = tmp.name
            return read_ffmpeg(path, uri, offset_s, duration_s, sr)
    import soundfile as sf

    with open_audio(uri) as src, sf.SoundFile(src) as f:
        return decode_soundfile(f, uri, offset_s, duration_s, sr)


# ------------------------------------------------------------------------------ the one decoder
def soundfile_message(err: Exception) -> str:
    """libsndfile's own words for an error, without the trailing full stop."""
    return str(getattr(err, "error_string", "") or err).strip().rstrip(".")


def _past_end(uri: str, offset_s: float, total_s: float) -> DecodeError:
    return DecodeError(
        "empty_audio",
        f"Requested audio from {offset_s:.3f} s of {uri}, but the file is only {total_s:.3f} s long.",
    )


def decode_soundfile(f: Any, uri: str, offset_s: float, duration_s: float | None, sr: int | None,
                     mono: bool = True, check_samples: Callable[[int], None] | None = None) -> np.ndarray:
    """Samples ``[offset_s, offset_s + duration_s)`` of the open ``soundfile.SoundFile`` ``f``, at ``sr``.

    ``sr=None`` keeps the file's rate; 1-D when ``mono`` (channels averaged), else
    ``(channels, samples)``. A range inside the file gives exactly ``round(duration_s * sr)``
    samples; a range running past the end gives what exists; one starting past the end is a
    DecodeError (``empty_audio``). ``check_samples`` gets the number of float32 samples (all
    channels) the read will produce, before anything is read, and may raise to refuse it.
    """
    import soundfile as sf

    file_sr, total = f.samplerate, f.frames
    out_sr = sr or file_sr
    start = round(offset_s * file_sr)
    if start >= total:
        raise _past_end(uri, offset_s, total / file_sr)
    want = total - start if duration_s is None else max(1, round(duration_s * file_sr))
    stop = min(start + want, total)
    if check_samples is not None:
        check_samples((stop - start) * f.channels)
    g = math.gcd(file_sr, out_sr)
    up, down = out_sr // g, file_sr // g
    # Decode a little context on both sides so the resampling filter has real neighbours instead
    # of zeros at the edges; the left context is a multiple of `down` so it maps to a whole number
    # of output samples.
    left = right = 0
    if up != down:
        ctx = math.ceil(10 * max(up, down) / up) + 1
        left = (min(ctx + down, start) // down) * down
        right = min(ctx, total - stop)
    try:
        f.seek(start - left)
        data = f.read(left + (stop - start) + right, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as err:
        raise DecodeError(
            "unreadable_audio",
            f"Audio file {uri} cannot be decoded between {offset_s:.3f} s and the end of the range "
            f"({soundfile_message(err)}); it is probably corrupt.",
        ) from None
    # Frames of the requested range actually decoded (fewer than asked when the file is truncated).
    in_range = min(data.shape[0] - left, stop - start)
    if in_range <= 0:
        raise _past_end(uri, offset_s, total / file_sr)
    if mono:
        x = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    else:
        x = data.T
    if up != down:
        from scipy.signal import resample_poly

        x = resample_poly(x, up, down, axis=-1)
    if duration_s is not None and in_range >= want:
        n_out = round(duration_s * out_sr)
    else:
        n_out = round(in_range * up / down)
    return fit(x[..., left * up // down :], max(n_out, 1))


@cache
def _have_tool(name: str) -> bool:
    return shutil.which(name) is not None


def run_tool(cmd: list[str], uri: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg/ffprobe on ``uri``'s file; a missing program or a hang is a DecodeError naming it."""
    if not _have_tool(cmd[0]):
        raise DecodeError(
            "unsupported_audio",
            f"Decoding {uri} needs the {cmd[0]} program, which is not installed (apt-get install ffmpeg).",
        )
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DecodeError(
            "unreadable_audio",
            f"Decoding {uri} with {cmd[0]} did not finish within {timeout:g} s; the file may be corrupt.",
        ) from None


def last_line(stderr: bytes) -> str:
    """The last non-empty line a tool wrote to stderr (its error), for a message."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].rstrip(".") if lines else "no error message"


def decode_ffmpeg(path: str, uri: str, offset_s: float, duration_s: float | None, sr: int | None, *,
                  timeout: float = FFMPEG_TIMEOUT_S, max_s: float | None = None,
                  max_bytes: int | None = None) -> tuple[np.ndarray, int]:
    """``((channels, samples) float32, rate)`` of the local file ``path`` decoded by ffmpeg.

    ``sr=None`` keeps the native rate. ``max_s``/``max_bytes`` bound what is decoded whatever the
    header says (the pipeline's limits; the reader passes none). ffmpeg writes Sun AU to the pipe
    because its fixed header carries the channel count and rate, which saves an ffprobe call.
    """
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
    if offset_s > 0:
        cmd += ["-ss", f"{offset_s:.6f}"]
    limit_s = max_s if duration_s is None else duration_s + 0.1  # a little extra, trimmed by the caller
    if limit_s is not None:
        cmd += ["-t", f"{limit_s if max_s is None else min(limit_s, max_s):.6f}"]
    cmd += ["-i", path, "-map", "0:a:0", "-vn", "-c:a", "pcm_f32be", "-f", "au"]
    if sr is not None:
        cmd += ["-ar", str(sr)]
    if max_bytes is not None:
        cmd += ["-fs", str(max_bytes)]  # output cap: memory stays bounded
    proc = run_tool([*cmd, "-"], uri, timeout)
    if proc.returncode != 0:
        text = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in text or "does not contain any stream" in text:
            raise DecodeError("empty_audio", f"File {uri} contains no audio stream.")
        raise DecodeError(
            "unreadable_audio",
            f"Audio file {uri} cannot be decoded by ffmpeg ({last_line(proc.stderr)}); it is probably corrupt.",
        )
    out = proc.stdout
    if max_bytes is not None and len(out) >= max_bytes:
        raise DecodeError(
            "unsupported_audio",
            f"Decoding {uri} produced more than {max_bytes / 1024**3:g} GiB of samples, over the limit per "
            "read; cut it into shorter files or crops.",
        )
    if len(out) < 24 or out[:4] != b".snd":
        raise DecodeError("unreadable_audio", f"ffmpeg produced no audio for {uri}; it is probably corrupt.")
    data_offset = int.from_bytes(out[4:8], "big")
    rate = int.from_bytes(out[16:20], "big")
    channels = int.from_bytes(out[20:24], "big")
    if not 1 <= channels <= MAX_CHANNELS or rate <= 0:
        raise DecodeError(
            "unreadable_audio", f"Audio file {uri} decodes to {channels} channels at {rate} Hz; its header is corrupt."
        )
    raw = np.frombuffer(out, dtype=">f4", offset=data_offset, count=(len(out) - data_offset) // 4)
    usable = raw.size - raw.size % channels
    return raw[:usable].reshape(-1, channels).T.astype(np.float32), rate


def read_ffmpeg(path: str, uri: str, offset_s: float, duration_s: float | None, sr: int | None,
                mono: bool = True, **limits: Any) -> np.ndarray:
    """Like `decode_soundfile`, through ffmpeg (``limits``: `decode_ffmpeg`'s keywords)."""
    x, rate = decode_ffmpeg(path, uri, offset_s, duration_s, sr, **limits)
    if x.shape[-1] == 0:
        raise DecodeError(
            "empty_audio",
            f"Requested audio from {offset_s:.3f} s of {uri}, but ffmpeg decoded "
            "no samples there (the file is shorter than that).",
        )
    if mono:
        x = x.mean(axis=0)  # a plain mean, like the soundfile path (ffmpeg's -ac 1 weights by 0.707)
    if duration_s is not None:
        x = x[..., : round(duration_s * rate)]
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
        return fit(audio[:n_real], n_win), n_real
