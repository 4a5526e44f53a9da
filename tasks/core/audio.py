"""Probe, hash, decode, resample and write audio, for local paths and s3:// URIs alike.

Decoding itself is `manifests.audio_io`'s, the one decoder, shared with the training reader so both
give the same samples: soundfile for WAV/FLAC/OGG/MP3 and whatever it recognises by header, ffmpeg
for MP4/M4A/WebM (and for files libsndfile cannot open, e.g. a WAV holding a compressed codec). This
module adds what the pipeline needs around it: probing (ffprobe for the ffmpeg formats), hashing,
limits against hostile files, reject codes. (torchaudio.load needs TorchCodec, so nothing uses it.)

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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from manifests import audio_io
from manifests import uri as fs
from manifests.audio_io import FFMPEG_SUFFIXES, MAX_CHANNELS
from tasks.core import file_kind, storage

TARGET_SAMPLE_RATE = 16000
FFMPEG_TIMEOUT_S = 120.0
FFPROBE_TIMEOUT_S = 60.0
# Limits against hostile or broken files (docs/security.md): a header may claim anything, so what
# is decoded is bounded before any buffer is allocated, and a claim the file cannot back is refused.
MAX_DURATION_S = 2 * 3600.0  # one item; longer recordings should be cut into crops first
MAX_FILE_BYTES = 2 * 1024**3  # bytes read (or downloaded from S3) per file
MAX_DECODE_BYTES = 2 * 1024**3  # float32 samples of all channels produced by one read

# FFMPEG_SUFFIXES (from manifests.audio_io): containers libsndfile cannot read, decoded by ffmpeg.
SOUNDFILE_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au")
AUDIO_SUFFIXES: tuple[str, ...] = SOUNDFILE_SUFFIXES + FFMPEG_SUFFIXES


class AudioError(audio_io.AudioProblem):
    """A per-file audio problem; ``reason`` is a reject code, ``detail`` a sentence naming the file.

    Not a ValueError (unlike the reader's `DecodeError`): the pipeline catches it by name and turns it
    into a reject row."""


@contextlib.contextmanager
def _decoding() -> Iterator[None]:
    """The shared decoder's DecodeError (a ValueError) becomes this pipeline's AudioError, same words."""
    try:
        yield
    except audio_io.DecodeError as err:
        raise AudioError(err.reason, err.detail) from None


def _ffmpeg_limits() -> dict[str, Any]:
    """This module's limits for an ffmpeg decode, read at call time (tests lower them)."""
    return {"timeout": FFMPEG_TIMEOUT_S, "max_s": MAX_DURATION_S, "max_bytes": MAX_DECODE_BYTES}


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
    if not fs.is_s3(uri) and (odd := file_kind.non_regular(uri)) is not None:
        raise AudioError(odd[0], f"Audio file {uri} {odd[1]}.")  # a FIFO, a symlink loop: say so
    try:
        if fs.is_s3(uri):
            _check_size(fs.size(uri), uri)  # before the download, not after filling the disk
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
                f"Audio file {uri} cannot be decoded ({audio_io.soundfile_message(sf_error)}); "
                "it is probably corrupt or truncated.",
            ) from None
        raise AudioError(
            "unsupported_audio",
            f"File {uri} is not in an audio format this pipeline can decode (supported: {', '.join(AUDIO_SUFFIXES)}).",
        ) from None


def _check_info(info: AudioInfo, uri: str) -> AudioInfo:
    if info.sample_rate <= 0:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} declares a sample rate of {info.sample_rate} Hz; its header is corrupt.",
        )
    if not 1 <= info.num_channels <= MAX_CHANNELS:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} declares {info.num_channels} channels (expected 1-{MAX_CHANNELS}); its header is corrupt.",
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


def _ffprobe(path: str, uri: str) -> AudioInfo:
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0",
           "-show_entries", "stream=sample_rate,channels,duration:format=duration", "-of", "json", path]
    with _decoding():
        proc = audio_io.run_tool(cmd, uri, timeout=FFPROBE_TIMEOUT_S)
    if proc.returncode != 0:
        raise AudioError(
            "unreadable_audio",
            f"Audio file {uri} cannot be read by ffprobe ({audio_io.last_line(proc.stderr)}); it is probably corrupt.",
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
    duration = _float_or_none(stream.get("duration")) or _float_or_none(data.get("format", {}).get("duration"))
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
    if not fs.is_s3(uri):
        try:
            return _sha256_file(uri, chunk_size)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise AudioError("missing_audio", f"Audio file {uri} does not exist.") from None
    digest = hashlib.sha256()
    try:
        with fs.open_binary(uri) as fh:
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
def read_audio(uri: str, offset_s: float = 0.0, duration_s: float | None = None,
               target_sr: int | None = TARGET_SAMPLE_RATE, mono: bool = True) -> np.ndarray:
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


def _read_soundfile(
    path: str, uri: str, offset_s: float, duration_s: float | None, target_sr: int | None, mono: bool
) -> np.ndarray:
    """The header checks probing makes, then the shared decoder, within this module's decode limit."""
    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError) as err:
        raise _NotForSoundfile(err) from None
    with f:
        claimed = AudioInfo(f.samplerate, f.channels, f.frames, f.frames / max(f.samplerate, 1), f.format)
        _check_claimed_length(f, claimed, uri)
        _check_info(claimed, uri)
        with _decoding():
            return audio_io.decode_soundfile(
                f, uri, offset_s, duration_s, target_sr, mono, check_samples=lambda n: _check_decode_size(n, uri)
            )


def _check_decode_size(n_samples: int, uri: str) -> None:
    """Refuse a read whose float32 buffer would exceed MAX_DECODE_BYTES, before allocating it."""
    if n_samples * 4 > MAX_DECODE_BYTES:
        raise AudioError(
            "unsupported_audio",
            f"Reading {uri} would decode {n_samples * 4 / 1024**3:.2f} GiB of samples, over the "
            f"{MAX_DECODE_BYTES / 1024**3:g} GiB limit per read (tasks.core.audio.MAX_DECODE_BYTES); "
            "cut it into shorter files or crops.",
        )


def _read_ffmpeg(
    path: str, uri: str, offset_s: float, duration_s: float | None, target_sr: int | None, mono: bool
) -> np.ndarray:
    with _decoding():
        return audio_io.read_ffmpeg(path, uri, offset_s, duration_s, target_sr, mono, **_ffmpeg_limits())


def _decode_ffmpeg(
    path: str, uri: str, offset_s: float, duration_s: float | None, sample_rate: int | None
) -> tuple[np.ndarray, int]:
    """``((channels, samples) float32, rate)`` by the shared ffmpeg decoder, within this module's limits."""
    with _decoding():
        return audio_io.decode_ffmpeg(path, uri, offset_s, duration_s, sample_rate, **_ffmpeg_limits())


# -------------------------------------------------------------------------------------------- write
def write_flac(uri: str, audio: np.ndarray, sample_rate: int) -> str:
    """Write 16-bit FLAC (local atomically, or to S3); input is 1-D or ``(channels, samples)``.

    Returns the sha256 of the bytes written (the materialiser records it in its sidecar). Values are
    clipped to [-1, 1] first: libsndfile would otherwise wrap out-of-range floats.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"write_flac needs a non-empty 1-D or (channels, samples) array (got shape {x.shape})")
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
    fs.write_bytes(uri, data)
    return hashlib.sha256(data).hexdigest()
