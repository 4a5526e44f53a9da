"""The card's plots, drawn for a person: fixed colours, counts on the bars, legends outside.

Every class, label origin and split has one colour in every plot and every run
(`tasks.publish.colors`). A panel with nothing to show (no rows, or a single "unknown" bar) is left
out, and a plot whose panels are all left out is not written: `make_plots` returns the files it
drew. PNGs carry no date or software chunk, so identical data gives identical bytes. The data come
from the merged partial aggregates (`plot_data`), never from whole tables: `make_plots_from_aggregates`
draws a release of any number of parts; `make_plots` is the same from whole frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import SENTIMENTS, SPLITS
from tasks.core import reduce
from tasks.publish.card_common import UNKNOWN, fmt_hms
from tasks.publish.colors import CLASS_ORDER, KNOWN_ORIGINS, class_colour, origin_colour, split_colour

PLOT_FILES: tuple[str, ...] = (
    "hours_by_source.png",
    "sentiment_distribution.png",
    "label_origins.png",
    "agreement_confusion.png",
    "train_augmentation.png",
    "speech_presence.png",
    "duration_histogram.png",
    "groups.png",
)
DPI = 100
PANEL_W, PANEL_H = 4.6, 3.8  # inches per panel: ~460x380 px, text at 9-10 pt stays readable


def _order(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    first = [v for v in preferred if v in present]
    return first + sorted(v for v in present if v not in first)


def _figure(ncols: int, title: str, nrows: int = 1) -> tuple[Any, Any]:
    """A figure of `ncols` panels on the Agg canvas, without pyplot (thread-safe, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(PANEL_W * ncols + 1.6, 7.5), PANEL_H * nrows + 0.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    return fig, axes


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return str(path)


def _stacked(ax: Any, table: Mapping[str, Mapping[str, float]], title: str, categories: list[str],
             colour: Callable[[str], str], fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
             ylabel: str = "utterances", legend: bool = True) -> None:
    """Bars per row of `table`, stacked by category; the total on top of each bar, legend outside."""
    names = list(table)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for c in categories:
        vals = np.array([float(table[n].get(c, 0) or 0) for n in names])
        if vals.any():
            ax.bar(x, vals, bottom=bottom, label=c, color=colour(c), edgecolor="white", linewidth=0.5)
            bottom += vals
    for xi, total in zip(x, bottom, strict=True):
        ax.annotate(fmt(total), (xi, total), xytext=(0, 2), textcoords="offset points", ha="center",
                    va="bottom", fontsize=8)
    ax.set_ylim(0, max(float(bottom.max()) if len(bottom) else 1.0, 1e-9) * 1.18)
    ax.set_xticks(x, names, rotation=25 if max((len(n) for n in names), default=0) > 8 else 0,
                  ha="right" if max((len(n) for n in names), default=0) > 8 else "center", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if legend:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _informative(table: Mapping[str, Mapping[str, float]]) -> bool:
    """Something to see: a non-zero bar that is not the lone "unknown"."""
    if not any(sum(v.values()) for v in table.values()):
        return False
    return not (list(table) == [UNKNOWN])


def _n(leaf: Any) -> int:
    return int(leaf[0]) if isinstance(leaf, list) else int(leaf)


def _cross(table: Mapping[str, Mapping[str, Any]], value: Callable[[Any], float] = _n) -> dict[str, dict[str, float]]:
    """{row: {col: leaf}} as floats, rows in name order and columns in class order."""
    return {r: {c: float(value(table[r][c])) for c in _order(table[r], CLASS_ORDER)} for r in _order(table, ())}


def _histogram(vm: Mapping[str, Any] | None) -> dict[str, list[float]]:
    values, counts = reduce.sorted_values(vm)
    return {"values": values.tolist(), "counts": counts.tolist()}


def plot_data(agg: Mapping[str, Any]) -> dict[str, Any]:
    """What every frame-based plot draws, from the merged aggregates (JSON-able; tests compare it)."""
    sums, values = agg["sums"], agg["values"]
    sss = sums.get("utt_sss", {})
    split_ns: dict[str, int] = {}
    pair_ns: list[int] = []
    for by_split in sss.values():
        for sp, by_sent in by_split.items():
            ns = sum(int(v[1]) for v in by_sent.values())
            split_ns[sp] = split_ns.get(sp, 0) + ns
            pair_ns.append(ns)
    # Axis in minutes for a small release (0.004 h reads as nothing); bar labels always h:mm:ss.
    scale = 60.0 if pair_ns and max(pair_ns) / 3.6e12 < 1 else 1.0
    hours = {sp: _cross({src: sss[src][sp] for src in sss if sp in sss[src]}, lambda v: v[1] / 3.6e12 * scale)
             for sp in _order(split_ns, SPLITS) if split_ns[sp] > 0}
    u_split, a_split = sums.get("cross", {}).get("split", {}), sums.get("asr_ss", {})
    by_source = sums.get("cross", {}).get("source", {})
    durations = {s: _histogram(values[f"duration_s/{s}"])
                 for s in _order((k.split("/", 1)[1] for k in values if k.startswith("duration_s/")), SPLITS)}
    return {
        "hours": {"scale": scale, "by_split": hours},
        "sentiment": {s: {"utterances": {c: _n(v) for c, v in u_split.get(s, {}).get("sent", {}).items()},
                          "ASR stage": {c: _n(v) for c, v in a_split.get(s, {}).items()}}
                      for s in _order([*u_split, *a_split], SPLITS)},
        "origins": {column: _cross({src: v[key] for src, v in by_source.items()})
                    for column, key in (("sentiment_origin", "so"), ("transcript_origin", "to"))},
        "augmentation": {"train_rows": int(sums.get("asr", {}).get("train_rows", 0)),
                         **{c: _histogram(values.get(f"asr_train/{c}")) for c in ("snr_db", "speed")}},
        "speech": _cross(sums.get("clf_src", {})) if sums.get("clf", {}).get("windows") else None,
        "durations": {s: d for s, d in durations.items() if d["values"]},
    }


def _plot_hours(data: Mapping[str, Any], path: Path) -> str | None:
    """Hours per source, one panel per split, stacked by class."""
    splits, scale = data["by_split"], data["scale"]
    if not splits:
        return None
    unit = "minutes" if scale == 60.0 else "hours"
    fig, axes = _figure(len(splits), "Audio per source, by split and class (labels: h:mm:ss)")
    for i, (ax, (s, table)) in enumerate(zip(axes[0], splits.items(), strict=True)):
        _stacked(ax, table, s, list(CLASS_ORDER), class_colour, fmt=lambda v: fmt_hms(v / scale), ylabel=unit,
                 legend=i == len(splits) - 1)
    return _save(fig, path)


def _plot_sentiment_distribution(data: Mapping[str, Any], path: Path) -> str | None:
    """Per split: utterances vs the ASR stage after balancing, per class."""
    if not data:
        return None
    fig, axes = _figure(len(data), "Sentiment per split: accepted utterances vs ASR stage after balancing")
    for i, (ax, (s, table)) in enumerate(zip(axes[0], data.items(), strict=True)):
        _stacked(ax, table, s, list(CLASS_ORDER), class_colour, legend=i == len(data) - 1)
    return _save(fig, path)


def _plot_label_origins(data: Mapping[str, Any], path: Path) -> str | None:
    """Per source: where the sentiment and the transcript came from (a person, or which labeler)."""
    panels = [(title, data[column]) for column, title in (("sentiment_origin", "sentiment origin"),
                                                          ("transcript_origin", "transcript origin"))
              if _informative(data[column])]
    if not panels:
        return None
    fig, axes = _figure(len(panels), "Label origin per source (blue = a person, warm = a pseudo-labeler)")
    for ax, (title, table) in zip(axes[0], panels, strict=True):
        origins = _order((c for row in table.values() for c in row), KNOWN_ORIGINS)
        _stacked(ax, table, title, origins, origin_colour)
    return _save(fig, path)


def _plot_agreement(card: Mapping[str, Any], path: Path) -> str | None:
    """Confusion matrices, pseudo-labeler vs human label, one per source (held-out rows)."""
    section = card.get("sentiment_agreement") or {}
    labelers = section.get("labelers") if isinstance(section, Mapping) else None
    if not isinstance(labelers, Mapping) or not labelers:
        return None
    name = section.get("labeler_in_use") if section.get("labeler_in_use") in labelers else sorted(labelers)[0]
    per_source = {s: sc for s, sc in (labelers[name].get("per_source") or {}).items()
                  if isinstance(sc, Mapping) and sc.get("confusion") and sc.get("n")}
    if not per_source:
        return None
    fig, axes = _figure(len(per_source), f"{name} (pseudo) vs human sentiment, held-out rows")
    for ax, (source, sc) in zip(axes[0], per_source.items(), strict=True):
        gold = [g for g in SENTIMENTS if g in sc["confusion"]]
        pred = [p for p in (*SENTIMENTS, "none") if any(sc["confusion"][g].get(p, 0) for g in gold)
                or p in SENTIMENTS]
        m = np.array([[sc["confusion"][g].get(p, 0) for p in pred] for g in gold], dtype=float)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=max(m.max(), 1))
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=10,
                    color="white" if v > m.max() * 0.6 else "black")
        ax.set_xticks(range(len(pred)), pred, fontsize=8)
        ax.set_yticks(range(len(gold)), gold, fontsize=8)
        ax.set_xlabel(f"{name} (pseudo)", fontsize=9)
        ax.set_ylabel("human", fontsize=9)
        f1 = sc.get("macro_f1")
        ax.set_title(f"{source}: n={sc['n']}, macro-F1 {'–' if f1 is None else f'{f1:.2f}'}", fontsize=10)
    return _save(fig, path)


def _plot_train_augmentation(data: Mapping[str, Any], path: Path) -> str | None:
    """Histograms of the train split's SNR and speed: what the recipes actually did."""
    panels = []
    for column, title, unit in (("snr_db", "SNR of added noise", "dB"), ("speed", "speed factor", "x")):
        hist = data[column]
        if len(hist["values"]) > 1 or (column == "snr_db" and hist["values"]):
            panels.append((title, unit, hist))
    if not panels:
        return None
    fig, axes = _figure(len(panels), "Augmentation of the ASR train split")
    for ax, (title, unit, hist) in zip(axes[0], panels, strict=True):
        bins = min(20, max(3, len(hist["values"])))
        counts, _edges, bars = ax.hist(hist["values"], weights=hist["counts"], bins=bins, color="#4c72b0",
                                       edgecolor="white")
        ax.bar_label(bars, labels=[f"{int(c)}" if c else "" for c in counts], fontsize=7)
        ax.set_ylim(0, max(counts.max(), 1) * 1.18)
        ax.set_title(f"{title}: {int(sum(hist['counts']))} of {data['train_rows']} rows", fontsize=10)
        ax.set_xlabel(unit, fontsize=9)
        ax.set_ylabel("rows", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _plot_speech_presence(table: Mapping[str, Mapping[str, float]] | None, path: Path) -> str | None:
    """Classifier windows per source: with speech (by class) vs without."""
    if not table:
        return None
    fig, axes = _figure(1, "Classifier windows per source: speech (by class) vs no speech")
    _stacked(axes[0][0], table, "windows", list(CLASS_ORDER), class_colour, ylabel="windows")
    return _save(fig, path)


def _plot_durations(data: Mapping[str, Any], path: Path) -> str | None:
    if not data:
        return None
    names = list(data)
    fig, axes = _figure(1, "Utterance durations by split")
    ax = axes[0][0]
    ax.hist([data[s]["values"] for s in names], weights=[data[s]["counts"] for s in names], bins=20, stacked=True,
            label=names, color=[split_colour(s) for s in names], edgecolor="white")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_xlabel("seconds", fontsize=9)
    ax.set_ylabel("utterances", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _plot_groups(card: Mapping[str, Any], path: Path) -> str | None:
    """Speaker groups by class; a column with one group (often all "unknown") is left out."""
    cross = card.get("cross_sections") or {}
    panels = []
    for column in ("gender", "age_bucket", "accent"):
        groups = cross.get(column, {})
        table = {(f"{g}*" if v["small"] else g): v["sentiment"] for g, v in groups.items()}
        if len(table) > 1 and _informative(table):
            panels.append((column, table))
    if not panels:
        return None
    fig, axes = _figure(len(panels), f"Utterances by speaker group (* = fewer than {cross.get('min_group_size')})")
    for i, (ax, (column, table)) in enumerate(zip(axes[0], panels, strict=True)):
        _stacked(ax, table, column, list(CLASS_ORDER), class_colour, legend=i == len(panels) - 1)
    return _save(fig, path)


def make_plots_from_aggregates(card: dict[str, Any], agg: Mapping[str, Any], out_dir: str) -> list[str]:
    """Write the PNGs that have something to show into the local folder `out_dir` (created).

    Returns their paths in PLOT_FILES order; group and agreement plots read the card so they match
    its tables, the rest read the merged partial aggregates (`plot_data`).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = plot_data(agg)
    hours, dist, origins, agreement, aug, speech, durations, groups = (folder / n for n in PLOT_FILES)
    drawn = [
        _plot_hours(data["hours"], hours),
        _plot_sentiment_distribution(data["sentiment"], dist),
        _plot_label_origins(data["origins"], origins),
        _plot_agreement(card, agreement),
        _plot_train_augmentation(data["augmentation"], aug),
        _plot_speech_presence(data["speech"], speech),
        _plot_durations(data["durations"], durations),
        _plot_groups(card, groups),
    ]
    return [p for p in drawn if p is not None]


def make_plots(card: dict[str, Any], utterances: pd.DataFrame, asr: pd.DataFrame, out_dir: str,
               classifier: pd.DataFrame | None = None) -> list[str]:
    """`make_plots_from_aggregates` of whole frames (one part)."""
    from tasks.publish.aggregates import frame_aggregates

    return make_plots_from_aggregates(card, frame_aggregates(None, utterances, asr, classifier, None), out_dir)
