"""report.html of the demo release: self-contained, every player resolves, tables hold the card's counts.

Two checks of the same page: an HTML-parsing one (no browser; always runs) and one in headless
Chromium from Debian (`make system-deps` installs it; skipped with a reason when absent), which
plays nothing but loads every <audio> and reads the page's console.
"""

from __future__ import annotations

import html.parser
import json
import os
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from manifests.io import resolve_release
from tests.cdp import AUDIO_CHECK_JS, CARD_CELLS_JS, Browser, find_chromium

DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "img" / "report.png"


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.audio: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.cells: list[tuple[str, str]] = []
        self.sections: list[str] = []
        self._cell: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "audio":
            self.audio.append(a.get("src") or "")
        elif tag == "img":
            self.images.append(a.get("src") or "")
        elif tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src") or "")
        elif tag == "section":
            self.sections.append(a.get("id") or "")
        if "data-card" in a:
            self._cell, self._text = a["data-card"], ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._cell is not None and tag in ("td", "b"):
            self.cells.append((self._cell, self._text.strip()))
            self._cell = None


def _card_value(card: dict[str, Any], dotted: str) -> Any:
    value: Any = card
    for part in dotted.split("."):
        value = value[part]
    return value


def _expected(card: dict[str, Any], dotted: str) -> str:
    from tasks.publish.card_common import fmt_hms

    value = _card_value(card, dotted)
    return fmt_hms(value) if dotted.endswith(".hours") else str(value)


@pytest.fixture(scope="module")
def report(demo_release) -> tuple[Path, dict[str, Any]]:
    spec, _ = demo_release
    paths = resolve_release(spec.output)
    root = Path(paths.root)
    return root / "report.html", json.loads(Path(paths.card_json).read_text())


def test_build_writes_a_self_contained_report_whose_tables_hold_the_cards_counts(report):
    page_path, card = report
    assert page_path.exists(), "the build writes report.html by default (spec report.html: true)"
    page = _Page()
    page.feed(page_path.read_text())
    assert page.sections[:2] == ["warnings", "summary"]  # warnings first
    assert {"samples", "disagreements", "plots", "sources"} <= set(page.sections)
    assert not page.links  # CSS inline, no scripts or stylesheets fetched
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    # Every player points at a WAV inside the release by a relative path, and the WAV has sound.
    assert len(page.audio) >= 8
    for src in page.audio:
        assert not src.startswith(("/", "file:", "http")), src
        clip = page_path.parent / src
        info = sf.info(str(clip))
        assert info.samplerate == 16000 and info.frames > 0, src
    # Both the clean and the augmented version of a sample can be heard.
    assert any(s.endswith("-augmented.wav") for s in page.audio) and any(s.endswith("-clean.wav") for s in page.audio)
    # The tables hold the card's counts: every source's found/accepted/rejected and the totals.
    cells = dict(page.cells)
    for name in card["counts"]["sources"]:
        for key in ("found", "accepted", "rejected"):
            assert f"counts.sources.{name}.{key}" in cells
    for dotted, text in page.cells:
        assert text == _expected(card, dotted), dotted


def test_report_in_headless_chromium(report, tmp_path):
    """Opened from disk in a real browser: no console errors, every <audio> plays, counts match."""
    binary = find_chromium()
    if binary is None and os.environ.get("CI"):
        pytest.fail("CI must run the browser test: `make system-deps` installs Debian's chromium")
    if binary is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium; `make system-deps` does it)")
    page_path, card = report
    with Browser(binary) as browser:
        browser.open(page_path.as_uri())
        audio = browser.evaluate(AUDIO_CHECK_JS)
        cells = browser.evaluate(CARD_CELLS_JS)
        shot = browser.screenshot(tmp_path / "report.png")
        errors = list(browser.errors)
    assert not errors, errors
    assert audio, "no <audio> element on the page"
    broken = [a for a in audio if not (a["can"] in ("maybe", "probably") and a["ok"] and a["duration"] > 0)]
    assert not broken, broken
    for dotted, text in cells:
        assert text == _expected(card, dotted), dotted
    assert shot.stat().st_size > 10_000
    if os.environ.get("VOICETONE_UPDATE_SCREENSHOT"):  # refresh the picture in docs/report.md
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(shot.read_bytes())


def test_cli_report_embeds_clips_for_mailing(demo_release, tmp_path):
    """`voicetone report DIR --embed-audio 2`: the first two players carry their WAV inline."""
    import shutil

    from flows.cli import main

    spec, _ = demo_release
    root = Path(resolve_release(spec.output).root)
    copy = tmp_path / root.name  # a copy, so the shared release keeps its default report
    shutil.copytree(root, copy)
    assert main(["report", str(copy), "--embed-audio", "2", "--samples", "1"]) == 0
    page = _Page()
    page.feed((copy / "report.html").read_text())
    embedded = [s for s in page.audio if s.startswith("data:audio/wav;base64,")]
    assert len(embedded) == 2 and all(not s.startswith("data:") for s in page.audio[2:])
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


def test_prefect_artifact_shows_warnings_first_and_links_the_report(demo_release):
    from flows.build_dataset import release_markdown
    from manifests.io import read_card
    from tasks.publish.card import render_summary

    spec, result = demo_release
    card = read_card(resolve_release(spec.output))
    md = release_markdown(result, card, "- **WARNING `x`**: y", render_summary(card))
    assert md.index("## Warnings") < md.index("**Report**") < md.index("## Summary")
    assert "report.html" in md and md.split("**Report**: [")[1].startswith("file://")


def test_s3_release_report_with_presigned_players(demo_release, s3_bucket):
    """A release on S3: clips and page are written there, and `--presign` players fetch real WAVs."""
    import re
    import urllib.request

    from flows.cli import main
    from manifests import io as mio
    from manifests import uri as fs

    spec, _ = demo_release
    root = Path(resolve_release(spec.output).root)
    output = f"s3://{s3_bucket}/out"
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(("report_audio/", "report.html")):
            fs.write_bytes(f"{output}/releases/{root.name}/{rel}", path.read_bytes())
    mio.point_latest(output, root.name)
    assert main(["report", output, "--presign", str(8 * 24 * 3600)]) == 2  # beyond SigV4's 7 days
    assert main(["report", output, "--presign", "600", "--samples", "1"]) == 0
    page = _Page()
    page.feed(fs.read_bytes(f"{output}/releases/{root.name}/report.html").decode())
    assert page.audio and all(src.startswith("http://127.0.0.1") for src in page.audio)
    assert all(re.search(r"X-Amz-Expires=600\b", src) and "/report_audio/" in src for src in page.audio)
    with urllib.request.urlopen(page.audio[0], timeout=30) as resp:
        assert resp.read(4) == b"RIFF"
