"""The dataset card as Markdown, for a person: warnings, a one-screen summary, then the tables.

Order: warnings (every guard record, whatever stage raised it, plus the card's derived ones) ->
summary -> hours per source x split x class -> sources -> rejects -> label origins and labeler
agreement -> stages -> cross-sections -> plots -> how to use. Durations read h:mm:ss. Machine-only
detail (balancing plans, eligibility rules, lineage, ...) stays in dataset_card.json; the card
ends with a list of those sections instead of flattening them into key/value rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from manifests.schema import SENTIMENTS
from tasks.publish.card_common import (
    CROSS_SECTION_COLUMNS,
    EXTRA_SECTIONS,
    EXTRA_TITLES,
    FRONT_SECTIONS,
    cell,
    fmt_hms,
    matrix,
    pct,
    split_items,
    table,
)

# Sections rendered as tables of their own below; everything else is listed as JSON-only.
_RENDERED_EXTRAS: frozenset[str] = frozenset({"sentiment_agreement", "transcript_quality", "timings"})
CORE_KEYS: frozenset[str] = frozenset(
    {
        "name", "release", "built_at", "seed", "spec", "class_index", "counts", "rejects", "utterances",
        "asr_stage", "classifier_stage", "cross_sections", "leakage", "hours", "schema_version",
        "content_sha256",
    }
)


def loud_guards(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The guard records a person must read first (errors, then warnings)."""
    return [r for r in card.get("guards") or [] if r.get("level") in ("error", "warning")]


def render_warnings(card: Mapping[str, Any]) -> str:
    """Warnings as a short Markdown list ("No warnings." when none), for the Prefect artifact."""
    loud = loud_guards(card)
    if not loud:
        return "No warnings."
    return "\n".join(f"- **{r['level'].upper()} `{r['guard']}`**: {r['message']}" for r in loud)


def _render_guards(records: list[dict[str, Any]]) -> list[str]:
    """Warnings first and loud; guards that acted as documented (infos) in a short table after them."""
    out: list[str] = []
    loud = [r for r in records if r.get("level") in ("error", "warning")]
    if loud:
        out += ["", "## ⚠ Warnings", ""]
        out += [f"- **{r['level'].upper()} `{r['guard']}`**: {r['message']}" for r in loud]
    quiet = [r for r in records if r.get("level") == "info"]
    if quiet:
        out += ["", "## Guards that acted", "", table(["guard", "what happened"],
                                                      [[f"`{r['guard']}`", r["message"]] for r in quiet])]
    return out


def _example_line(example: Mapping[str, Any], max_chars: int = 300) -> str:
    detail = str(example.get("detail") or "")
    detail = detail if len(detail) <= max_chars else detail[: max_chars - 3] + "..."
    return f"  - {example.get('source')}: `{example.get('input_ref')}` ({example.get('reason')}): {detail}"


def render_summary(card: dict[str, Any], examples_below: bool = False, max_examples: int = 0) -> str:
    """A few sentences: where the data came from, how much, which classes, what was rejected and why.

    Reject examples: `examples_below` when the caller prints the card's examples table after the
    summary (the Markdown card); else up to `max_examples` of them are listed under the Rejected line
    (the console), or, with 0, the summary points at the dataset card.
    """
    counts, totals = card["counts"]["sources"], card["counts"]["totals"]
    utt, asr, clf, rej = card["utterances"], card["asr_stage"], card["classifier_stage"], card["rejects"]
    classes = ", ".join(f"{k} = {v}" for k, v in card["class_index"].items())
    kinds = {src["name"]: src["kind"] for src in card.get("spec", {}).get("sources", [])}
    sources = ", ".join(
        f"{n}"
        + (f" [{kinds[n]}]" if n in kinds else "")
        + f" ({s['accepted']} utterances, {fmt_hms(s['hours'])})"
        for n, s in counts.items()
    )
    loud = loud_guards(card)
    lines = [f"- **Warnings**: {len(loud)} ({', '.join(dict.fromkeys(r['guard'] for r in loud))}); "
             "read them first."] if loud else []
    lines += [
        f"- **Sources**: {sources or 'none'}.",
        f"- **Accepted**: {totals['accepted']} of {totals['found']} found items, {fmt_hms(totals['hours'])}; "
        f"splits: "
        + ", ".join(f"{s} {v['count']} ({fmt_hms(v['hours'])})" for s, v in split_items(utt["by_split"]))
        + ".",
        f"- **Classes** (class index): {classes}.",
    ]
    if rej["total"]:
        reasons = ", ".join(f"{r} {n}" for r, n in rej["by_reason"].items())
        examples = list(rej.get("examples") or [])[:max_examples] if not examples_below else []
        if examples_below:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); examples below.")
        elif examples:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); for example:")
            lines += [_example_line(e) for e in examples]
        else:
            lines.append(f"- **Rejected**: {rej['total']} items ({reasons}); examples in the dataset card (Rejects).")
    else:
        lines.append("- **Rejected**: none.")
    balanced = {True: "balanced", False: "NOT balanced", None: "empty"}[asr["train_balanced"]]
    lines.append(
        f"- **ASR stage**: {asr['rows']} rows ({fmt_hms(asr['hours'])}), train split {balanced}; "
        f"{totals['excluded_from_asr']} accepted utterances left out by sampling or eligibility."
    )
    both_empty = bool(asr.get("empty_reason")) and asr.get("empty_reason") == clf.get("empty_reason")
    if both_empty:
        lines.append(f"- **Both stages are empty**: {asr['empty_reason']}.")
    elif asr.get("empty_reason"):
        lines.append(f"- **ASR stage is empty**: {asr['empty_reason']}.")
    eligibility = card.get("eligibility") or {}
    ineligible = {
        stage: int(((eligibility.get(stage) or {}).get("total")) or 0) for stage in ("asr", "classifier")
    }
    if any(ineligible.values()):
        lines.append(
            f"- **Eligibility**: {ineligible['asr']} utterances excluded from the ASR stage and "
            f"{ineligible['classifier']} from the classifier stage by label-origin rules (exclusions, not rejects)."
        )
    lines.append(
        f"- **Classifier stage**: {clf['windows']} windows ({clf['speech']['speech']} speech, "
        f"{clf['speech']['non_speech']} non-speech)."
    )
    if clf.get("empty_reason") and not both_empty:
        lines.append(f"- **Classifier stage has no utterance windows**: {clf['empty_reason']}.")
    for name, src in counts.items():
        lines += [f"- **Note** ({name}): {note}" for note in src.get("notes") or []]
    leak = card.get("leakage")
    if leak:
        lines.append(
            f"- **Leakage**: {leak['duplicate_segments_resolved']} duplicate segments resolved "
            f"(`duplicate_segment` rejects); {leak['segment_keys_in_two_splits']} segment keys in two splits."
        )
    bad = [n for n, s in counts.items() if not s["accounted"]]
    if bad:
        lines.append(f"- **WARNING**: found != accepted + rejected for: {', '.join(bad)}.")
    else:
        lines.append("- Every found item is accounted for (found = accepted + rejected per source).")
    return "\n".join(lines)


_HOW_TO_USE = """\
- Read the manifests with `manifests/` (the reference reader); class index: negative = 0,
  neutral = 1, positive = 2. Two releases are equal when their `content_sha256` are equal.
- **ASR stage**: train on `target_text` (sentiment word, a space, the transcript). The train split is
  sampled to a uniform sentiment distribution; dev and test keep their natural distribution.
- **Classifier stage**: each row is a window (`start_s`..`end_s` in utterance time). Use
  `class_weight` **either** as a per-sample weight in the loss **or** as the weights of a weighted
  sampler, **not both** (that corrects the imbalance twice and over-favours rare classes).
  Non-speech windows have a null `sentiment`, `speech_present = false` and weight 1.0: use them for the
  speech-presence head and mask them out of the sentiment loss.
- **`recipe_applied`**: true means `audio_uri` is already the augmented audio: read it as is and do
  not apply the recipe again. False means `audio_uri` is the clean source: apply the recipe
  (`speed`, `rir_id`, `noise_id`, `snr_db`, `gain`, `aug_seed`) on the fly with
  `manifests.augmentation`, or use the clean audio. SpecAugment (see Augmentation) is always applied
  in the training job, never stored. A relative `audio_uri` (`audio/...`) is relative to this release's
  folder, wherever it now lies (`manifests.release.open_release` resolves it). A relative `audio_uri` (`audio/...`) is relative to this release's
  folder, wherever it now lies (`manifests.release.open_release` resolves it).
- Groups marked *small* in the cross-sections have fewer rows than the card's `min_group_size`:
  per-group metrics on them are noise."""




def _hours_table(card: Mapping[str, Any]) -> list[str]:
    """Hours of accepted audio per source x split, one column per class (h:mm:ss)."""
    data = ((card.get("hours") or {}).get("by_source_split_sentiment")) or {}
    if not data:
        return []
    classes = list(SENTIMENTS) + sorted({c for sp in data.values() for cl in sp.values() for c in cl} - set(SENTIMENTS))
    rows = []
    for source, splits in data.items():
        for split, by_class in split_items(splits):
            rows.append([source, split] + [fmt_hms(by_class.get(c, 0.0)) for c in classes]
                        + [fmt_hms(sum(by_class.values()))])
    return ["## Hours per source, split and class", "",
            "Accepted utterances, h:mm:ss.", "", table(["source", "split", *classes, "total"], rows), ""]


def _sources(card: Mapping[str, Any]) -> list[str]:
    counts = card["counts"]
    rows = [[n, s["found"], s["accepted"], s["rejected"], s["excluded_from_asr"], s.get("excluded_from_classifier"),
             fmt_hms(s["hours"]), s["accounted"]] for n, s in counts["sources"].items()]
    t = counts["totals"]
    rows.append(["**total**", t["found"], t["accepted"], t["rejected"], t["excluded_from_asr"],
                 t.get("excluded_from_classifier"), fmt_hms(t["hours"]), t["accounted"]])
    out = ["## Sources", "",
           table(["source", "found", "accepted", "rejected", "excluded from ASR", "excluded from classifier",
                  "hours", "accounted"], rows), ""]
    inputs = card.get("spec", {}).get("sources", [])
    if inputs:
        out += ["Inputs:", ""]
        out += [f"- `{src['name']}`: {src['kind']} corpus at `{src['path']}`" for src in inputs]
        out += [""]
    notes = [(n, note) for n, s in counts["sources"].items() for note in s.get("notes") or []]
    if notes:
        out += ["Notes:", ""]
        out += [f"- `{n}`: {note}" for n, note in notes]
        out += [""]
    return out


def _rejects(card: Mapping[str, Any]) -> list[str]:
    rej = card["rejects"]
    out = ["## Rejects", ""]
    if not rej["total"]:
        return out + ["No rejects.", ""]
    reasons = list(rej["by_reason"])
    out += [table(["source"] + reasons + ["total"],
                  [[s] + [r.get(k, 0) for k in reasons] + [sum(r.values())]
                   for s, r in rej["by_source_reason"].items()]), "", "Examples:", ""]
    out += [table(["source", "input_ref", "reason", "detail"],
                  [[e["source"], e["input_ref"], e["reason"], e["detail"]] for e in rej["examples"]]), ""]
    return out


def _origin_list(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "–"


def _labels_section(card: Mapping[str, Any]) -> list[str]:
    """Where the labels came from, per source, and how far the pseudo-labelers agree with people."""
    groups = (card.get("cross_sections") or {}).get("source") or {}
    out = ["## Label origins and labeler agreement", ""]
    if groups:
        rows = [[g, v["count"], _origin_list((v.get("label_origin") or {}).get("sentiment", {}).get("by_origin", {})),
                 _origin_list((v.get("label_origin") or {}).get("transcript", {}).get("by_origin", {}))]
                for g, v in groups.items()]
        out += [table(["source", "utterances", "sentiment origin", "transcript origin"], rows), ""]
    agreement = card.get("sentiment_agreement") or {}
    labelers = agreement.get("labelers") if isinstance(agreement, Mapping) else None
    if isinstance(labelers, Mapping) and labelers:
        in_use = agreement.get("labeler_in_use")
        out += [f"Sentiment labelers scored on held-out human labels (dev and test; labeler in use: "
                f"`{in_use}`):", ""]
        rows = []
        for name, result in labelers.items():
            for source, sc in {"all": result.get("overall") or {}, **(result.get("per_source") or {})}.items():
                rows.append([name, source, sc.get("n"), sc.get("accuracy"), sc.get("macro_f1"), sc.get("coverage")])
        out += [table(["labeler", "source", "n", "accuracy", "macro-F1", "coverage"], rows), ""]
        tvv = agreement.get("trained_vs_vader")
        if isinstance(tvv, Mapping):
            out += [f"Trained classifier vs VADER: **{tvv.get('winner')}** wins "
                    f"(macro-F1 {cell(tvv.get('macro_f1'))}).", ""]
    elif isinstance(agreement, Mapping) and agreement.get("reason"):
        out += [f"Sentiment agreement not measured: {agreement['reason']}.", ""]
    quality = card.get("transcript_quality") or {}
    if isinstance(quality, Mapping) and quality.get("sources"):
        rows = [[s, q.get("utterances"), q.get("hypotheses"), q.get("wer")] for s, q in quality["sources"].items()]
        overall = quality.get("overall") or {}
        rows.append(["**all**", overall.get("utterances"), overall.get("hypotheses"), overall.get("wer")])
        out += ["Pseudo-transcripts against human transcripts (word error rate, sampled rows):", "",
                table(["source", "sampled", "transcribed", "WER"], rows), ""]
    return out


def _utterances(card: Mapping[str, Any]) -> list[str]:
    utt = card["utterances"]
    d = utt["duration_s"]
    return ["## Utterances", "",
            table(["split", "utterances", "hours"], [[s, v["count"], fmt_hms(v["hours"])]
                                                     for s, v in split_items(utt["by_split"])]), "",
            "Sentiment by split:", "", matrix("split", utt["sentiment_by_split"]), "",
            f"Duration (s): min {cell(d['min'])}, median {cell(d['median'])}, mean {cell(d['mean'])}, "
            f"max {cell(d['max'])}.", ""]


def _stages(card: Mapping[str, Any]) -> list[str]:
    asr, clf = card["asr_stage"], card["classifier_stage"]
    out = ["## ASR stage", "",
           f"{asr['rows']} rows, {fmt_hms(asr['hours'])}, {asr['recipe_applied']} with recipe applied."
           + (f" **Empty**: {asr['empty_reason']}." if asr.get("empty_reason") else ""), "",
           matrix("split", asr["by_split_sentiment"]), "",
           "Source x sentiment (look for confounds: a source that carries one class):", "",
           matrix("source", asr["by_source_sentiment"]), "",
           "## Classifier stage", "",
           f"{clf['windows']} windows ({fmt_hms(clf['valid_hours'])} of real audio)."
           + (f" **No utterance windows**: {clf['empty_reason']}." if clf.get("empty_reason") else ""), "",
           matrix("split", clf["by_split_sentiment"]), ""]
    if clf["class_weights"]:
        classes = list(dict.fromkeys(c for w in clf["class_weights"].values() for c in w))
        out += ["Class weights (speech windows):", "",
                table(["split"] + classes, [[s] + [w.get(c) for c in classes] for s, w in clf["class_weights"].items()]),
                ""]
    return out


def _cross_sections(card: Mapping[str, Any]) -> list[str]:
    cross = card["cross_sections"]
    out = ["## Cross-sections", "", f"Groups with fewer than {cross['min_group_size']} utterances are marked small. "
           "*human sentiment* counts human and mapped-emotion labels, *human transcript* human transcripts; "
           "the rest are pseudo-labels.", ""]
    for column in CROSS_SECTION_COLUMNS:
        groups = cross.get(column, {})
        with_agreement = any("agreement" in v for v in groups.values())
        rows = []
        for g, v in groups.items():
            origin = v.get("label_origin") or {}
            row = [g, v["count"], fmt_hms(v["hours"])] + [v["sentiment"].get(s, 0) for s in SENTIMENTS]
            row += [pct((origin.get("sentiment") or {}).get("human", 0), v["count"]),
                    pct((origin.get("transcript") or {}).get("human", 0), v["count"])]
            row += [v.get("agreement")] if with_agreement else []
            rows.append(row + [v["small"]])
        header = [column, "utterances", "hours", *SENTIMENTS, "human sentiment", "human transcript"]
        header += ["agreement"] if with_agreement else []
        out += [f"### By {column}", "", table(header + ["small"], rows), ""]
    return out


def _leakage(card: Mapping[str, Any]) -> list[str]:
    leak = card.get("leakage")
    if not leak:
        return []
    by_source = ", ".join(f"{k} {n}" for k, n in leak["duplicates_by_source"].items())
    return ["## Leakage", "",
            f"- Duplicate segments resolved: {leak['duplicate_segments_resolved']}"
            + (f" ({by_source})" if by_source else "")
            + f"; segment keys in two splits: {leak['segment_keys_in_two_splits']}.",
            f"- Rule: {leak['rule']}.", f"- Limitation: {leak['limitation']}.", ""]


def _json_only(card: Mapping[str, Any]) -> list[str]:
    """The sections kept for machines: named, with where to find them, not flattened into rows."""
    keys = [k for k in EXTRA_SECTIONS if k in card and k not in _RENDERED_EXTRAS]
    keys += [k for k in card if k not in EXTRA_SECTIONS and k not in CORE_KEYS and k not in FRONT_SECTIONS]
    timings = card.get("timings")
    out: list[str] = []
    if isinstance(timings, Mapping) and timings:
        out += ["## Timings (seconds per stage)", "", table(["stage", "seconds"], [[k, v] for k, v in timings.items()]),
                ""]
    if keys:
        out += ["## More in dataset_card.json", "",
                "Detail for tools and audits (read it with `voicetone stats DIR --json`):", ""]
        out += [f"- `{k}`: {EXTRA_TITLES.get(k, k.replace('_', ' ').capitalize())}" for k in keys]
        out += [""]
    return out


def render_markdown(card: dict[str, Any], plot_files: list[str], report_html: str | None = None) -> str:
    """The card as Markdown: warnings, summary, tables, plots (relative `plots/` links) and usage.

    `report_html`: the HTML report's file name next to the card, linked from the top when given.
    """
    out = [f"# Dataset card: {card['name']}", ""]
    header = [("release", card.get("release")), ("built at (UTC)", card.get("built_at")), ("seed", card.get("seed"))]
    for key in ("schema_version", "content_sha256"):
        if key in card:
            header.append((key, f"`{card[key]}`" if key == "content_sha256" else card[key]))
    out += [f"- **{k}**: {v}" for k, v in header]
    if report_html:
        out += [f"- **report**: [{report_html}]({report_html}) (plots, tables and audio samples to listen to)"]
    out += _render_guards(card.get("guards") or [])
    if not loud_guards(card):
        out += ["", "## Warnings", "", "None: no guard fired."]
    out += ["", "## Summary", "", render_summary(card, examples_below=True), ""]
    out += _hours_table(card)
    out += _sources(card)
    out += _rejects(card)
    out += _labels_section(card)
    out += _utterances(card)
    out += _stages(card)
    out += _cross_sections(card)
    out += _leakage(card)
    if plot_files:
        out += ["## Plots", ""]
        out += [f"![{Path(p).stem.replace('_', ' ')}](plots/{Path(p).name})" for p in plot_files]
        out += [""]
    out += ["## How to use", "", _HOW_TO_USE, ""]
    out += _json_only(card)
    return "\n".join(out)
