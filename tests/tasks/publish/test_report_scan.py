"""report.html reads the release part by part and gives exactly what the whole-table code gave.

The former whole-table `pick_samples` / `disagreements` (and the plots from whole frames) are kept
here, verbatim, as the oracle; the part-by-part `tasks.publish.report_scan` must give the same
samples (value for value, types included), the same disagreements in the same order (ties too), and
the same report.html bytes, on multi-part v2 releases and on a v1 release.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from manifests.release import Release, open_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES
from tasks.publish import html as report_html
from tasks.publish import samples as rs
from tasks.publish.report_scan import Disagreements, scan_release
from tasks.publish.samples import Sample, _plain, _rank, _utt_fields
from tests.manifests.release_factory import (
    add_utterance,
    make_tables,
    reweight,
    write_release,
    write_release_v2,
)


# ------------------------------------------------------------------------------ the whole-table oracle
def oracle_pick_samples(release: Release, per_group: int = 2, seed: int = 13) -> list[Sample]:
    utt = release.utterances
    base = release.asr if len(release.asr) else utt.assign(row_id=utt["utterance_id"])
    if base.empty:
        return []
    keep = [c for c in ("utterance_id", "audio_uri", "offset_s", "duration_s", "transcript", "transcript_origin",
                        "p_negative", "p_neutral", "p_positive", "sentiment_confidence", "emotion", "language",
                        "speaker_id") if c in utt.columns]
    clean = utt[keep].rename(columns={"audio_uri": "clean_uri", "offset_s": "clean_offset_s",
                                      "duration_s": "clean_duration_s"})
    rows = base.merge(clean, on="utterance_id", how="left", suffixes=("", "_utt"))
    rows = rows.assign(_rank=rows["row_id"].astype(str).map(lambda r: _rank(seed, r)))
    key = [rows[c].fillna("unknown").astype(str) for c in ("source", "sentiment", "sentiment_origin")]
    rows = rows.assign(_s=key[0], _c=key[1], _o=key[2]).sort_values(["_s", "_c", "_o", "_rank"])
    picked = rows.groupby(["_s", "_c", "_o"], sort=True).head(per_group)
    return [Sample(r["_s"], r["_c"], r["_o"], {k: _plain(v) for k, v in r.items() if not k.startswith("_")})
            for _, r in picked.iterrows()]


def _row_wer(reference: str, hypothesis: str, language: str | None) -> tuple[int, int]:
    from tasks.label.transcripts.normalize import base_language, word_errors

    return word_errors(reference, hypothesis, base_language(language or "en"))


def oracle_disagreements(release: Release, limit: int = 20) -> list[dict[str, Any]]:
    utt = release.utterances.set_index("utterance_id", drop=False) if len(release.utterances) else None
    if utt is None:
        return []
    out: list[dict[str, Any]] = []
    section = release.card.get("sentiment_agreement") or {}
    labelers = section.get("labelers") if isinstance(section, Mapping) else None
    if isinstance(labelers, Mapping):
        for name, result in sorted(labelers.items()):
            for d in (result or {}).get("disagreements") or []:
                if d.get("utterance_id") in utt.index:
                    out.append({"kind": "sentiment", "labeler": name, "score": float(d.get("severity", 1)),
                                "human": d["human"], "pseudo": d["predicted"], **_utt_fields(utt.loc[d["utterance_id"]])})
    if "asr_hypothesis" in utt.columns:
        rows = utt[utt["asr_hypothesis"].notna() & (utt["transcript_origin"] == "human")]
        for _, r in rows.iterrows():
            reference = r["transcript_raw"] if isinstance(r.get("transcript_raw"), str) and r["transcript_raw"] \
                else r["transcript"]
            if not isinstance(reference, str) or not reference.strip():
                continue
            errors, words = _row_wer(reference, str(r["asr_hypothesis"]), r.get("language"))
            if errors and words:
                out.append({"kind": "transcript", "labeler": str(r.get("asr_hypothesis_origin") or "asr"),
                            "score": round(errors / words, 4), "human": reference, "pseudo": str(r["asr_hypothesis"]),
                            **_utt_fields(r)})
    out.sort(key=lambda d: (-d["score"], d["kind"], d["utterance_id"]))
    return out[:limit]


def oracle_write_report(uri: str, samples_per_group: int = 2) -> str:
    """`write_report` as it was: whole tables for the samples, the disagreements and the plots."""
    from manifests import uri as fs
    from tasks.publish.aggregates import frame_aggregates

    release = open_release(uri)
    samples = oracle_pick_samples(release, samples_per_group, seed=int(release.card.get("seed") or 13))
    rs.render_sample_audio(release, samples)
    disagreements = oracle_disagreements(release)
    rs.render_disagreement_audio(release, disagreements)
    clips = [c for s in samples for c in s.clips.values()] + [d["clip"] for d in disagreements]
    srcs = rs.clip_sources(clips)
    agg = frame_aggregates(None, release.utterances, release.asr, release.classifier, None)
    target = fs.join(release.root, report_html.REPORT_FILE)
    fs.write_bytes(target, report_html.render_html(release, samples, disagreements, srcs, agg).encode())
    return target


# ------------------------------------------------------------------------------ releases to compare on
WORDS = "the cat sat on a mat and then it ran away from home very fast today 25 dogs".split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def rich_tables(n: int = 60, seed: int = 3) -> dict[str, pd.DataFrame]:
    """The factory's release plus `n` utterances over 3 sources, 3 classes and 3 sentiment origins, with
    human transcripts and Whisper hypotheses (many equal WERs: ties), some nulls (an ASR row without
    `aug_seed`, so the whole column converts to float), several ASR rows per utterance."""
    rng = random.Random(seed)
    tables = make_tables()
    for i in range(n):
        add_utterance(tables, f"{['a', 'b', 'c'][i % 3]}/u{i:03d}", ["train", "dev", "test"][i % 3 if i % 5 else 0],
                      ["negative", "neutral", "positive"][(i // 3) % 3], source=["a", "b", "c"][i % 3],
                      asr_variants=1 + i % 3, sentiment_origin=["human", "text_classifier", "mapped_emotion"][i % 4 % 3])
    utt = tables[UTTERANCES]
    refs = [_text(rng, rng.randint(1, 6)) for _ in range(len(utt))]
    utt["transcript"] = refs
    utt["transcript_raw"] = [r.capitalize() + "." if i % 4 else None for i, r in enumerate(refs)]
    hyps = []
    for i, r in enumerate(refs):
        words = r.split()
        kind = i % 5
        if kind == 0:
            hyps.append(r)  # no error
        elif kind == 1:
            hyps.append(" ".join(words[:-1] + ["dog"]))  # one substitution
        elif kind == 2:
            hyps.append(r + " " + _text(rng, rng.randint(1, 8)))  # insertions: WER above 1
        elif kind == 3:
            hyps.append(None)
        else:
            hyps.append(_text(rng, len(words)))
    utt["asr_hypothesis"] = hyps
    utt["asr_hypothesis_origin"] = ["whisper" if i % 7 else None for i in range(len(utt))]
    utt["transcript_origin"] = ["human" if i % 6 else "whisper" for i in range(len(utt))]
    utt["language"] = ["en" if i % 9 else None for i in range(len(utt))]
    utt["p_negative"] = [None if i % 2 else rng.random() for i in range(len(utt))]
    asr = tables[ASR_STAGE]
    asr["aug_seed"] = asr["aug_seed"].astype("float64")
    asr.loc[asr.index[-1], "aug_seed"] = np.nan  # one null in one part: the whole column is float
    reweight(tables)
    return tables


def _card_disagreements(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    ids = list(tables[UTTERANCES]["utterance_id"])
    rows = lambda picks, sev: [{"utterance_id": ids[i % len(ids)], "source": "a", "human": "negative", "predicted": "positive",  # noqa: E731
                                "severity": sev} for i in picks]
    return {"sentiment_agreement": {"labelers": {
        "vader": {"disagreements": [*rows([7, 3, 30], 2), *rows([12, 3], 1), {"utterance_id": "gone", "human": "x",
                                                                               "predicted": "y", "severity": 2}]},
        "tfidf": {"disagreements": rows([3, 40, 7], 2)}}}}


def _with_card(paths: Any, tables: dict[str, pd.DataFrame], extra: dict[str, Any] | None = None) -> None:
    """A real card (`build_card`) over the factory's: the page renders its warnings, tables and plots."""
    import json

    from tasks.publish.card import build_card
    from tasks.spec import DatasetSpec, SourceSpec
    from tests.tasks.publish.test_report import EXTRA

    sources = sorted(set(tables[UTTERANCES]["source"]) | {"src"})
    spec = DatasetSpec(name="t", seed=7, output="/tmp/out",
                       sources=[SourceSpec(name=s, kind="folder", path=f"/data/{s}") for s in sources])
    found = {s: int((tables[UTTERANCES]["source"] == s).sum() + (tables["rejects"]["source"] == s).sum())
             for s in sources}
    card = build_card(spec=spec, release="r", utterances=tables[UTTERANCES], asr=tables[ASR_STAGE],
                      classifier=tables[CLASSIFIER_STAGE], rejects=tables["rejects"], found=found, extra=EXTRA)
    written = json.loads(Path(paths.card_json).read_text())
    card.update({k: written[k] for k in ("release", "schema_version", "content_sha256", "manifests") if k in written})
    card.update({"built_at": "2026-01-01T00:00:00+00:00", **_card_disagreements(tables), **(extra or {})})
    Path(paths.card_json).write_text(json.dumps(card))


@pytest.fixture(scope="module")
def rich() -> dict[str, pd.DataFrame]:
    return rich_tables()


@pytest.fixture(scope="module", params=[("v2", 4), ("v2", 1), ("v1", 1)], ids=["v2-4parts", "v2-1part", "v1"])
def release_uri(request, rich: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> str:
    layout, n_parts = request.param
    tables = {k: v.copy() for k, v in rich.items()}
    out = str(tmp_path_factory.mktemp(f"{layout}-{n_parts}") / "out")
    paths = write_release_v2(out, tables, n_parts=n_parts) if layout == "v2" else write_release(out, tables)
    _with_card(paths, tables)
    return paths.root


def _shown(samples: list[Sample]) -> list[tuple[str, str, str, str]]:
    return [(s.source, s.sentiment, s.origin, repr(s.row)) for s in samples]  # repr: 7 and 7.0 differ


# ------------------------------------------------------------------------------ tests
def test_samples_are_the_whole_table_picks(release_uri: str):
    whole = open_release(release_uri)
    for per_group in (1, 2, 5):
        expected = oracle_pick_samples(whole, per_group, seed=7)
        got = rs.pick_samples(open_release(release_uri), per_group, seed=7)
        assert _shown(got) == _shown(expected) and len(expected) > 9
        assert any(isinstance(s.row.get("aug_seed"), float) for s in got)  # the whole column's type, not the part's


def test_disagreements_are_the_whole_table_ones_in_the_same_order(release_uri: str):
    whole = open_release(release_uri)
    for limit in (1, 3, 7, 20, 200):
        expected = oracle_disagreements(whole, limit)
        got = rs.disagreements(open_release(release_uri), limit)
        assert got == expected
        assert [type(v) for d in got for v in d.values()] == [type(v) for d in expected for v in d.values()]
    assert {d["kind"] for d in expected} == {"sentiment", "transcript"}


def test_wer_is_computed_only_for_rows_that_could_enter(release_uri: str):
    release = open_release(release_uri)
    worst = Disagreements(release.card, 3)
    for i, part in enumerate(release.iter_arrow(UTTERANCES)):
        worst.add(i, part.to_pandas())
    everything = [d for d in oracle_disagreements(open_release(release_uri), 10_000) if d["kind"] == "transcript"]
    assert worst.result() == oracle_disagreements(open_release(release_uri), 3)
    assert 0 < worst.wer_computed < len(everything)


def test_scan_gives_the_same_report_html_bytes(release_uri: str, tmp_path: Path):
    new = Path(report_html.write_report(release_uri)).read_bytes()
    old = Path(oracle_write_report(release_uri)).read_bytes()
    assert new == old and b"Listen to the disagreements" in new and b"<img" in new


def test_a_release_without_asr_rows_samples_its_utterances(tmp_path: Path):
    tables = rich_tables(12)
    tables[ASR_STAGE] = tables[ASR_STAGE].iloc[0:0]
    root = write_release_v2(str(tmp_path / "out"), tables, n_parts=3).root
    expected = oracle_pick_samples(open_release(root), 2)
    assert _shown(rs.pick_samples(open_release(root), 2)) == _shown(expected) and expected


def test_ties_keep_the_whole_table_order(tmp_path: Path):
    """Two ASR rows with one row_id (one rank) in different parts: the whole table's order decides."""
    tables = rich_tables(24)
    asr = tables[ASR_STAGE]
    asr["row_id"] = "same"
    root = write_release_v2(str(tmp_path / "out"), tables, n_parts=3).root
    for per_group in (1, 3):
        expected = oracle_pick_samples(open_release(root), per_group)
        assert _shown(rs.pick_samples(open_release(root), per_group)) == _shown(expected)


def test_many_random_releases_give_the_oracles_picks(tmp_path: Path, monkeypatch):
    import json

    from tasks.publish import report_scan

    monkeypatch.setattr(report_scan, "COMPACT_EVERY", 2)  # the candidates are cut along the way too

    for seed in range(3):
        tables = rich_tables(30, seed=seed)
        paths = write_release_v2(str(tmp_path / f"o{seed}"), tables, n_parts=2 + seed)
        root, card = paths.root, json.loads(Path(paths.card_json).read_text())
        Path(paths.card_json).write_text(json.dumps({**card, **_card_disagreements(tables)}))
        for limit in (2, 5):
            assert rs.disagreements(open_release(root), limit) == oracle_disagreements(open_release(root), limit)
        assert _shown(rs.pick_samples(open_release(root), 1, seed)) == _shown(
            oracle_pick_samples(open_release(root), 1, seed))


def test_the_report_never_reads_a_whole_table_of_a_v2_release(rich, tmp_path: Path, monkeypatch):
    tables = {k: v.copy() for k, v in rich.items()}
    paths = write_release_v2(str(tmp_path / "out"), tables, n_parts=4)
    _with_card(paths, tables)
    expected = Path(oracle_write_report(paths.root)).read_bytes()

    def whole(*_a, **_k):
        raise AssertionError("report.html read a whole manifest")

    for name in ("utterances", "asr", "classifier", "rejects"):
        monkeypatch.setattr(Release, name, property(whole))
    monkeypatch.setattr(Release, "table", whole)
    monkeypatch.setattr(Release, "arrow", whole)
    assert Path(report_html.write_report(paths.root)).read_bytes() == expected


def test_scan_release_holds_the_samples_disagreements_and_plot_data(release_uri: str):
    from tasks.publish.aggregates import frame_aggregates
    from tasks.publish.plots import plot_data

    release = open_release(release_uri)
    data = scan_release(release, 2, seed=7)
    whole = open_release(release_uri)
    agg = frame_aggregates(None, whole.utterances, whole.asr, whole.classifier, None)
    assert plot_data(data.aggregates) == plot_data(agg)
    assert data.disagreements == oracle_disagreements(whole)
    assert _shown(data.samples) == _shown(oracle_pick_samples(whole, 2, seed=7))


def test_the_demo_release_report_is_the_whole_table_one(demo_release, tmp_path: Path):
    """A release built by the real flow (real labelers, recipes, hypotheses): the same page, byte for byte."""
    import shutil

    from manifests.io import resolve_release

    spec, _ = demo_release
    root = Path(resolve_release(spec.output).root)
    copy = tmp_path / root.name  # a copy, so the shared release keeps its own report
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("report_audio", "report.html"))
    new = Path(report_html.write_report(str(copy))).read_bytes()
    assert new == Path(oracle_write_report(str(copy))).read_bytes()
    assert rs.disagreements(open_release(str(copy))) and b"report_audio/" in new


def test_most_errors_bounds_the_edit_distance():
    from tasks.label.transcripts.normalize import edit_distance
    from tasks.publish.report_scan import most_errors

    rng = random.Random(5)
    for _ in range(3000):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 7))]
        assert edit_distance(a, b) <= most_errors(a, b) <= max(len(a), len(b))
    assert most_errors(list("xabc"), list("abc")) == 1 and most_errors(list("abc"), list("abx")) == 1
