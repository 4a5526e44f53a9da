"""Publish's finishing step in a child process (`run.finish_in_child_from_rows`): the same release as
in the flow's process, the child's log records reach the task's logger, its errors are raised here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from manifests.io import read_card, resolve_release
from manifests.validate import validate_release
from tasks.core.guards import GuardError
from tasks.core.output_lock import lock_uri
from tasks.publish import finish_process
from tests.tasks.ingest.corpora.test_base import write_tone
from tests.tasks.releasebuild import finish_inputs, tone_spec

ROWS = [("I am so happy", "positive"), ("Just a day", "neutral"), ("This is awful", "negative"),
        ("What a great gift", "positive"), ("The bus is late", "neutral"), ("I hate this", "negative"),
        ("Lovely weather", "positive"), ("It is Tuesday", "neutral")]


def _corpus(folder: Path) -> Path:
    lines = ["file_name,transcript,sentiment,speaker_id"]
    for i, (text, label) in enumerate(ROWS):
        write_tone(folder / f"u{i}.wav", 0.8 + 0.1 * i, seed=i)
        lines.append(f"u{i}.wav,{text},{label},spk{i % 4}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def _spec(corpus: Path, output: Path, from_rows: int | None) -> Any:
    """Shards of 4 utterances, one per plan shard: two parts per manifest."""
    return tone_spec(corpus, output, run={"shard_size": 4, "part_rows": 4, "finish_in_child_from_rows": from_rows})


class _Recorder:
    def __init__(self) -> None:
        self.info: list[str] = []
        self.warnings: list[str] = []

    def log(self, msg: str, *args: Any) -> None:
        self.info.append(msg % args if args else msg)

    def warn(self, msg: str, *args: Any) -> None:
        self.warnings.append(msg % args if args else msg)


def test_a_child_refuses_to_move_latest_for_a_lost_lock_then_publishes_with_the_builds_lock(tmp_path: Path) -> None:
    """The flow process holds the lock; the child checks the build's token before LATEST moves.

    (The same release as in-process: tests/flows/test_publish_labelled.py builds through the flow with
    the finishing step in a child and compares with a build that finishes in its own process.)"""
    spec = _spec(_corpus(tmp_path / "corpus"), tmp_path / "out", 0)
    args = finish_inputs(spec)
    lock = Path(lock_uri(spec.output))
    lock.write_text(json.dumps({"token": "another-build", "pid": 1, "host": "elsewhere", "spec": "t",
                                "started_at": 0, "heartbeat_at": 0}))
    rec = _Recorder()
    with pytest.raises(GuardError, match="output_lock_lost") as raised:
        finish_process.finish(*args, "this-build", log=rec.log, warn=rec.warn)
    assert raised.value.name == "output_lock_lost"  # the child's exception itself, not a wrapper
    assert not (tmp_path / "out" / "LATEST").exists()
    assert any("failed in its child process" in w and "output_lock_lost" in w for w in rec.warnings)

    lock.write_text(json.dumps({"token": "this-build", "pid": 1, "host": "elsewhere", "spec": "t",
                                "started_at": 0, "heartbeat_at": 0}))
    rec = _Recorder()
    result = finish_process.finish(*args, "this-build", log=rec.log, warn=rec.warn)
    assert result["published"] and result["counts"]["utterances"] == len(ROWS)
    assert (tmp_path / "out" / "LATEST").read_text().strip() == result["release"]
    card = read_card(resolve_release(str(tmp_path / "out")))
    assert card["content_sha256"] == result["content_sha256"]
    assert len(card["manifests"]["utterances"]["parts"]) == 2
    assert validate_release(str(tmp_path / "out")).ok
    # the child's own log records came back through the task's logger, at their levels
    assert any(m.startswith("finishing step in a child process (8 utterances") for m in rec.info)
    assert any(m.startswith(f"published {result['release']}: 8 utterances") for m in rec.info)
    assert not any("failed" in w for w in rec.warnings)


def test_the_threshold_counts_the_release_utterances() -> None:
    spec = tone_spec(Path("corpus"), "out", run={"finish_in_child_from_rows": 8})
    written: list[Any] = [{"records": {"utterances": {"rows": 5}}}, {"records": {"utterances": {"rows": 2}}}]
    assert not finish_process.runs_in_child(spec, written)
    assert finish_process.runs_in_child(spec, [*written, {"records": {"utterances": {"rows": 1}}}])
    assert finish_process.runs_in_child(tone_spec(Path("c"), "o", run={"finish_in_child_from_rows": 0}), [])
    assert not finish_process.runs_in_child(tone_spec(Path("c"), "o", run={"finish_in_child_from_rows": None}),
                                            written * 1000)
    assert tone_spec(Path("c"), "o").run.finish_in_child_from_rows == 200_000


def test_child_output_lines_go_to_the_logger_at_their_level() -> None:
    rec = _Recorder()
    mark = finish_process.RECORD_MARK
    finish_process.forward_line(mark + json.dumps({"level": logging.WARNING, "message": "a guard\nfired"}) + "\n",
                                rec.log, rec.warn)
    finish_process.forward_line(mark + json.dumps({"level": logging.INFO, "message": "card written"}), rec.log, rec.warn)
    finish_process.forward_line("a library printed this\n", rec.log, rec.warn)
    finish_process.forward_line(mark + "{not json", rec.log, rec.warn)
    finish_process.forward_line("   \n", rec.log, rec.warn)
    assert rec.warnings == ["a guard\nfired"]
    assert rec.info == ["card written", "finishing step: a library printed this", f"finishing step: {mark}{{not json"]


def test_a_child_that_ends_without_a_result_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exit code -9 and no result"):
        finish_process._outcome(tmp_path / "result.pkl", -9)
