"""The finishing step of publish in a child process of its own, for large releases.

Why: with the threads runner the finishing step (release digest, card and plots from the merged part
aggregates, validation, LATEST) runs in the flow process, on top of what the part tasks left there
(Arrow and glibc keep freed memory for reuse; ~1.1 GB after the parts of 10 million utterances). The
card's aggregates and validation then took that process to ~2 GB at 10 million. In a child the
finishing step's memory is the child's, returned to the system when it exits, and the flow process
stays where the part tasks left it (docs/scaling.md). Same code, same inputs, so the same release.

The child gets its inputs as a pickle in a local temp folder, adopts the build's output-lock token
(so it refuses to move LATEST if another build took the output over, as a Dask worker does), and
streams its log records back as JSON lines, which the parent hands to the task's logger as they come.
An exception in the child is raised again in the parent: the same type and message when it pickles.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from manifests.schema import UTTERANCES
from tasks.core.results import (
    AugmentResult,
    IngestResult,
    PartResult,
    PlanResult,
    PublishResult,
    PublishSetup,
    PublishWeights,
)
from tasks.core.work import Log, noop
from tasks.spec import DatasetSpec

RECORD_MARK = "@voicetone-log "  # prefix of a forwarded log record on the child's output
LOGGER_NAME = "voicetone.finish"


def release_rows(written: list[PartResult]) -> int:
    """Utterance rows of the release, from the part records (no part is read)."""
    return sum(int(w["records"][UTTERANCES]["rows"]) for w in written)


def runs_in_child(spec: DatasetSpec, written: list[PartResult]) -> bool:
    """Whether `run.finish_in_child_from_rows` sends this release's finishing step to a child process."""
    threshold = spec.run.finish_in_child_from_rows
    return threshold is not None and release_rows(written) >= threshold


def finish(spec: DatasetSpec, plan: PlanResult, setup: PublishSetup, weighting: PublishWeights,
           written: list[PartResult], augmented: list[AugmentResult], ingest: list[IngestResult],
           timings: dict[str, float], lock_token: str | None, log: Log = noop, warn: Log | None = None) -> PublishResult:
    """`step.finish_publish` here or in a child process, as `run.finish_in_child_from_rows` says."""
    from tasks.core import output_lock
    from tasks.publish import step

    args = (spec, plan, setup, weighting, written, augmented, ingest, timings)
    if runs_in_child(spec, written):
        log("finishing step in a child process (%d utterances >= run.finish_in_child_from_rows %d)",
            release_rows(written), spec.run.finish_in_child_from_rows)
        return finish_in_child(args, lock_token, log, warn or log)
    with output_lock.adopted(spec.output, lock_token):
        return step.finish_publish(*args, log=log, warn=warn)


def finish_in_child(args: tuple[Any, ...], lock_token: str | None, log: Log, warn: Log) -> PublishResult:
    """Run `finish_publish(*args)` in `python -m tasks.publish.finish_process`; return its result."""
    with tempfile.TemporaryDirectory(prefix="voicetone-finish-") as tmp:
        inputs, outputs = Path(tmp) / "inputs.pkl", Path(tmp) / "result.pkl"
        inputs.write_bytes(pickle.dumps({"args": args, "lock_token": lock_token}, protocol=pickle.HIGHEST_PROTOCOL))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_code_root(), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "tasks.publish.finish_process", str(inputs), str(outputs)]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=env, text=True, errors="replace") as child:
            try:
                assert child.stdout is not None
                for line in child.stdout:
                    forward_line(line, log, warn)
                code = child.wait()
            except BaseException:
                child.kill()  # the task was cancelled or interrupted: do not leave the child publishing
                raise
        return _outcome(outputs, code)


def _code_root() -> str:
    """The folder holding the `tasks` package this process imported: the child imports the same code."""
    import tasks

    return str(Path(next(iter(tasks.__path__))).resolve().parent)


def forward_line(line: str, log: Log, warn: Log) -> None:
    """One line of the child's output to the task's logger: a forwarded record at its level, else as INFO."""
    line = line.rstrip("\n")
    if not line.strip():
        return
    if line.startswith(RECORD_MARK):
        try:
            record = json.loads(line[len(RECORD_MARK):])
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            (warn if int(record.get("level", 0)) >= logging.WARNING else log)("%s", record.get("message", ""))
            return
    log("finishing step: %s", line)


def _outcome(outputs: Path, code: int) -> PublishResult:
    """The child's result, or its exception raised here (the same type and message when it unpickles)."""
    if not outputs.exists():
        raise RuntimeError(f"the finishing step's child process ended with exit code {code} and no result "
                           "(killed? out of memory?); its output is in the log above")
    outcome = pickle.loads(outputs.read_bytes())
    if "result" in outcome:
        return outcome["result"]
    error = outcome.get("error")
    if isinstance(error, BaseException):
        raise error
    raise RuntimeError(f"the finishing step failed in its child process:\n{outcome.get('traceback', '')}")


class _JsonLines(logging.Handler):
    """Each record as one marked JSON line on stdout, for `forward_line` in the parent."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = json.dumps({"level": record.levelno, "message": record.getMessage()})
            sys.stdout.write(f"{RECORD_MARK}{text}\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never break the step
            self.handleError(record)


def _child_main(inputs: Path, outputs: Path) -> int:
    """In the child: run the finishing step, write its result or its exception for the parent."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.addHandler(_JsonLines())
    root.setLevel(logging.WARNING)  # libraries' warnings; the step's own records at INFO below
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    payload = pickle.loads(inputs.read_bytes())
    args, token = payload["args"], payload["lock_token"]
    spec = args[0]
    from tasks.core import output_lock
    from tasks.publish import step

    try:
        with output_lock.adopted(spec.output, token):
            result = step.finish_publish(*args, log=logger.info, warn=logger.warning)
        outcome: dict[str, Any] = {"result": result}
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        outcome = {"traceback": traceback.format_exc()}
        logger.error("the finishing step failed in its child process:\n%s", outcome["traceback"])
        try:
            pickle.loads(pickle.dumps(exc))  # only an exception that survives the trip is sent as itself
            outcome["error"] = exc
        except Exception:  # noqa: BLE001
            pass
    outputs.write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0 if "result" in outcome else 1


if __name__ == "__main__":
    sys.exit(_child_main(Path(sys.argv[1]), Path(sys.argv[2])))
