"""`report.html`: one self-contained page to judge a release in two minutes, and to listen to it.

CSS and plots are inline (base64 PNG); audio is referenced by paths relative to the release root
(`report_audio/*.wav`, written by `tasks.publish.samples`), so the release folder can be served or
copied as is. `embed_audio` inlines the first clips as data URIs (a page to mail); for a release on
S3, `presign_s` gives the players presigned URLs instead. Every count cell carries
`data-card="<dotted path into dataset_card.json>"`, so a test can check the page against the card.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from manifests import uri as fs
from manifests.release import Release, open_release
from manifests.schema import SENTIMENTS
from tasks.publish import samples as rs
from tasks.publish.card_common import fmt_hms, split_items
from tasks.publish.colors import class_colour, origin_colour
from tasks.publish.markdown import loud_guards
from tasks.publish.plots import make_plots_from_aggregates

REPORT_FILE = "report.html"
_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:0 24px 48px}
header{background:#1f2d3d;color:#fff;padding:18px 24px}header h1{margin:0 0 4px;font-size:24px}
header .meta{opacity:.8;font-size:13px}nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;
padding:8px 24px;z-index:2;font-size:14px}nav a{margin-right:14px;color:#1f5f99;text-decoration:none}
h2{margin:28px 0 10px;border-bottom:2px solid #e3e3e3;padding-bottom:4px}
.warn{border-left:6px solid #d55e00;background:#fff1e6;padding:8px 12px;margin:6px 0;border-radius:4px}
.warn.error{border-color:#b00020;background:#fde7ea}.ok{border-left:6px solid #009e73;background:#e6f6f0;
padding:8px 12px;border-radius:4px}.info{color:#555;font-size:13px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.fact{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 12px}
.fact b{display:block;font-size:22px}.fact span{color:#666;font-size:13px}.fact .chip{color:#fff;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px;font-size:14px}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f3f6}figure{margin:12px 0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:8px}
figure img{max-width:100%;height:auto}.chip{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;
font-size:12px;margin-right:4px}.samples{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
.sample{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px}.sample audio{width:100%;height:34px}
.sample .lbl{font-size:12px;color:#666;margin-top:4px}.sample code{font-size:12px;word-break:break-all}
.q{font-style:italic}details{margin:6px 0}
"""


def _e(value: Any) -> str:
    return html.escape("–" if value is None else str(value))


def _num(value: Any, path: str | None = None) -> str:
    attr = f' data-card="{_e(path)}"' if path else ""
    shown = f"{value:.3g}" if isinstance(value, float) else value
    return f'<td class="n"{attr}>{_e(shown)}</td>'


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _chip(text: str, colour: str) -> str:
    return f'<span class="chip" style="background:{colour}">{_e(text)}</span>'


def _warnings(card: Mapping[str, Any]) -> str:
    loud = loud_guards(card)
    infos = [r for r in card.get("guards") or [] if r.get("level") == "info"]
    parts = [f'<div class="warn {_e(r["level"])}"><b>{_e(r["level"].upper())} <code>{_e(r["guard"])}</code></b>: '
             f'{_e(r["message"])}</div>' for r in loud] or ['<div class="ok">No warnings: every guard passed.</div>']
    bad = [n for n, s in card["counts"]["sources"].items() if not s.get("accounted")]
    if bad:
        parts.insert(0, f'<div class="warn error"><b>found ≠ accepted + rejected</b> for: {_e(", ".join(bad))}</div>')
    if infos:
        rows = [f"<tr><td><code>{_e(r['guard'])}</code></td><td>{_e(r['message'])}</td></tr>" for r in infos]
        parts.append(f"<details><summary>{len(infos)} guard(s) acted as documented</summary>"
                     f"{_table(['guard', 'what happened'], rows)}</details>")
    return "".join(parts)


def _facts(card: Mapping[str, Any]) -> str:
    t, utt = card["counts"]["totals"], card["utterances"]
    asr, clf, rej = card["asr_stage"], card["classifier_stage"], card["rejects"]
    splits = ", ".join(f"{s} {v['count']}" for s, v in split_items(utt["by_split"])) or "–"
    balanced = {True: "train balanced", False: "train NOT balanced", None: "empty"}[asr.get("train_balanced")]
    facts = [
        (f'<b data-card="counts.totals.hours">{fmt_hms(t["hours"])}</b>', "accepted audio (h:mm:ss)"),
        (f'<b data-card="counts.totals.accepted">{t["accepted"]}</b>', f"utterances accepted of {t['found']} found"),
        (f"<b>{len(card['counts']['sources'])}</b>", "sources: " + _e(", ".join(card["counts"]["sources"]))),
        (f"<b>{_e(splits)}</b>", "utterances per split"),
        (f"<b>{len(card['class_index'])} classes</b>",
         " ".join(_chip(f"{k}={v}", class_colour(k)) for k, v in card["class_index"].items())),
        (f'<b data-card="asr_stage.rows">{asr["rows"]}</b>', f"ASR rows, {fmt_hms(asr['hours'])}, {balanced}"),
        (f'<b data-card="classifier_stage.windows">{clf["windows"]}</b>',
         f"classifier windows ({clf['speech']['speech']} speech, {clf['speech']['non_speech']} non-speech)"),
        (f'<b data-card="rejects.total">{rej["total"]}</b>',
         "rejected: " + _e(", ".join(f"{r} {n}" for r, n in rej["by_reason"].items()) or "none")),
        (f"<b>{len(loud_guards(card))}</b>", "warnings"),
    ]
    return '<div class="facts">' + "".join(f'<div class="fact">{v}<span>{label}</span></div>'
                                           for v, label in facts) + "</div>"


def _sources(card: Mapping[str, Any]) -> str:
    cols = ("found", "accepted", "rejected", "excluded_from_asr", "excluded_from_classifier")
    rows = []
    for name, s in {**card["counts"]["sources"], "total": card["counts"]["totals"]}.items():
        base = "counts.totals" if name == "total" else f"counts.sources.{name}"
        rows.append(f"<tr><td>{_e(name)}</td>" + "".join(_num(s.get(c), f"{base}.{c}") for c in cols)
                    + f'<td class="n">{fmt_hms(s["hours"])}</td><td>{"yes" if s["accounted"] else "NO"}</td></tr>')
    return _table(["source", "found", "accepted", "rejected", "excluded from ASR", "excluded from classifier",
                   "hours", "accounted"], rows)


def _hours(card: Mapping[str, Any]) -> str:
    data = (card.get("hours") or {}).get("by_source_split_sentiment") or {}
    rows = [f"<tr><td>{_e(src)}</td><td>{_e(sp)}</td>"
            + "".join(f'<td class="n">{fmt_hms(cl.get(c, 0.0))}</td>' for c in SENTIMENTS)
            + f'<td class="n">{fmt_hms(sum(cl.values()))}</td></tr>'
            for src, splits in data.items() for sp, cl in split_items(splits)]
    return _table(["source", "split", *SENTIMENTS, "total"], rows) if rows else "<p>No accepted audio.</p>"


def _rejects(card: Mapping[str, Any]) -> str:
    rej = card["rejects"]
    if not rej["total"]:
        return "<p>No rejects.</p>"
    reasons = list(rej["by_reason"])
    rows = [f"<tr><td>{_e(s)}</td>" + "".join(_num(r.get(k, 0)) for k in reasons) + _num(sum(r.values())) + "</tr>"
            for s, r in rej["by_source_reason"].items()]
    ex = [f"<tr><td>{_e(e['source'])}</td><td><code>{_e(e['input_ref'])}</code></td><td>{_e(e['reason'])}</td>"
          f"<td>{_e(e['detail'])}</td></tr>" for e in rej.get("examples") or []]
    return (_table(["source", *reasons, "total"], rows)
            + f"<details><summary>{len(ex)} examples</summary>{_table(['source', 'input', 'reason', 'detail'], ex)}"
            "</details>")


def _labels(card: Mapping[str, Any]) -> str:
    groups = (card.get("cross_sections") or {}).get("source") or {}
    rows = []
    for g, v in groups.items():
        lo = v.get("label_origin") or {}
        cells = []
        for kind in ("sentiment", "transcript"):
            by = (lo.get(kind) or {}).get("by_origin") or {}
            cells.append(" ".join(_chip(f"{o} {n}", origin_colour(o)) for o, n in by.items()))
        rows.append(f"<tr><td>{_e(g)}</td>{_num(v['count'])}<td>{cells[0]}</td><td>{cells[1]}</td></tr>")
    out = _table(["source", "utterances", "sentiment origin", "transcript origin"], rows)
    agreement = card.get("sentiment_agreement") or {}
    labelers = agreement.get("labelers") if isinstance(agreement, Mapping) else None
    if isinstance(labelers, Mapping) and labelers:
        arows = [f"<tr><td>{_e(n)}</td><td>{_e(s)}</td>{_num(sc.get('n'))}{_num(sc.get('accuracy'))}"
                 f"{_num(sc.get('macro_f1'))}{_num(sc.get('coverage'))}</tr>"
                 for n, r in labelers.items()
                 for s, sc in {"all": r.get("overall") or {}, **(r.get("per_source") or {})}.items()]
        out += (f"<p>Sentiment labelers against held-out human labels (labeler in use: "
                f"<code>{_e(agreement.get('labeler_in_use'))}</code>):</p>"
                + _table(["labeler", "source", "n", "accuracy", "macro-F1", "coverage"], arows))
    elif isinstance(agreement, Mapping) and agreement.get("reason"):
        out += f"<p>Sentiment agreement not measured: {_e(agreement['reason'])}.</p>"
    quality = card.get("transcript_quality") or {}
    if isinstance(quality, Mapping) and quality.get("sources"):
        qrows = [f"<tr><td>{_e(s)}</td>{_num(q.get('utterances'))}{_num(q.get('wer'))}</tr>"
                 for s, q in quality["sources"].items()]
        out += "<p>Pseudo-transcripts against human transcripts:</p>" + _table(["source", "sampled", "WER"], qrows)
    return out


def _plots(release: Release, aggregates: Mapping[str, Any]) -> str:
    """The card's plots inline, drawn from the parts' merged aggregates (`report_scan.scan_release`)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = make_plots_from_aggregates(release.card, aggregates, tmp)
        figs = []
        for f in files:
            data = base64.b64encode(Path(f).read_bytes()).decode()
            title = Path(f).stem.replace("_", " ")
            figs.append(f'<figure><img alt="{_e(title)}" src="data:image/png;base64,{data}"></figure>')
    return "".join(figs) or "<p>No plots: the release holds no rows.</p>"


def _audio(clip: rs.Clip | None, srcs: Mapping[str, str], label: str) -> str:
    if clip is None:
        return ""
    if clip.error:
        return f'<div class="lbl">{_e(label)}: {_e(clip.error)}</div>'
    return (f'<div class="lbl">{_e(label)} ({clip.seconds:.1f} s)</div>'
            f'<audio controls preload="metadata" src="{_e(srcs[clip.rel])}"></audio>')


def _sample(s: rs.Sample, srcs: Mapping[str, str]) -> str:
    r = s.row
    probs = ", ".join(f"{c[:3]} {r[f'p_{c}']:.2f}" for c in SENTIMENTS if r.get(f"p_{c}") is not None)
    conf = r.get("sentiment_confidence")
    recipe = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in rs.recipe(r).items())
    return (f'<div class="sample">{_chip(s.sentiment, class_colour(s.sentiment))}'
            f'{_chip(s.origin, origin_colour(s.origin))}<b>{_e(s.source)}</b> · {_e(r.get("split"))}'
            + _audio(s.clips.get("clean"), srcs, "clean")
            + (_audio(s.clips.get("augmented"), srcs, "augmented (what the ASR model hears)")
               if "augmented" in s.clips else '<div class="lbl">no augmentation on this row</div>')
            + f'<div class="lbl">transcript ({_e(r.get("transcript_origin"))})</div><div class="q">'
            f'{_e(r.get("transcript"))}</div>'
            + (f'<div class="lbl">target_text</div><code>{_e(r.get("target_text"))}</code>' if r.get("target_text")
               else "")
            + (f'<div class="lbl">pseudo-label confidence</div>{_e(probs)}'
               + (f" (confidence {conf:.2f})" if conf is not None else "") if probs or conf is not None else "")
            + (f'<div class="lbl">recipe</div><code>{_e(recipe)}</code>' if recipe else "")
            + f'<div class="lbl"><code>{_e(r.get("row_id") or r.get("utterance_id"))}</code></div></div>')


def _disagreement(d: Mapping[str, Any], srcs: Mapping[str, str]) -> str:
    what = (f"human <b>{_e(d['human'])}</b> vs {_e(d['labeler'])} <b>{_e(d['pseudo'])}</b>"
            if d["kind"] == "sentiment" else
            f"WER {d['score']:.2f}<br>human: <span class='q'>{_e(d['human'])}</span><br>"
            f"{_e(d['labeler'])}: <span class='q'>{_e(d['pseudo'])}</span>")
    return (f'<div class="sample">{_chip(d["kind"], "#555")}<b>{_e(d["source"])}</b> · {_e(d.get("split"))}'
            f'<div>{what}</div>' + _audio(d.get("clip"), srcs, "clean")
            + f'<div class="lbl"><code>{_e(d["utterance_id"])}</code></div></div>')


def render_html(release: Release, samples: list[rs.Sample], disagreements: list[dict[str, Any]],
                srcs: Mapping[str, str], aggregates: Mapping[str, Any]) -> str:
    """The page; `aggregates` are the plots' merged partial aggregates (`report_scan.scan_release`)."""
    card = release.card
    groups: dict[tuple[str, str], list[str]] = {}
    for s in samples:
        groups.setdefault((s.source, s.sentiment), []).append(_sample(s, srcs))
    sample_html = "".join(f"<h3>{_e(src)} · {_chip(c, class_colour(c))}</h3><div class='samples'>{''.join(v)}</div>"
                          for (src, c), v in groups.items()) or "<p>No samples.</p>"
    dis_html = ("<div class='samples'>" + "".join(_disagreement(d, srcs) for d in disagreements) + "</div>"
                if disagreements else "<p>No pseudo-label disagrees with a human label in the scored rows.</p>")
    sections = [
        ("warnings", "Warnings", _warnings(card)),
        ("summary", "At a glance", _facts(card)),
        ("hours", "Hours per source, split and class (h:mm:ss)", _hours(card)),
        ("sources", "Sources", _sources(card)),
        ("rejects", "Rejects", _rejects(card)),
        ("labels", "Label origins and labeler agreement", _labels(card)),
        ("plots", "Plots", _plots(release, aggregates)),
        ("samples", "Listen: samples per source, class and label origin", sample_html),
        ("disagreements", "Listen to the disagreements (pseudo vs human, worst first)", dis_html),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title.split(" (")[0].split(":")[0])}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>' for sid, title, content in sections)
    meta = (f"release {_e(card.get('release'))} · built {_e(card.get('built_at'))} · seed {_e(card.get('seed'))}"
            f" · content_sha256 <code>{_e(str(card.get('content_sha256', ''))[:16])}…</code>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>{_e(card.get("name"))}: dataset report</title>'
            f"<style>{_CSS}</style></head><body><header><h1>Dataset report: {_e(card.get('name'))}</h1>"
            f'<div class="meta">{meta}</div></header><nav>{nav}</nav><main>{body}'
            f'<p class="info">Full detail: dataset_card.md and dataset_card.json next to this page.</p>'
            "</main></body></html>")


def write_report(uri: str, embed_audio: int = 0, presign_s: int | None = None,
                 samples_per_group: int = rs.DEFAULT_SAMPLES_PER_GROUP) -> str:
    """Write `report.html` (and its `report_audio/` clips) into the release at `uri`; return its URI.

    The manifests are read part by part (`tasks.publish.report_scan`), never whole."""
    from tasks.publish.report_scan import scan_release

    release = open_release(uri)
    data = scan_release(release, samples_per_group, seed=int(release.card.get("seed") or 13))  # part by part
    samples, disagreements = data.samples, data.disagreements
    rs.render_sample_audio(release, samples)
    rs.render_disagreement_audio(release, disagreements)
    clips = [c for s in samples for c in s.clips.values()] + [d["clip"] for d in disagreements]
    srcs = rs.clip_sources(clips, presign_s=presign_s, embed=embed_audio)
    target = fs.join(release.root, REPORT_FILE)
    fs.write_bytes(target, render_html(release, samples, disagreements, srcs, data.aggregates).encode())
    return target
