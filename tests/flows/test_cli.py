"""The command line: exit codes and messages a person can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main
from manifests.schema import ASR_STAGE
from tests.manifests.release_factory import make_tables, write_release


def _spec(tmp_path, body: str):
    path = tmp_path / "spec.yaml"
    path.write_text(body)
    return path


def test_bad_spec_names_field_and_allowed_values(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    spec = _spec(tmp_path, "name: x\noutput: out\nsources:\n  - {name: a, kind: ravdes, path: data}\n"
                 "labelers: {transcripts: whisperx}\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "sources.0.kind" in err and "unknown adapter kind 'ravdes'" in err and "ravdess" in err
    assert "labelers.transcripts" in err and "whisperx" in err


def test_missing_source_folder_stops_before_work(tmp_path, capsys):
    spec = _spec(tmp_path, "name: x\noutput: out\nsources:\n  - {name: a, kind: folder, path: nowhere}\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "sources.0.path" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


def test_unknown_field_is_an_error(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    spec = _spec(tmp_path, "name: x\noutput: out\nsources: [{name: a, kind: folder, path: d}]\naugmnt: {}\n")
    assert main(["build", str(spec)]) == 2
    assert "augmnt: unknown field" in capsys.readouterr().err


def test_unreadable_spec_file(tmp_path, capsys):
    assert main(["build", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read dataset spec" in capsys.readouterr().err
    bad = _spec(tmp_path, "name: [unclosed\n")
    assert main(["build", str(bad)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_validate_and_stats_exit_codes(tmp_path, capsys):
    write_release(str(tmp_path / "good"))
    assert main(["validate", str(tmp_path / "good")]) == 0
    assert "valid:" in capsys.readouterr().out
    tables = make_tables()
    tables[ASR_STAGE].loc[0, "speed"] = 1.3
    write_release(str(tmp_path / "bad"), tables=tables)
    assert main(["validate", str(tmp_path / "bad")]) == 1
    assert "speed outside" in capsys.readouterr().err
    capsys.readouterr()
    # No release there at all is bad input (2), for validate as for stats; an invalid release is 1.
    (tmp_path / "empty").mkdir()
    for missing in ("none", "empty"):
        assert main(["validate", str(tmp_path / missing)]) == 2
        assert "neither a release folder" in capsys.readouterr().err
        assert main(["stats", str(tmp_path / missing)]) == 2


def test_unknown_adapter_option_stops_before_work(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    spec = _spec(tmp_path, "name: x\noutput: out\nsources:\n"
                 "  - {name: a, kind: folder, path: d, options: {recursive: true}}\n"
                 "  - {name: b, kind: iemocap, path: d, options: {test_sessions: 5}}\n")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "sources.0.options: source 'a' (folder): unknown option(s) recursive; allowed: audio_roots" in err
    assert "sources.1.options: source 'b' (iemocap): option test_sessions must be list, got 5" in err
    assert not (tmp_path / "out").exists()


def test_console_summary_lists_the_reject_examples_it_mentions(tmp_path, capsys):
    """`stats` (and `build`) print the summary with examples under it, never "examples below" with none."""
    from manifests.schema import CLASSIFIER_STAGE, REJECTS, UTTERANCES
    from tasks.publish.card import build_card
    from tasks.spec import parse_spec

    tables = make_tables()
    spec = parse_spec({"name": "x", "output": str(tmp_path),
                       "sources": [{"name": s, "kind": "folder", "path": "/d"}
                                   for s in sorted(set(tables[UTTERANCES]["source"]))]})
    found = (pd.concat([tables[UTTERANCES]["source"], tables[REJECTS]["source"]]).value_counts().to_dict())
    card = build_card(spec=spec, release="r1", utterances=tables[UTTERANCES], asr=tables[ASR_STAGE],
                      classifier=tables[CLASSIFIER_STAGE], rejects=tables[REJECTS], found=found, extra={})
    write_release(str(tmp_path / "rel"), tables=tables, card_extra=card)
    assert len(tables[REJECTS]) > 0
    assert main(["stats", str(tmp_path / "rel")]) == 0
    out = capsys.readouterr().out
    assert "examples below" not in out and "; for example:" in out
    first = tables[REJECTS].iloc[0]
    assert f"`{first['input_ref']}` ({first['reason']})" in out


def test_stats_prints_summary(demo_release, capsys):
    spec, _ = demo_release
    assert main(["stats", spec.output]) == 0
    out = capsys.readouterr().out
    assert "Accepted" in out and "Rejected" in out
    assert main(["stats", spec.output, "--json"]) == 0
    assert '"content_sha256"' in capsys.readouterr().out


def test_help_and_usage_errors():
    run = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    for command in ("demo", "build", "validate", "stats"):
        assert command in run.stdout
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_wrong_layout_stops_in_preflight_with_only_the_message(tmp_path, monkeypatch):
    """#15.8: a wrong adapter kind printed 238 lines and 2 tracebacks before its message. The layout
    check now runs in pre-flight, before Prefect starts: exit 2, a few lines, no traceback."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    calls = tmp_path / "calls"
    calls.mkdir()
    (calls / "a.flac").write_bytes(b"not used")
    spec = _spec(tmp_path, f"name: x\noutput: {tmp_path / 'out'}\nsources:\n  - {{name: a, kind: ravdess, path: {calls}}}\n")
    run = subprocess.run([sys.executable, "-m", "flows.cli", "build", str(spec)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "sources.0 ('a'): ravdess source 'a'" in run.stderr and "expected Actor_NN/" in run.stderr
    assert "check `kind: ravdess` and `path`" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert len(run.stderr.strip().splitlines()) <= 4, run.stderr
    assert "building" not in run.stdout and "flow run" not in (run.stdout + run.stderr).lower()  # Prefect never started
    assert not (tmp_path / "out").exists() and not (tmp_path / "prefect-home").exists()


def test_next_steps_name_the_command_as_the_user_can_run_it(tmp_path, monkeypatch):
    from flows.cli import invoked_as

    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    exe = bindir / "voicetone"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert invoked_as(str(exe)) == "venv/bin/voicetone"  # not activated: the path that works
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert invoked_as(str(exe)) == "voicetone"  # on PATH: the short name
    assert invoked_as("/usr/lib/python3/pytest") == "voicetone"


@pytest.mark.slow  # ~1 min (Prefect server); the refusal itself is covered by test_build_dataset
def test_failed_source_exits_1_with_the_guard_message_only(tmp_path, monkeypatch):
    """#15.3: a source that accepts nothing stops the build: exit 1, the guard's message, no traceback."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.wav", "b.wav"):
        (corpus / name).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(64))
    spec = _spec(tmp_path, f"name: x\noutput: {tmp_path / 'out'}\nsources:\n  - {{name: s, kind: folder, path: {corpus}}}\n"
                 "labelers: {transcripts: none, sentiment: none}\naugment: {enabled: false}\n")
    run = subprocess.run([sys.executable, "-m", "flows.cli", "build", str(spec)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "error: [source_accepted_nothing] the build stopped and LATEST was not moved: source 's'" in run.stderr
    assert "run.allow_failed_sources" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "out" / "LATEST").exists()
