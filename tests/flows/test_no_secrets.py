"""End to end: with AWS credentials in the environment and a presigned URL planted in a metadata
file, no secret reaches any file of the release (manifests, card, plots) or the logs; PII flags and
the card's `pii` section are there (docs/security.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from tasks.spec import SourceSpec, parse_spec

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN" + "Zx9" * 40 + "/w=="
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
PRESIGNED = (f"https://corpus.s3.amazonaws.com/calls/x.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}"
             f"%2F20250101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token={SESSION}&X-Amz-Signature={SIGNATURE}")
SECRETS = (KEY_ID, SECRET, SESSION, SIGNATURE)


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)


@pytest.fixture
def captured_logs():
    """Every log record of the build, formatted, from the root and Prefect's logger trees."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("", "prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)


def _leaky_source(root: Path, speech_wav) -> SourceSpec:
    """A folder corpus: two clean rows, one row whose transcript holds a phone number (PII), and one
    row whose file_name is a presigned URL (an unsafe_path reject that quotes it)."""
    root.mkdir(parents=True)
    for name, text in [("a.wav", "I am so happy with this"), ("b.wav", "this is terrible"),
                       ("c.wav", "call me at four one five five five five zero one two three")]:
        (root / name).write_bytes(speech_wav(text, name=f"leaky-{name}").read_bytes())
    (root / "metadata.csv").write_text(
        "file_name,transcript,sentiment\n"
        "a.wav,I am so happy with this,positive\n"
        "b.wav,this is terrible,negative\n"
        "c.wav,call me at 415 555 0123,neutral\n"
        f"{PRESIGNED},leaked,positive\n"
    )
    return SourceSpec(name="leaky", kind="folder", path=str(root), license="Apache-2.0")


def _check_release(output: Path, logs: list[str], out_err: str) -> None:
    files = [p for p in output.rglob("*") if p.is_file()]
    assert any(p.name == "dataset_card.json" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret[:12]}... leaked into {path}"
    text = "\n".join(logs) + out_err
    assert logs and all(secret not in text for secret in SECRETS)
    release = next(p for p in (output / "releases").iterdir() if p.is_dir())
    rejects = pd.read_parquet(release / "manifests" / "rejects")
    unsafe = rejects[(rejects["source"] == "leaky") & (rejects["reason"] == "unsafe_path")]
    assert len(unsafe) == 1 and "[REDACTED]" in unsafe.iloc[0]["detail"]
    utterances = pd.read_parquet(release / "manifests" / "utterances").set_index("utterance_id")
    assert bool(utterances.loc["leaky/c", "pii_detected"]) and "PHONE" in utterances.loc["leaky/c", "pii_types"]
    asr = pd.read_parquet(release / "manifests" / "asr_stage")
    assert "leaky/c" not in set(asr["utterance_id"])  # excluded from the ASR stage, not masked
    import json

    card = json.loads((release / "dataset_card.json").read_text())
    assert card["pii"]["detect"] == "local" and card["pii"]["asr_excluded"] >= 1
    assert card["pii"]["by_source"]["leaky"] == 1


def test_small_build_leaks_nothing(prefect_harness, fake_credentials, captured_logs, capfd, tmp_path, speech_wav):
    from flows.build_dataset import build_dataset

    source = _leaky_source(tmp_path / "leaky", speech_wav)
    spec = parse_spec({"name": "leaky", "output": str(tmp_path / "out"), "sources": [source.model_dump()],
                       "labelers": {"transcripts": "none", "sentiment": "none"},
                       "splits": {"train": 1.0, "dev": 0.0, "test": 0.0},
                       "augment": {"enabled": False}})
    build_dataset(spec)
    captured = capfd.readouterr()
    _check_release(tmp_path / "out", captured_logs, captured.out + captured.err)


@pytest.mark.slow
def test_demo_build_leaks_nothing(prefect_harness, fake_credentials, captured_logs, capfd, tmp_path, speech_wav):
    """The bundled demo (Whisper, VADER, augmentation, plots) plus the leaky source."""
    from flows.build_dataset import build_dataset
    from flows.cli import DEMO_SPEC
    from tasks.spec import load_spec

    spec = load_spec(DEMO_SPEC, output=str(tmp_path / "out"))
    spec = spec.model_copy(update={"sources": [*spec.sources, _leaky_source(tmp_path / "leaky", speech_wav)]})
    build_dataset(spec)
    captured = capfd.readouterr()
    _check_release(tmp_path / "out", captured_logs, captured.out + captured.err)
