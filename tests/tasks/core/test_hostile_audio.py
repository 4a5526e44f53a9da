"""Crafted hostile audio files: probing and decoding must fail fast with a reject reason, never hang
or allocate what a header claims (tasks/core/audio.py limits; docs/security.md)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tasks.core import audio
from tasks.ingest.corpora.base import is_audio_file
from tasks.ingest.corpora.folder import ingest_folder
from tasks.spec import SourceSpec

MEMORY_BUDGET = 64 * 1024**2  # far below anything a lying header could make us allocate


def _wav(path: Path, *, sr: int = 16000, channels: int = 1, bits: int = 16, data_len: int | None = None,
         payload: bytes = b"\x00" * 3200, chunks: bytes = b"") -> Path:
    """A RIFF/WAVE file written byte by byte, so every header field can lie."""
    block = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", 1, channels, sr, (sr * block) & 0xFFFFFFFF, block, bits)
    size = len(payload) if data_len is None else data_len
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + chunks + b"data" + struct.pack("<I", size) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body)
    return path


def _au(path: Path, *, sr: int = 16000, channels: int = 1) -> Path:
    """Sun AU: its header has a 32-bit channel count, so it can claim 100,000 channels."""
    path.write_bytes(b".snd" + struct.pack(">IIIII", 24, 0xFFFFFFFF, 3, sr, channels) + b"\x00" * 2000)
    return path


def _flac_claiming(path: Path, seconds: float) -> Path:
    """A real 1 s FLAC whose STREAMINFO total-samples field is rewritten to claim `seconds`."""
    sf.write(path, (np.sin(np.arange(16000) / 5.0) * 0.3).astype("float32"), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    total = int(seconds * 16000)
    data[21] = (data[21] & 0xF0) | ((total >> 32) & 0x0F)  # STREAMINFO starts at byte 8
    data[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def _bounded(fn):
    """Run fn, returning (result or AudioError, seconds, peak traced bytes)."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        result = fn()
    except audio.AudioError as err:
        result = err
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, time.monotonic() - t0, peak


HOSTILE = {
    "zero_rate.wav": (lambda p: _wav(p, sr=0), "unreadable_audio"),
    "channels_65535.wav": (lambda p: _wav(p, channels=65535), "unreadable_audio"),
    "channels_100k.au": (lambda p: _au(p, channels=100_000), "unreadable_audio"),
    "huge_list_chunk.wav": (lambda p: _wav(p, chunks=b"LIST" + struct.pack("<I", 0xFFFFFF00) + b"x" * 16),
                            "unreadable_audio"),
    "claims_10h.flac": (lambda p: _flac_claiming(p, 10 * 3600), "unreadable_audio"),
    "claims_3h.flac": (lambda p: _flac_claiming(p, 3 * 3600), "unreadable_audio"),
    "not_audio.wav": (lambda p: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk") and p, "unreadable_audio"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_headers_are_rejected_fast_and_small(tmp_path: Path, name: str) -> None:
    make, reason = HOSTILE[name]
    path = make(tmp_path / name)
    for fn in (lambda: audio.probe(str(path)), lambda: audio.read_audio(str(path))):
        result, seconds, peak = _bounded(fn)
        assert isinstance(result, audio.AudioError), f"{name} was accepted: {result!r}"
        assert result.reason == reason and name in result.detail
        assert seconds < 10 and peak < MEMORY_BUDGET, (seconds, peak)


def test_wav_claiming_4_gb_reads_only_what_exists(tmp_path: Path) -> None:
    """A data chunk claiming ~4 GB over 0.1 s of samples: the real length, not the claim."""
    path = _wav(tmp_path / "claims_4gb.wav", data_len=0xFFFFFFF0, payload=b"\x01\x00" * 1600)
    info, _, peak = _bounded(lambda: audio.probe(str(path)))
    assert info.num_frames == 1600 and peak < MEMORY_BUDGET
    x, seconds, peak = _bounded(lambda: audio.read_audio(str(path)))
    assert x.shape == (1600,) and peak < MEMORY_BUDGET and seconds < 10


def test_truncated_wav_gives_what_exists(tmp_path: Path) -> None:
    path = _wav(tmp_path / "truncated.wav", data_len=32000, payload=b"\x00\x10" * 5)
    assert audio.probe(str(path)).num_frames == 5
    assert audio.read_audio(str(path), target_sr=None).shape == (5,)


def test_duration_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "three_seconds.flac"
    sf.write(path, np.zeros(48000, dtype="float32"), 16000)
    monkeypatch.setattr(audio, "MAX_DURATION_S", 2.0)
    err = _bounded(lambda: audio.probe(str(path)))[0]
    assert isinstance(err, audio.AudioError) and err.reason == "unsupported_audio"
    assert "limit per item" in err.detail and "three_seconds.flac" in err.detail


def test_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _wav(tmp_path / "big.wav")
    monkeypatch.setattr(audio, "MAX_FILE_BYTES", 1000)
    for fn in (audio.probe, audio.read_audio):
        with pytest.raises(audio.AudioError) as err:
            fn(str(path))
        assert err.value.reason == "unsupported_audio" and "limit per file" in err.value.detail


def test_s3_size_is_checked_before_download(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.core import storage
    uri = f"s3://{s3_bucket}/hostile/big.wav"
    storage.write_bytes(uri, _wav(tmp_path / "big.wav").read_bytes())
    monkeypatch.setattr(audio, "MAX_FILE_BYTES", 1000)
    downloads = []
    monkeypatch.setattr(storage, "_download", lambda *a: downloads.append(a))
    with pytest.raises(audio.AudioError) as err:
        audio.probe(uri)
    assert err.value.reason == "unsupported_audio" and uri in err.value.detail and not downloads


def test_decode_size_limit_refuses_before_allocating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.zeros((16000, 2), dtype="float32"), 16000)
    monkeypatch.setattr(audio, "MAX_DECODE_BYTES", 16000 * 2 * 4 - 1)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(str(path))
    assert err.value.reason == "unsupported_audio" and "limit per read" in err.value.detail
    assert audio.read_audio(str(path), 0.0, 0.5).shape == (8000,)  # a crop within the budget still reads


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_ffmpeg_timeout_and_output_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mp4 = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=440:d=2", "-c:a", "aac", "-y", str(mp4)],
                   check=True, timeout=60)
    monkeypatch.setattr(audio, "MAX_DECODE_BYTES", 20_000)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(str(mp4))
    assert err.value.reason == "unsupported_audio" and "clip.mp4" in err.value.detail
    monkeypatch.setattr(audio, "FFMPEG_TIMEOUT_S", 1e-4)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(str(mp4), 0.0, 1.0)
    assert err.value.reason == "unreadable_audio" and "did not finish within" in err.value.detail


def test_hostile_files_become_rejects_in_ingest(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, (make, _) in HOSTILE.items():
        make(root / name)
    sf.write(root / "good.wav", (np.sin(np.arange(16000) / 3.0) * 0.3).astype("float32"), 16000)
    result = ingest_folder(SourceSpec(name="hostile", kind="folder", path=str(root)), "en")
    listed = [name for name in HOSTILE if is_audio_file(name)]  # the folder adapter skips .au
    assert result.found == len(listed) + 1
    assert list(result.items["utterance_id"]) == ["hostile/good"]
    by_ref = {r.input_ref.rsplit("/", 1)[-1]: r for r in result.rejects.itertuples()}
    for name in listed:
        reason = HOSTILE[name][1]
        assert by_ref[name].reason == reason and name in by_ref[name].detail
