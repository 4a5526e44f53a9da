"""Probe, hash, decode, resample and write audio, for local paths and s3:// URIs alike.

Decoders: soundfile (libsndfile) for WAV/FLAC/OGG/MP3 and anything else it recognises by header;
the ``ffmpeg``/``ffprobe`` programs for MP4/M4A/WebM (and as a fallback for files libsndfile cannot
open, e.g. a WAV holding a compressed codec). torchaudio.load does not work here (it needs
TorchCodec), so nothing in this module uses it.

Every per-file problem is an ``AudioError`` whose ``reason`` is a reject code of the manifest
contract and whose ``detail`` names the file, so a stage turns it into a reject row and moves on.

Arrays are float32 in [-1, 1]; multichannel arrays are shaped ``(channels, samples)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

from tasks.core import file_kind, storage

TARGET_SAMPLE_RATE = 16000
MAX_CHANNELS = 64
FFMPEG_TIMEOUT_S = 120.0
FFPROBE_TIMEOUT_S = 60.0
# Limits against hostile or broken files (docs/security.md): a header may claim anything, so what
# is decoded is bounded before any buffer is allocated, and a claim the file cannot back is refused.
MAX_DURATION_S = 2 * 3600.0  # one item; longer recordings should be cut into crops first
MAX_FILE_BYTES = 2 * 1024**3  # bytes read (or downloaded from S3) per file
MAX_DECODE_BYTES = 2 * 1024**3  # float32 samples of all channels produced by one read

# Containers libsndfile cannot read: their audio goes through ffmpeg.
FFMPEG_SUFFIXES: tuple[str, ...] = (".mp4", ".m4a", ".webm", ".mkv", ".mov", ".aac", ".opus", ".amr")
SOUNDFILE_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")
AUDIO_SUFFIXES: tuple[str, ...] = SOUNDFILE_SUFFIXES + FFMPEG_SUFFIXES

AUDIO_ERROR_REASONS: tuple[str, ...] = (
    "missing_audio",
    "unreadable_audio",
    "empty_audio",
    "unsupported_audio",
)


class AudioError(Exception):
    """A per-file audio problem; ``reason`` is a reject code, ``detail`` a sentence naming the file."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in AUDIO_ERROR_REASONS:
            raise ValueError(f"unknown audio error reason {reason!r}")
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class AudioInfo:
    """What the header says about a file (``format`` is e.g. WAV, FLAC, MP3, MP4)."""

    sample_rate: int
    num_channels: int
    num_frames: int
    duration_s: float
    format: str


def _suffix(uri: str) -> str:
    return os.path.splitext(uri)[1].lower()


@contextlib.contextmanager
def _local(uri: str) -> Iterator[str]:
    """A local path for ``uri`` with missing/empty/oversized files turned into AudioError."""
    if not storage.is_s3(uri) and (odd := file_kind.non_regular(uri)) is not None:
        raise AudioError(odd[0], f"Audio file {uri} {odd[1]}.")  # a FIFO, a symlink loop: say so
    try:
        if storage.is_s3(uri):
            _check_size(storage.size(uri), uri)  # before the download, not after filling the disk
        with storage.open_local(uri) as path:
            if os.path.getsize(path) == 0:
                raise AudioError("empty_audio", f"Audio file {uri} is empty (0 bytes).")
            _check_size(os.path.getsize(path), uri)
            yield path
    except FileNotFoundError:
        raise AudioError("missing_audio", f"Audio file {uri} does not exist.") from None


def _check_size(n_bytes: int, uri: str) -> None:
    if n_bytes > MAX_FILE_BYTES:
        raise AudioError(
            "unsupported_audio",
            f"Audio file {uri} is {n_bytes / 1024**3:.2f} GiB, over the {MAX_FILE_BYTES / 1024**3:g} GiB "
            "limit per file (tasks.core.audio.MAX_FILE_BYTES); cut it into shorter files.",
        )


# -------------------------------------------------------------------------------------------- probe
def probe(uri: str) -> AudioInfo:
    """Sample rate, channels, length and format from the header (S3 objects are downloaded first)."""
    with _local(uri) as path:
        return _probe_path(path, uri)


def probe_and_hash(uri: str) -> tuple[AudioInfo, str]:
    """``(probe(uri), sha256_uri(uri))`` reading an S3 object only once."""
    with _local(uri) as path:
        info = _probe_path(path, uri)
        return info, _sha256_file(path)


def _probe_path(path: str, uri: str) -> AudioInfo:
    try:
        return _probe_decoders(path, uri)
    except AudioError as err:
        what = file_kind.not_audio(path) if err.reason != "unsupported_audio" else None
        if what is None:
            raise
        raise AudioError("unsupported_audio", f"File {uri} {what}.") from None  # not "a sample rate of 0 Hz"


def _probe_decoders(path: str, uri: str) -> AudioInfo:
    if _suffix(uri) in FFMPEG_SUFFIXES:
        return _check_info(_ffprobe(path, uri), uri)
    try:
        with sf.SoundFile(path) as f:
            sr, frames = f.samplerate, f.frames
            info = AudioInfo(sr, f.channels, frames, frames / sr if sr > 0 else 0.0, f.format)
            _check_claimed_length(f, info, uri)
    except (sf.SoundFileError, RuntimeError) as err:
        info = _fallback_probe(path, uri, err)
    return _check_info(info, uri)


def _check_claimed_length(f: sf.SoundFile, info: AudioInfo, uri: str) -> None:
    """Refuse a header whose frame count the file cannot back (a FLAC claiming hours in 1 KB).

    Seeking to the last claimed frame reads no samples; libsndfile fails it when the data ends
    earlier. Without this, a crop would be accepted against hours of audio that do not exist.
    """
    if info.num_frames <= 0 or info.sample_rate <= 0 or not f.seekable():
        return  # _check_info names these
    try:
        f.seek(info.num_frames - 1)
    except (sf.SoundFileError, RuntimeError):
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} claims {info.num_frames} frames ({info.duration_s:.1f} s) but its data ends "
            "before that; it is truncated or its header is corrupt.",
        ) from None


def _fallback_probe(path: str, uri: str, sf_error: Exception) -> AudioInfo:
    """libsndfile could not open it: let ffprobe try before calling it unreadable or unsupported."""
    try:
        return _ffprobe(path, uri)
    except AudioError:
        if _suffix(uri) in SOUNDFILE_SUFFIXES:  # named like audio we read, so it is damaged
            raise AudioError(
                "unreadable_audio",
                f"Audio file {uri} cannot be decoded "
                f"({_sf_message(sf_error)}); it is probably corrupt or "
                "truncated.",
            ) from None
        raise AudioError(
            "unsupported_audio",
            f"File {uri} is not in an audio format this pipeline can "
            f"decode (supported: {', '.join(AUDIO_SUFFIXES)}).",
        ) from None


def _sf_message(err: Exception) -> str:
    return str(getattr(err, "error_string", "") or err).strip().rstrip(".")


def _check_info(info: AudioInfo, uri: str) -> AudioInfo:
    if info.sample_rate <= 0:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} declares a sample rate of {info.sample_rate} Hz; its header is corrupt.",
        )
    if not 1 <= info.num_channels <= MAX_CHANNELS:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} declares {info.num_channels} channels "
            f"(expected 1-{MAX_CHANNELS}); its header is corrupt.",
        )
    if info.num_frames <= 0:
        raise AudioError("empty_audio", f"Audio file {uri} contains no audio samples.")
    if info.duration_s > MAX_DURATION_S:
        raise AudioError(
            "unsupported_audio",
            f"Audio file {uri} is {info.duration_s / 3600:.2f} h long, over the {MAX_DURATION_S / 3600:g} h "
            "limit per item (tasks.core.audio.MAX_DURATION_S); cut it into shorter files or crops.",
        )
    return info


@cache
def _have_tool(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def _run_tool(cmd: list[str], uri: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
    if not _have_tool(cmd[0]):
        raise AudioError(
            "unsupported_audio",
            f"Decoding {uri} needs the {cmd[0]} program, which is not installed (apt-get install ffmpeg).",
        )
    try:
        return subprocess.run(
            cmd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise AudioError(
            "unreadable_audio",
            f"Decoding {uri} with {cmd[0]} did not finish within {timeout:g} s; the file may be corrupt.",
        ) from None


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].rstrip(".") if lines else "no error message"


def _ffprobe(path: str, uri: str) -> AudioInfo:
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels,duration:format=duration",
        "-of",
        "json",
        path,
    ]
    proc = _run_tool(cmd, uri, timeout=FFPROBE_TIMEOUT_S)
    if proc.returncode != 0:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} cannot be read by ffprobe "
            f"({_last_line(proc.stderr)}); it is probably corrupt.",
        )
    try:
        data = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        raise AudioError("unreadable_audio", f"ffprobe gave unparseable output for {uri}.") from None
    streams = data.get("streams") or []
    if not streams:
        raise AudioError("empty_audio", f"File {uri} contains no audio stream.")
    stream = streams[0]
    sample_rate = int(stream.get("sample_rate") or 0)
    channels = int(stream.get("channels") or 0)
    duration = _float_or_none(stream.get("duration")) or _float_or_none(
        data.get("format", {}).get("duration")
    )
    if duration is None and sample_rate > 0:
        # Some WebM files (browser recordings) carry no duration: count decoded samples instead.
        duration = _decode_ffmpeg(path, uri, 0.0, None, sample_rate)[0].shape[-1] / sample_rate
    duration = duration or 0.0
    fmt = _suffix(uri).lstrip(".").upper() or "FFMPEG"
    return AudioInfo(sample_rate, channels, round(duration * sample_rate), duration, fmt)


def _float_or_none(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


# --------------------------------------------------------------------------------------------- hash
def sha256_uri(uri: str, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the file's bytes, streamed (S3 bodies are never held whole in memory)."""
    if not storage.is_s3(uri):
        try:
            return _sha256_file(uri, chunk_size)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise AudioError("missing_audio", f"Audio file {uri} does not exist.") from None
    digest = hashlib.sha256()
    try:
        with storage.open_binary(uri) as fh:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
    except FileNotFoundError:
        raise AudioError("missing_audio", f"Audio file {uri} does not exist.") from None
    return digest.hexdigest()


def _sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(chunk_size)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def segment_key(audio_sha256: str, offset_s: float, duration_s: float | None) -> str:
    """The identity of a labelled stretch of audio: ``"<sha256>:<offset>:<duration>"``.

    Offset and duration are seconds rounded to exactly three decimals (millisecond resolution, so
    float noise such as ``0.1 + 0.2`` does not change a key); ``-0.0`` is written ``0.000``. ``duration_s=None``
    (to the end of the file) is written ``end``; callers that know the real duration should pass it
    (the contract's ``duration_s`` is always the real length).
    Example: ``"ab12...ef:1.500:3.250"``.
    """
    if not audio_sha256:
        raise ValueError("segment_key needs the audio's sha256")
    if not math.isfinite(offset_s) or offset_s < 0:
        raise ValueError(f"offset_s must be a finite number >= 0 (got {offset_s!r})")
    if duration_s is None:
        dur = "end"
    else:
        if not math.isfinite(duration_s) or duration_s < 0:
            raise ValueError(f"duration_s must be a finite number >= 0 or None (got {duration_s!r})")
        dur = f"{round(duration_s, 3) + 0.0:.3f}"
    return f"{audio_sha256}:{round(offset_s, 3) + 0.0:.3f}:{dur}"


# ------------------------------------------------------------------------------------------- decode
def read_audio(
    uri: str,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    target_sr: int | None = TARGET_SAMPLE_RATE,
    mono: bool = True,
) -> np.ndarray:
    """Decode ``duration_s`` seconds from ``offset_s`` (None: to the end), resampled to ``target_sr``.

    Only the needed range is decoded. Returns float32, 1-D when ``mono`` (channels averaged), else
    ``(channels, samples)``. ``target_sr=None`` keeps the file's rate. A range inside the file gives
    exactly ``round(duration_s * target_sr)`` samples; a range running past the end gives what
    exists; one starting past the end is an ``empty_audio`` error.
    """
    if not math.isfinite(offset_s) or offset_s < 0:
        raise ValueError(f"offset_s must be a finite number >= 0 (got {offset_s!r})")
    if duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0):
        raise ValueError(f"duration_s must be a finite number > 0 or None (got {duration_s!r})")
    if target_sr is not None and target_sr <= 0:
        raise ValueError(f"target_sr must be positive (got {target_sr!r})")
    with _local(uri) as path:
        if _suffix(uri) in FFMPEG_SUFFIXES:
            audio = _read_ffmpeg(path, uri, offset_s, duration_s, target_sr, mono)
        else:
            try:
                audio = _read_soundfile(path, uri, offset_s, duration_s, target_sr, mono)
            except _NotForSoundfile as err:
                _fallback_probe(path, uri, err.cause)  # raises unless ffmpeg can read it
                audio = _read_ffmpeg(path, uri, offset_s, duration_s, target_sr, mono)
    if not np.isfinite(audio).all():
        raise AudioError("unreadable_audio", f"Audio file {uri} decodes to NaN or infinite sample values.")
    return audio


class _NotForSoundfile(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _ratio(sr: int, target_sr: int) -> tuple[int, int]:
    g = math.gcd(sr, target_sr)
    return target_sr // g, sr // g


def _past_end(uri: str, offset_s: float, total_s: float) -> AudioError:
    return AudioError(
        "empty_audio",
        f"Requested audio from {offset_s:.3f} s of {uri}, but the file is only {total_s:.3f} s long.",
    )


def _read_soundfile(
    path: str, uri: str, offset_s: float, duration_s: float | None, target_sr: int | None, mono: bool
) -> np.ndarray:
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError) as err:
        raise _NotForSoundfile(err) from None
    with f:
        claimed = AudioInfo(f.samplerate, f.channels, f.frames, f.frames / max(f.samplerate, 1), f.format)
        _check_claimed_length(f, claimed, uri)
        info = _check_info(claimed, uri)
        sr, total = info.sample_rate, info.num_frames
        out_sr = target_sr or sr
        start = round(offset_s * sr)
        if start >= total:
            raise _past_end(uri, offset_s, total / sr)
        want = total - start if duration_s is None else max(1, round(duration_s * sr))
        stop = min(start + want, total)
        _check_decode_size((stop - start) * info.num_channels, uri)
        up, down = _ratio(sr, out_sr)
        # Decode a little context on both sides so the resampling filter has real neighbours
        # instead of zeros at the edges; the left context is a multiple of `down` so it maps to a
        # whole number of output samples.
        left = right = 0
        if up != down:
            ctx = math.ceil(10 * max(up, down) / up) + 1
            left = (min(ctx + down, start) // down) * down
            right = min(ctx, total - stop)
        try:
            f.seek(start - left)
            data = f.read(left + (stop - start) + right, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioError(
                "unreadable_audio",
                f"Audio file {uri} cannot be decoded between "
                f"{offset_s:.3f} s and the end of the range "
                f"({_sf_message(err)}); it is probably corrupt.",
            ) from None
    # Frames of the requested range actually decoded (fewer than asked when the file is truncated).
    in_range = min(data.shape[0] - left, stop - start)
    if in_range <= 0:
        raise _past_end(uri, offset_s, total / sr)
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
    return _fit(x[..., left * up // down :], max(n_out, 1))


def _check_decode_size(n_samples: int, uri: str) -> None:
    """Refuse a read whose float32 buffer would exceed MAX_DECODE_BYTES, before allocating it."""
    if n_samples * 4 > MAX_DECODE_BYTES:
        raise AudioError(
            "unsupported_audio",
            f"Reading {uri} would decode {n_samples * 4 / 1024**3:.2f} GiB of samples, over the "
            f"{MAX_DECODE_BYTES / 1024**3:g} GiB limit per read (tasks.core.audio.MAX_DECODE_BYTES); "
            "cut it into shorter files or crops.",
        )


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``n`` (pads at most rounding leftovers of a sample or two)."""
    if x.shape[-1] >= n:
        x = x[..., :n]
    else:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
        x = np.pad(x, pad)
    return np.ascontiguousarray(x, dtype=np.float32)


def _read_ffmpeg(
    path: str, uri: str, offset_s: float, duration_s: float | None, target_sr: int | None, mono: bool
) -> np.ndarray:
    x, sr = _decode_ffmpeg(path, uri, offset_s, duration_s, target_sr)
    if x.shape[-1] == 0:
        raise AudioError(
            "empty_audio",
            f"Requested audio from {offset_s:.3f} s of {uri}, but ffmpeg decoded "
            "no samples there (the file is shorter than that).",
        )
    if mono:
        x = x.mean(axis=0)  # a plain mean, like the soundfile path (ffmpeg's -ac 1 weights by 0.707)
    if duration_s is not None:
        x = x[..., : round(duration_s * sr)]
    return np.ascontiguousarray(x, dtype=np.float32)


def _decode_ffmpeg(
    path: str, uri: str, offset_s: float, duration_s: float | None, sample_rate: int | None
) -> tuple[np.ndarray, int]:
    """``((channels, samples) float32, rate)`` decoded by ffmpeg (``sample_rate=None``: native).

    ffmpeg writes Sun AU to the pipe because its fixed header carries the channel count and rate,
    which saves an ffprobe call per read.
    """
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
    if offset_s > 0:
        cmd += ["-ss", f"{offset_s:.6f}"]
    # A little extra, trimmed exactly by the caller; never more than the per-item limit.
    limit_s = MAX_DURATION_S if duration_s is None else min(duration_s + 0.1, MAX_DURATION_S)
    cmd += ["-t", f"{limit_s:.6f}"]
    cmd += ["-i", path, "-map", "0:a:0", "-vn", "-c:a", "pcm_f32be", "-f", "au"]
    if sample_rate is not None:
        cmd += ["-ar", str(sample_rate)]
    cmd += ["-fs", str(MAX_DECODE_BYTES), "-"]  # output cap: memory stays bounded whatever the header says
    proc = _run_tool(cmd, uri, timeout=FFMPEG_TIMEOUT_S)
    if proc.returncode != 0:
        text = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in text or "does not contain any stream" in text:
            raise AudioError("empty_audio", f"File {uri} contains no audio stream.")
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} cannot be decoded by ffmpeg "
            f"({_last_line(proc.stderr)}); "
            "it is probably corrupt.",
        )
    out = proc.stdout
    if len(out) >= MAX_DECODE_BYTES:
        raise AudioError(
            "unsupported_audio",
            f"Decoding {uri} produced more than {MAX_DECODE_BYTES / 1024**3:g} GiB of samples "
            "(tasks.core.audio.MAX_DECODE_BYTES); cut it into shorter files or crops.",
        )
    if len(out) < 24 or out[:4] != b".snd":
        raise AudioError("unreadable_audio", f"ffmpeg produced no audio for {uri}; it is probably corrupt.")
    data_offset = int.from_bytes(out[4:8], "big")
    rate = int.from_bytes(out[16:20], "big")
    channels = int.from_bytes(out[20:24], "big")
    if not 1 <= channels <= MAX_CHANNELS or rate <= 0:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} decodes to {channels} channels at {rate} Hz; its header is corrupt.",
        )
    raw = np.frombuffer(out, dtype=">f4", offset=data_offset, count=(len(out) - data_offset) // 4)
    usable = raw.size - raw.size % channels
    return raw[:usable].reshape(-1, channels).T.astype(np.float32), rate


# -------------------------------------------------------------------------------------------- write
def write_flac(uri: str, audio: np.ndarray, sample_rate: int) -> str:
    """Write 16-bit FLAC (local atomically, or to S3); input is 1-D or ``(channels, samples)``.

    Returns the sha256 of the bytes written (the materialiser records it in its sidecar).

    Values are clipped to [-1, 1] first: libsndfile would otherwise wrap out-of-range floats.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(
            f"write_flac needs a non-empty 1-D or (channels, samples) array (got shape {x.shape})"
        )
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive (got {sample_rate})")
    if not np.isfinite(x).all():
        raise ValueError(f"refusing to write NaN or infinite samples to {uri}")
    frames = np.clip(x, -1.0, 1.0)
    if frames.ndim == 2:
        frames = frames.T
    buf = io.BytesIO()
    sf.write(buf, frames, sample_rate, format="FLAC", subtype="PCM_16")
    data = buf.getvalue()
    storage.write_bytes(uri, data)
    return hashlib.sha256(data).hexdigest()
