"""The one decoder: the pipeline's `tasks.core.audio.read_audio` and the reader's `read_audio` give the same samples.

Why: the lazy path (a training job decoding the clean source and applying the recipe) must hear
what the materialiser wrote. Both now go through `manifests.audio_io.decode_soundfile` /
`read_ffmpeg`; these tests pin that on real generated audio (resampled, stereo, truncated ranges,
MP4 through ffmpeg, S3 through ranged GETs), and that the pipeline does call the shared decoder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from manifests import audio_io
from manifests.audio_io import DecodeError, read_audio
from tests.manifests.conftest import tone_wav

SR = 16000
RANGES = ((0.0, None), (0.3, 1.2), (1.2345, 0.777), (2.5, 5.0))
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _pipeline_read(uri: str, offset: float, duration: float | None) -> np.ndarray:
    from tasks.core.audio import read_audio as pipeline_read

    return pipeline_read(uri, offset, duration, target_sr=SR, mono=True)


def _stereo_flac(path: Path, sr: int = 44100, seconds: float = 3.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    left, right = 0.6 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 97 * t)
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr, subtype="PCM_24")
    return path


@pytest.mark.parametrize(("sr", "channels"), [(48000, 1), (48000, 2), (22050, 2), (16000, 1)])
def test_wav_samples_are_identical(tmp_path: Path, sr: int, channels: int) -> None:
    wav = tone_wav(tmp_path / "a.wav", seconds=3.0, sr=sr, channels=channels)
    for offset, duration in RANGES:
        ours = read_audio(str(wav), offset, duration)
        theirs = _pipeline_read(str(wav), offset, duration)
        assert ours.dtype == np.float32 and np.array_equal(ours, theirs), (sr, offset, duration)


def test_stereo_flac_samples_are_identical(tmp_path: Path) -> None:
    flac = _stereo_flac(tmp_path / "b.flac")
    for offset, duration in RANGES:
        ours = read_audio(str(flac), offset, duration)
        assert np.array_equal(ours, _pipeline_read(str(flac), offset, duration)), (offset, duration)
    assert read_audio(str(flac), 0.5, 1.0).shape == (SR,)


@needs_ffmpeg
def test_mp4_samples_are_identical(tmp_path: Path) -> None:
    flac = _stereo_flac(tmp_path / "c.flac")
    mp4 = tmp_path / "c.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(flac), "-c:a", "aac", str(mp4)],
                   check=True, capture_output=True, timeout=60)
    for offset, duration in ((0.0, None), (0.5, 1.0), (2.0, 4.0)):
        ours = read_audio(str(mp4), offset, duration)
        assert np.array_equal(ours, _pipeline_read(str(mp4), offset, duration)), (offset, duration)


def test_the_pipeline_decodes_through_the_shared_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wav = tone_wav(tmp_path / "d.wav", seconds=1.0, sr=48000, channels=1)
    calls: list[tuple[str, float, float | None]] = []
    real = audio_io.decode_soundfile

    def spy(f, uri, offset_s, duration_s, *args, **kwargs):
        calls.append((uri, offset_s, duration_s))
        return real(f, uri, offset_s, duration_s, *args, **kwargs)

    monkeypatch.setattr(audio_io, "decode_soundfile", spy)
    _pipeline_read(str(wav), 0.25, 0.5)
    assert calls == [(str(wav), 0.25, 0.5)]


def test_range_past_the_end_is_a_value_error_with_a_reject_code(tmp_path: Path) -> None:
    wav = tone_wav(tmp_path / "e.wav", seconds=1.0, sr=16000, channels=1)
    with pytest.raises(DecodeError) as err:
        read_audio(str(wav), 2.0, 1.0)
    assert isinstance(err.value, ValueError)  # training loops that skip bad rows catch ValueError
    assert err.value.reason == "empty_audio" and str(wav) in err.value.detail and "1.000 s long" in err.value.detail


def test_check_samples_refuses_before_reading(tmp_path: Path) -> None:
    flac = _stereo_flac(tmp_path / "f.flac", sr=16000, seconds=1.0)
    seen: list[int] = []

    def refuse(n: int) -> None:
        seen.append(n)
        raise DecodeError("unsupported_audio", "too big")

    with sf.SoundFile(str(flac)) as f, pytest.raises(DecodeError, match="too big"):
        audio_io.decode_soundfile(f, str(flac), 0.5, 0.25, SR, check_samples=refuse)
    assert seen == [4000 * 2]  # frames of the range times channels, before any context


def test_not_mono_keeps_channels(tmp_path: Path) -> None:
    flac = _stereo_flac(tmp_path / "g.flac")
    with sf.SoundFile(str(flac)) as f:
        both = audio_io.decode_soundfile(f, str(flac), 0.5, 1.0, SR, mono=False)
    assert both.shape == (2, SR) and both.dtype == np.float32
    assert np.max(np.abs(both[0])) == pytest.approx(0.6, abs=0.01)
    assert np.max(np.abs(both[1])) == pytest.approx(0.2, abs=0.01)
    np.testing.assert_allclose(read_audio(str(flac), 0.5, 1.0), both.mean(axis=0), atol=1e-6)


@pytest.mark.aws
def test_s3_ranged_reads_match_the_pipeline_download(tmp_path: Path, s3_bucket: str) -> None:
    from manifests import uri as fs

    flac = _stereo_flac(tmp_path / "h.flac")
    uri = f"s3://{s3_bucket}/audio/h.flac"
    fs.write_bytes(uri, flac.read_bytes())
    for offset, duration in RANGES:
        ours = read_audio(uri, offset, duration)  # ranged GETs through _S3File
        assert np.array_equal(ours, _pipeline_read(uri, offset, duration)), (offset, duration)  # whole download
        assert np.array_equal(ours, read_audio(str(flac), offset, duration))
