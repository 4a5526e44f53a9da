"""tasks.core.audio on real generated audio: WAV, FLAC, MP3 and MP4/WebM made by ffmpeg, espeak-ng speech."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from manifests import audio_io
from tasks.core import audio, storage
from tasks.core.audio import AudioError

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spectrum)])


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, capture_output=True, timeout=60
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One of each kind of test file, made once per module."""
    d = tmp_path_factory.mktemp("audio")
    out: dict[str, str] = {}
    # A 16 kHz float WAV whose sample i holds i / 2**20: ranged reads can be checked exactly.
    out["ramp"] = str(d / "ramp.wav")
    sf.write(out["ramp"], (np.arange(48_000) / 2**20).astype(np.float32), 16_000, subtype="FLOAT")
    out["tone48"] = str(d / "tone48.wav")
    sf.write(out["tone48"], _tone(440, 3.0, 48_000), 48_000, subtype="PCM_16")
    stereo = np.stack([_tone(440, 2.0, 44_100, amp=0.6), np.zeros(88_200, np.float32)], axis=1)
    out["stereo"] = str(d / "stereo.flac")
    sf.write(out["stereo"], stereo, 44_100, subtype="PCM_16")
    out["empty_wav"] = str(d / "empty.wav")
    sf.write(out["empty_wav"], np.zeros(0, np.float32), 16_000)
    out["zero_bytes"] = str(d / "zero.flac")
    Path(out["zero_bytes"]).touch()
    out["garbage"] = str(d / "garbage.wav")
    Path(out["garbage"]).write_bytes(np.random.default_rng(1).bytes(5000))
    out["truncated_flac"] = str(d / "truncated.flac")
    Path(out["truncated_flac"]).write_bytes(Path(out["stereo"]).read_bytes()[:30])
    out["text"] = str(d / "notes.txt")
    Path(out["text"]).write_text("not audio at all\n" * 20)
    out["nan"] = str(d / "nan.wav")
    nan = _tone(440, 0.5, 16_000)
    nan[100] = np.nan
    sf.write(out["nan"], nan, 16_000, subtype="FLOAT")
    out["many_channels"] = str(d / "many.wav")
    sf.write(out["many_channels"], np.zeros((100, 80), np.float32), 16_000, subtype="PCM_16")
    if shutil.which("ffmpeg"):
        out["mp3"] = str(d / "tone.mp3")
        _ffmpeg("-i", out["tone48"], "-c:a", "libmp3lame", "-b:a", "128k", out["mp3"])
        out["mp4"] = str(d / "stereo.mp4")
        _ffmpeg("-i", out["stereo"], "-c:a", "aac", "-b:a", "128k", out["mp4"])
        out["webm"] = str(d / "tone.webm")
        _ffmpeg("-i", out["tone48"], "-c:a", "libopus", out["webm"])
        out["misnamed"] = str(d / "really_mp4.wav")
        shutil.copyfile(out["mp4"], out["misnamed"])
        out["video_only"] = str(d / "video.mp4")
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "mpeg4", out["video_only"]
        )
        out["corrupt_mp4"] = str(d / "corrupt.mp4")
        Path(out["corrupt_mp4"]).write_bytes(Path(out["mp4"]).read_bytes()[:40] + b"\0" * 2000)
    return out


def _reason(call: Callable[[], object]) -> AudioError:
    with pytest.raises(AudioError) as info:
        call()
    assert info.value.reason in audio_io.AUDIO_ERROR_REASONS
    assert str(info.value) == info.value.detail
    return info.value


# -------------------------------------------------------------------------------------------- probe
def test_probe_soundfile_formats(files: dict[str, str]) -> None:
    info = audio.probe(files["ramp"])
    assert info == audio.AudioInfo(16_000, 1, 48_000, 3.0, "WAV")
    info = audio.probe(files["stereo"])
    assert (info.sample_rate, info.num_channels, info.num_frames, info.format) == (44_100, 2, 88_200, "FLAC")
    assert info.duration_s == pytest.approx(2.0)


@needs_ffmpeg
def test_probe_compressed_formats(files: dict[str, str]) -> None:
    mp3 = audio.probe(files["mp3"])
    assert (mp3.sample_rate, mp3.num_channels, mp3.format) == (48_000, 1, "MP3")
    assert mp3.duration_s == pytest.approx(3.0, abs=0.06)
    mp4 = audio.probe(files["mp4"])
    assert (mp4.sample_rate, mp4.num_channels, mp4.format) == (44_100, 2, "MP4")
    assert mp4.duration_s == pytest.approx(2.0, abs=0.05)
    assert mp4.num_frames == round(mp4.duration_s * 44_100)
    webm = audio.probe(files["webm"])
    assert (webm.sample_rate, webm.num_channels, webm.format) == (48_000, 1, "WEBM")
    assert webm.duration_s == pytest.approx(3.0, abs=0.05)


def test_probe_errors_have_reason_and_name(files: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "gone.wav")
    cases = {
        missing: "missing_audio",
        files["zero_bytes"]: "empty_audio",
        files["empty_wav"]: "empty_audio",
        files["garbage"]: "unreadable_audio",
        files["truncated_flac"]: "unreadable_audio",
        files["many_channels"]: "unreadable_audio",
        files["text"]: "unsupported_audio",
    }
    for uri, reason in cases.items():
        err = _reason(lambda uri=uri: audio.probe(uri))
        assert err.reason == reason, (uri, err.detail)
        assert uri in err.detail


def test_probe_zero_sample_rate_is_unreadable(files: dict[str, str], tmp_path: Path) -> None:
    data = bytearray(Path(files["ramp"]).read_bytes())
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt "
    data[24:28] = (0).to_bytes(4, "little")  # nSamplesPerSec in the fmt chunk
    bad = tmp_path / "zero_rate.wav"
    bad.write_bytes(bytes(data))
    assert _reason(lambda: audio.probe(str(bad))).reason == "unreadable_audio"


@needs_ffmpeg
def test_probe_ffmpeg_errors(files: dict[str, str]) -> None:
    assert _reason(lambda: audio.probe(files["corrupt_mp4"])).reason == "unreadable_audio"
    err = _reason(lambda: audio.probe(files["video_only"]))
    assert err.reason == "empty_audio" and "no audio stream" in err.detail


@needs_ffmpeg
def test_misnamed_file_falls_back_to_ffmpeg(files: dict[str, str]) -> None:
    info = audio.probe(files["misnamed"])
    assert (info.sample_rate, info.num_channels) == (44_100, 2)
    x = audio.read_audio(files["misnamed"], 0.5, 1.0)
    assert x.shape == (16_000,) and abs(_peak_hz(x, 16_000) - 440) < 2


def test_probe_reads_headers_only(files: dict[str, str], monkeypatch) -> None:
    """probe must not decode samples (speed is benchmarked in benchmarks/, not asserted here)."""
    import soundfile

    def no_decode(*_a, **_k):
        raise AssertionError("probe decoded audio")

    monkeypatch.setattr(soundfile, "read", no_decode)
    monkeypatch.setattr(soundfile.SoundFile, "read", no_decode)
    info = audio.probe(files["tone48"])
    assert info.sample_rate == 48_000 and info.num_frames > 0


# --------------------------------------------------------------------------------- hash and key
def test_sha256_local_and_missing(files: dict[str, str], tmp_path: Path) -> None:
    expected = hashlib.sha256(Path(files["stereo"]).read_bytes()).hexdigest()
    assert audio.sha256_uri(files["stereo"]) == expected
    assert audio.sha256_uri(files["stereo"], chunk_size=1000) == expected
    info, sha = audio.probe_and_hash(files["stereo"])
    assert sha == expected and info.num_channels == 2
    assert _reason(lambda: audio.sha256_uri(str(tmp_path / "no.wav"))).reason == "missing_audio"


def test_segment_key_formatting() -> None:
    sha = "ab" * 32
    assert audio.segment_key(sha, 1.5, 3.25) == f"{sha}:1.500:3.250"
    assert audio.segment_key(sha, 0.0, 2.0) == audio.segment_key(sha, -0.0, 2.0000001) == f"{sha}:0.000:2.000"
    assert audio.segment_key(sha, 12.3456, None) == f"{sha}:12.346:end"
    assert audio.segment_key(sha, 0.1 + 0.2, 0.3) == f"{sha}:0.300:0.300"
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            audio.segment_key(sha, bad, 1.0)


# ------------------------------------------------------------------------------------------- decode
def test_ranged_read_is_exact(files: dict[str, str]) -> None:
    ramp = np.arange(48_000) / 2**20
    x = audio.read_audio(files["ramp"], offset_s=0.5, duration_s=0.25)
    assert x.dtype == np.float32 and x.shape == (4_000,)
    np.testing.assert_array_equal(x, ramp[8_000:12_000].astype(np.float32))
    whole = audio.read_audio(files["ramp"])
    np.testing.assert_array_equal(whole, ramp.astype(np.float32))
    tail = audio.read_audio(files["ramp"], offset_s=2.5, duration_s=1.0)  # runs past the end
    np.testing.assert_array_equal(tail, ramp[40_000:].astype(np.float32))
    err = _reason(lambda: audio.read_audio(files["ramp"], offset_s=3.5, duration_s=1.0))
    assert err.reason == "empty_audio" and files["ramp"] in err.detail


def test_resample_48k_to_16k_keeps_frequency_and_length(files: dict[str, str]) -> None:
    x = audio.read_audio(files["tone48"])
    assert x.shape == (48_000,)
    assert abs(_peak_hz(x, 16_000) - 440) < 1.0
    assert np.sqrt(np.mean(x[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    part = audio.read_audio(files["tone48"], offset_s=1.2345, duration_s=0.777)
    assert part.shape == (round(0.777 * 16_000),)
    # The range is decoded with context, so it matches the same stretch of a whole-file read.
    start = round(1.2345 * 48_000) // 3
    np.testing.assert_allclose(part, x[start : start + part.size], atol=2e-3)
    native = audio.read_audio(files["tone48"], 0.0, 0.1, target_sr=None)
    assert native.shape == (4_800,)


def test_stereo_downmix_and_channels(files: dict[str, str]) -> None:
    mono = audio.read_audio(files["stereo"], 0.5, 1.0, target_sr=None)
    assert mono.shape == (44_100,)
    assert np.max(np.abs(mono)) == pytest.approx(0.3, abs=0.002)  # mean of 0.6 sine and silence
    both = audio.read_audio(files["stereo"], 0.5, 1.0, target_sr=16_000, mono=False)
    assert both.shape == (2, 16_000) and both.dtype == np.float32
    assert np.max(np.abs(both[0])) == pytest.approx(0.6, abs=0.01) and np.max(np.abs(both[1])) < 1e-3
    resampled_mono = audio.read_audio(files["stereo"], 0.5, 1.0)
    np.testing.assert_allclose(resampled_mono, both.mean(axis=0), atol=1e-6)


@needs_ffmpeg
def test_mp3_ranged_read(files: dict[str, str]) -> None:
    x = audio.read_audio(files["mp3"], offset_s=1.0, duration_s=1.5)
    assert x.shape == (24_000,)
    assert abs(_peak_hz(x, 16_000) - 440) < 1.0
    assert np.sqrt(np.mean(x**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@needs_ffmpeg
def test_mp4_read_ranges_downmix_and_resample(files: dict[str, str]) -> None:
    x = audio.read_audio(files["mp4"], offset_s=0.5, duration_s=1.0)
    assert x.shape == (16_000,) and x.dtype == np.float32
    assert abs(_peak_hz(x, 16_000) - 440) < 1.0
    assert np.max(np.abs(x)) == pytest.approx(0.3, abs=0.03)  # plain mean of the two channels
    both = audio.read_audio(files["mp4"], 0.5, 1.0, mono=False)
    assert both.shape == (2, 16_000) and np.max(np.abs(both[1])) < 0.02
    whole = audio.read_audio(files["mp4"], target_sr=None)
    assert whole.size == pytest.approx(88_200, abs=2_048)
    tail = audio.read_audio(files["mp4"], offset_s=1.5, duration_s=5.0)
    assert tail.size == pytest.approx(8_000, abs=800)
    assert (
        _reason(lambda: audio.read_audio(files["mp4"], offset_s=10.0, duration_s=1.0)).reason == "empty_audio"
    )
    webm = audio.read_audio(files["webm"], 1.0, 1.0)
    assert webm.shape == (16_000,) and abs(_peak_hz(webm, 16_000) - 440) < 1.0


def test_read_errors(files: dict[str, str], tmp_path: Path) -> None:
    assert _reason(lambda: audio.read_audio(str(tmp_path / "none.flac"))).reason == "missing_audio"
    assert _reason(lambda: audio.read_audio(files["zero_bytes"])).reason == "empty_audio"
    assert _reason(lambda: audio.read_audio(files["empty_wav"])).reason == "empty_audio"
    err = _reason(lambda: audio.read_audio(files["garbage"]))
    assert err.reason == "unreadable_audio" and "garbage.wav" in err.detail
    assert _reason(lambda: audio.read_audio(files["nan"])).reason == "unreadable_audio"
    assert _reason(lambda: audio.read_audio(files["text"])).reason == "unsupported_audio"
    with pytest.raises(ValueError):
        audio.read_audio(files["ramp"], offset_s=-1.0)
    with pytest.raises(ValueError):
        audio.read_audio(files["ramp"], duration_s=0.0)


@needs_ffmpeg
def test_read_ffmpeg_errors(files: dict[str, str]) -> None:
    err = _reason(lambda: audio.read_audio(files["corrupt_mp4"]))
    assert err.reason == "unreadable_audio" and "corrupt.mp4" in err.detail
    assert _reason(lambda: audio.read_audio(files["video_only"])).reason == "empty_audio"


def test_espeak_speech_resampled(speech_wav: Callable[..., Path]) -> None:
    path = speech_wav("I am so happy today", name="happy.wav")
    info = audio.probe(str(path))
    assert info.sample_rate == 22_050 and info.num_channels == 1 and info.duration_s > 0.8
    x = audio.read_audio(str(path))
    assert x.shape == (round(info.num_frames * 16_000 / 22_050),)
    assert np.sqrt(np.mean(x**2)) > 0.01  # real speech energy survives decode + resample


# -------------------------------------------------------------------------------------------- write
def test_write_flac_round_trip(tmp_path: Path) -> None:
    tone = _tone(440, 1.0, 16_000, amp=0.8)
    out = str(tmp_path / "sub" / "x.flac")
    audio.write_flac(out, tone, 16_000)
    info = audio.probe(out)
    assert (info.sample_rate, info.num_channels, info.num_frames, info.format) == (16_000, 1, 16_000, "FLAC")
    assert sf.info(out).subtype == "PCM_16"
    np.testing.assert_allclose(audio.read_audio(out), tone, atol=1 / 32_768 + 1e-6)
    assert os.listdir(tmp_path / "sub") == ["x.flac"], "no temp files left"
    loud = np.array([2.0, -3.0, 0.5], np.float32)
    audio.write_flac(out, loud, 16_000)  # out-of-range values clip instead of wrapping
    np.testing.assert_allclose(sf.read(out, dtype="float32")[0], [32_767 / 32_768, -1.0, 0.5], atol=1e-4)
    stereo = np.stack([tone, -tone])
    audio.write_flac(out, stereo, 16_000)
    back = audio.read_audio(out, target_sr=None, mono=False)
    assert back.shape == (2, 16_000)
    np.testing.assert_allclose(back[1], -tone, atol=1e-4)
    with pytest.raises(ValueError):
        audio.write_flac(out, np.array([np.nan], np.float32), 16_000)
    with pytest.raises(ValueError):
        audio.write_flac(out, np.zeros(0, np.float32), 16_000)


# ------------------------------------------------------------------------------------------------ S3
@pytest.mark.aws
def test_s3_audio(files: dict[str, str], s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/audio"
    uri = storage.join(root, "stereo.flac")
    storage.copy_file(files["stereo"], uri)
    expected = hashlib.sha256(Path(files["stereo"]).read_bytes()).hexdigest()
    assert audio.sha256_uri(uri) == expected
    info, sha = audio.probe_and_hash(uri)
    assert sha == expected and (info.sample_rate, info.num_channels, info.num_frames) == (44_100, 2, 88_200)
    x = audio.read_audio(uri, 0.5, 1.0)
    np.testing.assert_array_equal(x, audio.read_audio(files["stereo"], 0.5, 1.0))
    out = storage.join(root, "written.flac")
    audio.write_flac(out, x, 16_000)
    assert audio.probe(out).num_frames == 16_000
    missing = storage.join(root, "missing.wav")
    for call in (audio.probe, audio.sha256_uri, audio.read_audio):
        err = _reason(lambda call=call: call(missing))
        assert err.reason == "missing_audio" and missing in err.detail


def test_pipeline_and_reader_audio_errors_share_one_base_but_only_the_reader_is_a_value_error() -> None:
    """One definition of (reason, detail); a pipeline AudioError is not caught as ValueError, a reader's is."""
    for cls in (AudioError, audio_io.DecodeError):
        err = cls("missing_audio", "Audio file x.wav does not exist.")
        assert isinstance(err, audio_io.AudioProblem) and (err.reason, str(err)) == ("missing_audio", err.detail)
        with pytest.raises(ValueError, match="unknown audio error reason"):
            cls("no_such_reason", "x")
    assert not issubclass(AudioError, ValueError) and issubclass(audio_io.DecodeError, ValueError)
