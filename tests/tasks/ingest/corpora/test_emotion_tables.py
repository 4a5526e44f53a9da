"""#15.9: hints fit the corpus label, and docs/corpora.md's emotion tables equal the code's maps."""

from __future__ import annotations

from pathlib import Path

from tasks.ingest.corpora import emotion_tables
from tasks.ingest.corpora.labels import (
    DEFAULT_EMOTION_MAP,
    EMOTION_HINTS,
    map_emotion,
    unmapped_emotion_detail,
)
from tasks.ingest.corpora.ravdess import EMOTIONS as RAVDESS


def test_the_doc_tables_equal_the_code() -> None:
    doc = Path(__file__).resolve().parents[4] / "docs" / "corpora.md"
    block = emotion_tables.doc_block(doc.read_text(encoding="utf-8"))
    assert block is not None, "docs/corpora.md lacks the emotion-tables markers"
    assert block == emotion_tables.render(), "regenerate: python -m tasks.ingest.corpora.emotion_tables --write"


def test_the_tables_cover_every_built_in_label() -> None:
    text = emotion_tables.render()
    for label, target in DEFAULT_EMOTION_MAP.items():
        assert f"| `{label}` | {target or '— (unmapped'}" in text
    for code, name in RAVDESS.items():
        assert f"| `{code}` | {name} | {map_emotion(name) or '— (unmapped'}" in text
    assert all(f"| `{label}` |" in text for label in EMOTION_HINTS)


def test_hints_fit_the_label() -> None:
    """TESS `ps` (pleasant surprise) used to get `{ps: neutral}`."""
    ps = unmapped_emotion_detail("ps", "tess", "OAF_back_ps.wav")
    assert "pleasant surprise (TESS)" in ps and "emotion_map: {ps: positive}" in ps and "neutral" not in ps
    assert "emotion_map: {boredom: negative}" in unmapped_emotion_detail("Boredom", "emodb", "x")
    xxx = unmapped_emotion_detail("xxx", "iemo", "x")
    assert "annotators did not agree" in xxx and "neutral" not in xxx
    unknown = unmapped_emotion_detail("ecstatic-ish", "s", "x")
    assert "{ecstatic-ish: negative|neutral|positive}" in unknown and "what 'ecstatic-ish' means" in unknown
    assert map_emotion("ps") is None  # a hint only: nothing is mapped until the spec says so
