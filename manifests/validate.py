"""The contract's validator: `voicetone validate DIR` is `validate_release(DIR)`.

Every check returns problems as sentences that name the file, the rows and the rule, so a failing
release can be fixed without reading this code. The configured values a check needs (window length,
speed set, SNR range, weighting, balancing, eligibility) are read from the card's `spec`, so the
validator judges a release by the settings that built it. The numeric rules come from
`manifests.rules`, an implementation independent of the pipeline's (docs/balance-and-splits.md).

Parts are checked in parallel (`manifests.validate_part.check_part`, a thread pool); the global
invariants (found = accepted + rejected per source, no segment key or speaker in two splits,
balanced splits uniform, class_weight x frequency constant, the release identity) are checked
here from the parts' merged reductions, never from a whole table in memory. A version-1 release is
checked as one part.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from manifests import rules
from manifests import validate_leakage as leakage
from manifests.io import ManifestError, ReleasePaths, read_card, resolve_release, v1_identity
from manifests.parts import card_digests, known_part_digests, list_parts, part_index, release_digest
from manifests.schema import MANIFEST_NAMES, READABLE_VERSIONS, SENTIMENTS, SPLITS, UTTERANCES
from manifests.validate_part import PartCheck, check_part, speaker_rows
from manifests.validate_report import ValidationReport
from manifests.validate_report import examples as _examples

__all__ = ["PartCheck", "ValidationReport", "check_part", "validate_release"]


def default_workers() -> int:
    """Threads for the part checks: the machine's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def validate_release(uri: str, deep: bool = False, workers: int | None = None,
                     card_digests_of_same_bytes: bool = False) -> ValidationReport:
    """Check a release (or the LATEST under an output folder) against schema version 1 or 2.

    `deep` also re-reads every audio file inside the release: its sha256 must equal the manifests'
    `audio_sha256` and it must decode (plain validation checks that each exists and is not empty).
    `workers` threads check parts at once (default `default_workers()`).

    `card_digests_of_same_bytes` is for the build that has just written the release and its card
    (`tasks.publish.step`): a v2 part whose file bytes have the sha256 its card record lists takes
    the record's `content_sha256` instead of hashing its rows again (publish computed it from exactly
    those bytes' rows; a part that differs is hashed). Every other check runs as usual. `voicetone
    validate` never trusts the card: it recomputes every digest.
    """
    try:
        paths = resolve_release(uri)
    except (ManifestError, FileNotFoundError) as err:
        report = ValidationReport(release=uri)
        report.fail(str(err))
        return report
    report = ValidationReport(release=paths.root)
    try:
        card = read_card(paths)
    except (ManifestError, FileNotFoundError) as err:
        report.fail(f"dataset card: {err}")
        card = None
    layout = paths.layout()
    indexes = _part_indexes(paths, layout, card, report)
    name = _release_name(card, paths)
    n_parts = len(indexes)

    known = known_part_digests(card) if card_digests_of_same_bytes and card else {}

    def one(i: int) -> PartCheck:
        return check_part(paths.root, i, card, layout, n_parts, deep=deep, release_name=name, known=known.get(i))

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        results = list(pool.map(one, indexes))
    for result in results:
        report.problems.extend(result.problems)
    for check in dict.fromkeys(c for result in results for c in result.checks):
        report.passed(check)
    for check in _summed_checks(c for r in results for c in r.reductions.get("audio_checks") or []):
        report.passed(check)
    if any(len(r.digests) < len(MANIFEST_NAMES) for r in results):
        return report  # a part could not be read: the global checks would only repeat it
    spec = (card or {}).get("spec") or {}
    if card is not None:
        _check_card(card, results, layout, report)
    _check_leakage(results, report, lambda kind: _key_rows(paths, layout, indexes, spec, kind))
    _check_asr_balance(results, spec, report)
    _check_weights(results, spec, report)
    return report


def _summed_checks(checks: Iterable[str]) -> list[str]:
    """Per-part checks that start with a count ("5 audio file(s) ... present"), summed into one line each."""
    totals: dict[tuple[str, str], int] = {}
    for check in checks:
        match = re.match(r"^((?:deep: )?)(\d+) (.*)$", check)
        key = (match.group(1), match.group(3)) if match else ("", check)
        totals[key] = totals.get(key, 0) + (int(match.group(2)) if match else -1)
    return [f"{lead}{n} {text}" if n >= 0 else text for (lead, text), n in totals.items()]


def _part_indexes(paths: ReleasePaths, layout: str, card: dict | None, report: ValidationReport) -> list[int]:
    """The parts to check: [0] for v1; for v2 the parts on disk, which every manifest and the card must agree on."""
    if layout == "1":
        return [0]
    found = {name: [part_index(u) for u in list_parts(paths.manifest_dir(name))] for name in MANIFEST_NAMES}
    indexes = sorted(set().union(*found.values()))
    for name, have in found.items():
        if not have:
            report.fail(f"manifests/{name}/ holds no part (every manifest has at least part 0)")
        elif have != indexes:
            report.fail(f"manifests/{name}/ lacks part(s) {_examples(sorted(set(indexes) - set(have)))} that the "
                        "other manifests have (every manifest has the same parts)")
    if indexes != list(range(len(indexes))):
        report.fail(f"manifest parts are not numbered 0..{len(indexes) - 1}: {_examples(indexes)}")
    for name in MANIFEST_NAMES:
        listed = [int(p["part"]) for p in ((card or {}).get("manifests") or {}).get(name, {}).get("parts") or []]
        if card is not None and sorted(listed) != found[name]:
            report.fail(f"dataset card lists parts {_examples(sorted(listed))} of {name}, the release holds "
                        f"{_examples(found[name])}")
    return indexes


def _release_name(card: dict | None, paths: ReleasePaths) -> str:
    """The name the release was published under (a copied folder may carry another name)."""
    return str((card or {}).get("release") or paths.name)


def _merged(results: Iterable[PartCheck], key: str) -> Counter:
    total: Counter = Counter()
    for result in results:
        total.update(result.reductions.get(key) or {})
    return total


def _check_card(card: dict, results: list[PartCheck], layout: str, report: ValidationReport) -> None:
    version = str(card.get("schema_version"))
    if version not in READABLE_VERSIONS or version != layout:
        report.fail(f"dataset card schema_version is {card.get('schema_version')!r}, expected {layout!r} "
                    f"(the layout of its manifests)")
    expected = card.get("content_sha256")
    if layout == "1":
        actual = v1_identity(results[0].digests)
    else:
        digests = {name: [r.digests[name] for r in results] for name in MANIFEST_NAMES}
        actual = release_digest(digests)
        listed = card_digests(card)
        stale = [f"{name}/{i:05d}" for name in MANIFEST_NAMES for i, d in enumerate(digests[name])
                 if i < len(listed[name]) and listed[name][i] != d]
        if stale:
            report.fail(f"dataset card part content_sha256 differs from the part's rows: {_examples(stale)}")
        rows = {name: sum(int(r.reductions["rows"][name]) for r in results) for name in MANIFEST_NAMES}
        counted = {name: ((card.get("manifests") or {}).get(name) or {}).get("rows") for name in MANIFEST_NAMES}
        wrong = [f"{n}: card {counted[n]}, parts {rows[n]}" for n in MANIFEST_NAMES if counted[n] != rows[n]]
        if wrong:
            report.fail(f"dataset card row counts differ from the parts: {_examples(wrong)}")
    if expected != actual:
        report.fail(f"content_sha256 mismatch: card says {expected}, manifests hash to {actual}")
    else:
        report.passed("content_sha256 matches the manifests")
    found = _found_per_source(card)
    if not found:
        report.fail("dataset card has no counts.found per source")
        return
    accepted, rejected = _merged(results, "accepted"), _merged(results, "rejected")
    for source, n_found in sorted(found.items()):
        total = accepted[source] + rejected[source]
        if total != int(n_found):
            report.fail(
                f"source {source!r}: found {n_found} but accepted {accepted[source]} + rejected {rejected[source]} = "
                f"{total} (items lost or counted twice)"
            )
    unknown = (set(accepted) | set(rejected)) - set(found)
    if unknown:
        report.fail(f"sources in manifests but not in the card's found counts: {_examples(sorted(unknown))}")
    report.passed("found = accepted + rejected per source")
    _check_failed_sources(card, accepted, found, report)
    leakage = card.get("leakage")
    if isinstance(leakage, dict) and "duplicate_segments_resolved" in leakage:
        n_dup = sum(int(r.reductions.get("duplicate_segments", 0)) for r in results)
        if int(leakage["duplicate_segments_resolved"]) != n_dup:
            report.fail(f"dataset card counts {leakage['duplicate_segments_resolved']} duplicate segments resolved "
                        f"but rejects.parquet has {n_dup} duplicate_segment rows")


def _check_failed_sources(card: dict, accepted: Counter, found: dict[str, int], report: ValidationReport) -> None:
    """A source that accepted nothing is a failed build unless the spec allowed it (its guard fired as a
    warning, run.allow_failed_sources); either way validate says so."""
    allowed = set(((card.get("spec") or {}).get("run") or {}).get("allow_failed_sources") or [])
    for name in sorted(n for n in found if not accepted[n]):
        if name in allowed:
            report.passed(f"source {name!r} accepted 0 of {found[name]} found items (allowed by "
                          "run.allow_failed_sources)")
        else:
            report.fail(f"source {name!r} accepted 0 of {found[name]} found items (a failed source; the build "
                        "should have stopped: see run.allow_failed_sources in docs/spec.md)")


def _found_per_source(card: dict) -> dict[str, int]:
    """Found counts per source from the card (`counts.sources.<name>.found`)."""
    sources = (card.get("counts") or {}).get("sources") or {}
    return {name: int(c["found"]) for name, c in sources.items() if isinstance(c, dict) and c.get("found") is not None}


def _check_leakage(results: list[PartCheck], report: ValidationReport,
                   key_rows: Callable[[str], Iterable[pd.DataFrame]]) -> None:
    """Across parts: no utterance id twice, no segment key and no speaker in two splits (by key hashes;
    `key_rows` re-reads the parts' key columns only to name leaked keys)."""
    ids = np.concatenate([r.reductions["utterance_hashes"] for r in results]) if results else np.array([], np.uint64)
    ids.sort()  # in place: equal neighbours are the extra copies (np.unique would copy 8 bytes a row again)
    extra = int(np.count_nonzero(ids[1:] == ids[:-1])) if len(ids) > 1 else 0
    del ids
    if extra and len(results) > 1:
        report.fail(f"utterance_id not unique across parts: {extra} id(s) in two parts")
    for problem in leakage.check([r.reductions for r in results], key_rows):
        report.fail(problem)
    report.passed("utterance ids unique; no segment or speaker leakage between splits")


def _key_rows(paths: ReleasePaths, layout: str, indexes: list[int], spec: dict, kind: str) -> Iterator[pd.DataFrame]:
    """Each part's (key, split) rows of `kind` (segment keys or speakers), read again to name a leak."""
    from manifests.io import read_table
    from manifests.parts import part_uri, read_part

    for i in indexes:
        uri = paths.manifest(UTTERANCES) if layout == "1" else part_uri(paths.root, UTTERANCES, i)
        table = read_table(uri) if layout == "1" else read_part(uri)
        wanted = ["segment_key", "split"] if kind == "segment_splits" else ["source", "speaker_id", "split",
                                                                             "split_origin"]
        utt = table.select([c for c in wanted if c in table.schema.names]).to_pandas()
        yield (pd.DataFrame({"key": utt["segment_key"], "split": utt["split"]}) if kind == "segment_splits"
               else speaker_rows(utt, spec))


def _check_asr_balance(results: list[PartCheck], spec: dict, report: ValidationReport) -> None:
    """Balanced splits: uniform over sentiment, the method's per-class count, the source cap."""
    balance = spec.get("balance") or {}
    balanced = list(balance.get("splits", ["train"]))
    method = balance.get("method", "undersample")
    share = float(balance.get("max_source_share", 1.0))
    rows, pool = _merged(results, "asr_rows"), _merged(results, "asr_pool")
    for split in balanced:
        counts = {c: rows[(split, c)] for c in SENTIMENTS if rows[(split, c)]}
        if counts and max(counts.values()) != min(counts.values()):
            report.fail(f"asr_stage {split} split is not uniform over sentiment: {counts}")
    report.passed("ASR targets well formed; balanced splits uniform")
    for split in SPLITS:
        if split not in balanced:
            continue
        present = {c: pool[(split, c)] for c in SENTIMENTS if pool[(split, c)] > 0}
        counts = {c: rows[(split, c)] for c in SENTIMENTS}
        if balance.get("on_missing_class") == "error" and sum(counts.values()) and len(present) < len(SENTIMENTS):
            report.fail(f"asr_stage {split}: classes {[c for c in SENTIMENTS if c not in present]} are empty but "
                        f"balance.on_missing_class is error")
        if not present:
            continue
        target = {"undersample": min(present.values()), "oversample": max(present.values())}.get(
            method, balance.get("target_per_class"))
        off = {c: counts[c] for c in present if target is not None and counts[c] != int(target)}
        if off:
            report.fail(f"asr_stage {split}: balance.method {method} means {target} rows per class "
                        f"(eligible: {present}); found {counts}")
        if share < 1.0:
            _check_source_cap(results, split, share, report)


def _check_source_cap(results: list[PartCheck], split: str, share: float, report: ValidationReport) -> None:
    """A source above the cap is allowed only when every other source gave all it had."""
    rows, used, have = _merged(results, "asr_rows"), _merged(results, "asr_source_rows"), _merged(results, "asr_source_pool")
    for cls in SENTIMENTS:
        if not rows[(split, cls)]:
            continue
        cap = rules.source_cap(rows[(split, cls)], share)
        distinct = {k[2]: n for k, n in used.items() if k[:2] == (split, cls)}
        avail = {k[2]: n for k, n in have.items() if k[:2] == (split, cls)}
        for source, n in sorted(distinct.items()):
            if n <= cap:
                continue
            short = [s for s in sorted(avail) if s != source and distinct.get(s, 0) < avail[s]]
            if short:
                report.fail(f"asr_stage {split} {cls}: source {source} gives {n} utterances, above max_source_share "
                            f"{share:g} (cap {cap}) while {_examples(short)} had unused eligible items")


def _check_weights(results: list[PartCheck], spec: dict, report: ValidationReport) -> None:
    """Per split over speech windows: one weight per class, mean 1, and the rule's weights."""
    ranges: dict[tuple[str, str], list[float]] = {}
    for result in results:
        for key, (n, total, low, high) in (result.reductions.get("weights") or {}).items():
            have = ranges.setdefault(key, [0, 0.0, low, high])
            have[0] += n
            have[1] += total
            have[2], have[3] = min(have[2], low), max(have[3], high)
    weights = spec.get("weights") or {}
    power = float(weights.get("power", 1.0))
    max_weight = weights.get("max_weight")
    for split in sorted({s for s, _ in ranges}):
        per_class = {c: v for (s, c), v in ranges.items() if s == split}
        n_all = sum(v[0] for v in per_class.values())
        mean_w = sum(v[1] for v in per_class.values()) / n_all
        if abs(mean_w - 1.0) > 1e-6:
            report.fail(f"classifier_stage {split}: mean class_weight over speech windows is {mean_w:.6f}, not 1")
        if any(v[3] - v[2] > 1e-9 * max(1.0, abs(v[3])) for v in per_class.values()):
            report.fail(f"classifier_stage {split}: several class_weight values within one class")
        if max_weight is None:
            products = [v[2] * (v[0] / n_all) ** power for v in per_class.values()]
            if max(products) - min(products) > 1e-6 * max(1.0, max(products)):
                report.fail(f"classifier_stage {split}: class_weight x frequency^{power:g} is not constant "
                            f"(range {min(products):.6f}..{max(products):.6f})")
        counts = {c: int(v[0]) for c, v in per_class.items()}
        expected = rules.class_weights(counts, power, None if max_weight is None else float(max_weight))
        rule = f"(1/frequency)^{power:g}" + ("" if max_weight is None else f" capped at {float(max_weight):g}")
        for cls, want in sorted(expected.items()):
            low, high = per_class[cls][2], per_class[cls][3]
            if max(abs(low - want), abs(high - want)) > 1e-6 * max(1.0, want):
                report.fail(
                    f"classifier_stage {split}: class_weight of {cls} windows is {low:.6f}, the rule "
                    f"{rule} with mean 1 over {n_all} speech windows gives {want:.6f}"
                )
    report.passed("speech presence and class weights follow the contract")

