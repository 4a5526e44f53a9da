"""What `report.html` needs from the manifests, read part by part (issue #16: no process holds a release).

`scan_release` reads the release one part at a time (`Release.iter_arrow`: the parts of a schema-v2
release, or a v1 file as one part) and keeps only small running results, so its memory is one part's
utterances, ASR and classifier rows plus a few hundred kept rows, however many parts there are:

- samples: per part, each (source, sentiment, sentiment_origin) group's `per_group` lowest-ranked
  rows (seeded hash of `row_id`) with their utterance columns (an utterance and its ASR rows share a
  part); the final picks are the same sort over the union of the parts' candidates (cut to the
  union's picks every `COMPACT_EVERY` parts, so they stay a few groups' worth). The candidates
  are kept as Arrow rows and converted to pandas once, with each column typed as it would be in the
  whole table (an integer column with a null anywhere converts to float, as `Release.asr` does), so
  each sample's row is the one the whole-table pick gives, value for value.
- disagreements: the card's sentiment disagreements (their utterances' fields are looked up as the
  parts go by) and the transcripts' word error rates, keeping the `limit` best by the same sort key
  (ties in the same order); a transcript's WER is computed only when an upper bound of it (`most_errors`:
  the words aligned from the start or the end) could still enter the kept `limit`.
- the plots' data: each part's partial aggregates (`tasks.publish.aggregates.shard_aggregates`),
  merged as publish merges them.

`tests/tasks/publish/test_report_scan.py` holds the former whole-table functions as the oracle.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from manifests.release import Release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES
from tasks.publish.samples import (
    DEFAULT_SAMPLES_PER_GROUP,
    MAX_DISAGREEMENTS,
    Sample,
    _plain,
    _rank,
    _utt_fields,
)

CLEAN_COLUMNS = ("utterance_id", "audio_uri", "offset_s", "duration_s", "transcript", "transcript_origin",
                 "p_negative", "p_neutral", "p_positive", "sentiment_confidence", "emotion", "language", "speaker_id")
_CLEAN_NAMES = {"audio_uri": "clean_uri", "offset_s": "clean_offset_s", "duration_s": "clean_duration_s"}
_GROUP = ("source", "sentiment", "sentiment_origin")
COMPACT_EVERY = 16  # parts' sample candidates kept before they are cut to the union's picks


@dataclass
class ReportData:
    samples: list[Sample]
    disagreements: list[dict[str, Any]]
    aggregates: dict[str, Any]


def release_parts(release: Release) -> Iterator[tuple[pa.Table, pa.Table, pa.Table]]:
    """(utterances, ASR stage, classifier stage) of each part, one part in memory at a time."""
    yield from zip(release.iter_arrow(UTTERANCES), release.iter_arrow(ASR_STAGE),
                   release.iter_arrow(CLASSIFIER_STAGE), strict=True)


def part_aggregates(utt: pd.DataFrame, asr: pd.DataFrame, classifier: pd.DataFrame) -> dict[str, Any]:
    """The plots' partial aggregates of one part (no spec; the segment-key hashes, unused by plots, dropped)."""
    from tasks.publish.aggregates import shard_aggregates

    agg = shard_aggregates(None, utt, asr, classifier, pd.DataFrame())
    agg.pop("hashes", None)
    return agg


def scan_release(release: Release, per_group: int = DEFAULT_SAMPLES_PER_GROUP, seed: int = 13,
                 limit: int = MAX_DISAGREEMENTS) -> ReportData:
    """Samples, disagreements and the plots' merged aggregates of `release`, in one pass over its parts."""
    from tasks.publish.aggregates import merge_aggregates

    picker, worst = SamplePicker(per_group, seed), Disagreements(release.card, limit)

    def parts() -> Iterator[dict[str, Any]]:
        """Each part's aggregates, read one part at a time; the samplers see the part on the way."""
        for index, (utt_t, asr_t, clf_t) in enumerate(release_parts(release)):
            utt, asr = utt_t.to_pandas(), asr_t.to_pandas()
            picker.add(utt_t, asr_t, utt, asr)
            worst.add(index, utt)
            yield part_aggregates(utt, asr, clf_t.to_pandas())

    agg = merge_aggregates(parts())  # one streaming merge, as publish's `step.merged_aggregates`
    return ReportData(picker.result(), worst.result(), agg)


def _ranked_head(rows: pd.DataFrame, per_group: int, seed: int) -> pd.DataFrame:
    """The rows of each group's `per_group` lowest ranks, in (group, rank) order (ties: frame order)."""
    rows = rows.assign(_rank=rows["row_id"].astype(str).map(lambda r: _rank(seed, r)))
    key = [rows[c].fillna("unknown").astype(str) for c in _GROUP]
    rows = rows.assign(_s=key[0], _c=key[1], _o=key[2]).sort_values(["_s", "_c", "_o", "_rank"])
    return rows.groupby(["_s", "_c", "_o"], sort=True).head(per_group)


def _with_row_id(table: pa.Table) -> pa.Table:
    """Utterances as sample rows (a release without ASR rows): `row_id` = `utterance_id`."""
    ids = table.column("utterance_id")
    if "row_id" in table.column_names:
        return table.set_column(table.column_names.index("row_id"), "row_id", ids)
    return table.append_column("row_id", ids)


class _Rows:
    """Kept Arrow rows of one manifest, and the columns that hold a null anywhere in the whole manifest."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.nulls: set[str] = set()

    def see(self, table: pa.Table) -> None:
        self.nulls.update(c for c in table.column_names if table.column(c).null_count)

    def frame(self) -> pd.DataFrame:
        """The kept rows as pandas, each column converted as the whole manifest's column would be: a
        row with this manifest's null columns null is converted with them, then dropped."""
        table = pa.concat_tables(self.tables, promote_options="default")
        if not table.num_rows or not self.nulls & set(table.column_names):
            return table.to_pandas()
        probe = table.slice(0, 1)
        for i, name in enumerate(probe.column_names):
            if name in self.nulls:
                probe = probe.set_column(i, probe.schema.field(i), pa.nulls(1, type=probe.schema.field(i).type))
        return pa.concat_tables([table, probe]).to_pandas().iloc[:-1]


def _utterances_of(clean: pa.Table, rows: pa.Table) -> pa.Table:
    wanted = pc.is_in(clean.column("utterance_id"), value_set=pc.unique(rows.column("utterance_id")))
    return clean.filter(pc.fill_null(wanted, False))


class SamplePicker:
    """`pick_samples` over parts: per part each group's `per_group` lowest-ranked rows, then the same pick."""

    def __init__(self, per_group: int, seed: int) -> None:
        self.per_group, self.seed = per_group, seed
        self.asr_seen = False
        self.base, self.clean = _Rows(), _Rows()
        self.keep: list[str] | None = None

    def add(self, utt_t: pa.Table, asr_t: pa.Table, utt: pd.DataFrame, asr: pd.DataFrame) -> None:
        if self.keep is None:
            self.keep = [c for c in CLEAN_COLUMNS if c in utt_t.column_names]
        if asr_t.num_rows and not self.asr_seen:  # the release has ASR rows: the utterance fallback is off
            self.asr_seen, self.base, self.clean.tables = True, _Rows(), []
        if self.asr_seen:
            base_t, base = asr_t, asr
        else:
            base_t, base = _with_row_id(utt_t), utt.assign(row_id=utt["utterance_id"])
        self.base.see(base_t)
        clean_t = utt_t.select(self.keep)
        self.clean.see(clean_t)
        if not len(base):
            return
        rows = self._picked(base_t, base)
        self.base.tables.append(rows)
        self.clean.tables.append(_utterances_of(clean_t, rows))
        if len(self.base.tables) >= COMPACT_EVERY:  # the candidates of many parts: keep the union's picks
            kept = pa.concat_tables(self.base.tables, promote_options="default")
            kept = self._picked(kept, kept.select([c for c in ("row_id", *_GROUP) if c in kept.column_names]).to_pandas())
            clean = pa.concat_tables(self.clean.tables, promote_options="default")
            self.base.tables, self.clean.tables = [kept], [_utterances_of(clean, kept)]

    def _picked(self, table: pa.Table, frame: pd.DataFrame) -> pa.Table:
        """The rows of `table` (whose ranking columns are `frame`) that `_ranked_head` picks, in table order
        (so ties keep the whole table's order)."""
        picked = _ranked_head(frame.reset_index(drop=True), self.per_group, self.seed)
        return table.take(pa.array(sorted(picked.index), type=pa.int64()))

    def result(self) -> list[Sample]:
        if not self.base.tables:
            return []
        clean = self.clean.frame().rename(columns=_CLEAN_NAMES)
        rows = self.base.frame().merge(clean, on="utterance_id", how="left", suffixes=("", "_utt"))
        picked = _ranked_head(rows, self.per_group, self.seed)
        return [Sample(r["_s"], r["_c"], r["_o"], {k: _plain(v) for k, v in r.items() if not k.startswith("_")})
                for _, r in picked.iterrows()]


def most_errors(ref: list[str], hyp: list[str]) -> int:
    """An upper bound of `edit_distance(ref, hyp)`: the cost of an edit script that aligns the words from
    the start (or from the end), substitutes the mismatches and inserts or deletes the rest."""
    extra = abs(len(ref) - len(hyp))
    head = sum(a != b for a, b in zip(ref, hyp, strict=False))
    tail = sum(a != b for a, b in zip(reversed(ref), reversed(hyp), strict=False))
    return min(head, tail) + extra


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    return frame[name].tolist() if name in frame.columns else [None] * len(frame)


class Disagreements:
    """`disagreements` over parts: the `limit` best by (-score, kind, utterance_id, then the order the
    whole-table function appended them), with WER computed only for rows that could still enter."""

    def __init__(self, card: Mapping[str, Any], limit: int) -> None:
        self.limit, self.rows = limit, 0
        self.sentiment: list[tuple[str, Mapping[str, Any]]] = []
        section = card.get("sentiment_agreement") or {}
        labelers = section.get("labelers") if isinstance(section, Mapping) else None
        if isinstance(labelers, Mapping):
            self.sentiment = [(name, d) for name, result in sorted(labelers.items())
                              for d in (result or {}).get("disagreements") or []]
        self.ids = {d.get("utterance_id") for _, d in self.sentiment}
        self.fields: dict[Any, dict[str, Any]] = {}
        self.best: list[tuple[tuple, dict[str, Any] | None]] = []  # sorted (key, transcript item or None)
        self.wer_computed = 0

    def _offer(self, key: tuple, item: dict[str, Any] | None) -> None:
        if len(self.best) >= self.limit and key >= self.best[-1][0]:
            return
        bisect.insort(self.best, (key, item), key=lambda e: e[0])
        del self.best[self.limit:]

    def _could_enter(self, key: tuple) -> bool:
        return len(self.best) < self.limit or key < self.best[-1][0]

    def add(self, index: int, utt: pd.DataFrame) -> None:
        self.rows += len(utt)
        if self.ids:
            for _, r in utt[utt["utterance_id"].isin(self.ids)].iterrows():
                uid = r["utterance_id"]
                if uid in self.fields:
                    continue
                self.fields[uid] = _utt_fields(r)
                for j, (_, d) in enumerate(self.sentiment):
                    if d.get("utterance_id") == uid:
                        self._offer((-float(d.get("severity", 1)), "sentiment", uid, (-1, j)), None)
        if "asr_hypothesis" in utt.columns:
            self._transcripts(index, utt[utt["asr_hypothesis"].notna() & (utt["transcript_origin"] == "human")])

    def _transcripts(self, index: int, rows: pd.DataFrame) -> None:
        from tasks.label.transcripts.normalize import base_language, edit_distance, normalize_transcript

        raws, texts, hyps = _column(rows, "transcript_raw"), _column(rows, "transcript"), _column(rows, "asr_hypothesis")
        languages, uids = _column(rows, "language"), _column(rows, "utterance_id")
        for pos, (raw, text, hyp, language, uid) in enumerate(zip(raws, texts, hyps, languages, uids, strict=True)):
            reference = raw if isinstance(raw, str) and raw else text
            if not isinstance(reference, str) or not reference.strip():
                continue
            code = base_language(language or "en")
            ref, said = normalize_transcript(reference, code).split(), normalize_transcript(str(hyp), code).split()
            if not ref or ref == said:  # no words, or no errors: not a disagreement
                continue
            seq = (index, pos)
            if not self._could_enter((-round(most_errors(ref, said) / len(ref), 4), "transcript", uid, seq)):
                continue  # even the most errors this pair can have would not make the kept list
            self.wer_computed += 1
            score = round(edit_distance(ref, said) / len(ref), 4)
            if self._could_enter((-score, "transcript", uid, seq)):
                r = rows.iloc[pos]
                item = {"kind": "transcript", "labeler": str(r.get("asr_hypothesis_origin") or "asr"),
                        "score": score, "human": reference, "pseudo": str(hyp), **_utt_fields(r)}
                self._offer((-score, "transcript", uid, seq), item)

    def result(self) -> list[dict[str, Any]]:
        if not self.rows:
            return []
        out = [{"kind": "sentiment", "labeler": name, "score": float(d.get("severity", 1)), "human": d["human"],
                "pseudo": d["predicted"], **self.fields[d["utterance_id"]]}
               for name, d in self.sentiment if d.get("utterance_id") in self.fields]
        kept = sorted(((key, item) for key, item in self.best if item is not None), key=lambda e: e[0][3])
        out += [item for _, item in kept]  # in the order the whole-table function appended them
        out.sort(key=lambda d: (-d["score"], d["kind"], d["utterance_id"]))
        return out[: self.limit]

