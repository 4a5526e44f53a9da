"""The card's plots, drawn for a person: fixed colours, counts on the bars, legends outside.

Every class, label origin and split has one colour in every plot and every run
(`tasks.publish.colors`). A panel with nothing to show (no rows, or a single "unknown" bar) is left
out, and a plot whose panels are all left out is not written: `make_plots` returns the files it
drew. PNGs carry no date or software chunk, so identical data gives identical bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import SENTIMENTS, SPLITS
from tasks.publish.card_common import NON_SPEECH, UNKNOWN, fmt_hms
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


def _labels(df: pd.DataFrame, column: str, null: str = UNKNOWN) -> pd.Series:
    if column not in df.columns:
        return pd.Series([null] * len(df), index=df.index, dtype=object)
    col = df[column]
    return col.astype(object).where(col.notna(), null).map(str).astype(object)


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


def _cross(df: pd.DataFrame, row: str, col: str, preferred_rows: Iterable[str] = (),
           weights: pd.Series | None = None) -> dict[str, dict[str, float]]:
    rows, cols = _labels(df, row), _labels(df, col)
    w = weights if weights is not None else pd.Series(1.0, index=df.index)
    sums = w.groupby([rows, cols]).sum() if len(df) else pd.Series(dtype=float)
    out: dict[str, dict[str, float]] = {}
    for r in _order(rows, preferred_rows):
        out[r] = {c: float(sums.get((r, c), 0.0)) for c in _order(cols[rows == r], CLASS_ORDER)}
    return out


def _plot_hours(utterances: pd.DataFrame, path: Path) -> str | None:
    """Hours per source, one panel per split, stacked by class."""
    if utterances.empty:
        return None
    sec = pd.to_numeric(utterances.get("duration_s"), errors="coerce").fillna(0.0) / 3600.0
    split = _labels(utterances, "split")
    splits = [s for s in _order(split, SPLITS) if sec[split == s].sum() > 0]
    if not splits:
        return None
    # Axis in minutes for a small release (0.004 h reads as nothing); bar labels always h:mm:ss.
    scale, unit = (60.0, "minutes") if sec.groupby([_labels(utterances, "source"), split]).sum().max() < 1 \
        else (1.0, "hours")
    fig, axes = _figure(len(splits), "Audio per source, by split and class (labels: h:mm:ss)")
    for i, (ax, s) in enumerate(zip(axes[0], splits, strict=True)):
        part = utterances[split == s]
        table = _cross(part, "source", "sentiment", weights=sec[split == s] * scale)
        _stacked(ax, table, s, list(CLASS_ORDER), class_colour, fmt=lambda v: fmt_hms(v / scale), ylabel=unit,
                 legend=i == len(splits) - 1)
    return _save(fig, path)


def _plot_sentiment_distribution(utterances: pd.DataFrame, asr: pd.DataFrame, path: Path) -> str | None:
    """Per split: utterances vs the ASR stage after balancing, per class."""
    u_split, a_split = _labels(utterances, "split"), _labels(asr, "split")
    splits = _order([*u_split, *a_split], SPLITS)
    if not splits:
        return None
    fig, axes = _figure(len(splits), "Sentiment per split: accepted utterances vs ASR stage after balancing")
    for i, (ax, s) in enumerate(zip(axes[0], splits, strict=True)):
        table = {
            "utterances": _labels(utterances[u_split == s], "sentiment").value_counts().to_dict(),
            "ASR stage": _labels(asr[a_split == s], "sentiment").value_counts().to_dict(),
        }
        _stacked(ax, table, s, list(CLASS_ORDER), class_colour, legend=i == len(splits) - 1)
    return _save(fig, path)


def _plot_label_origins(utterances: pd.DataFrame, path: Path) -> str | None:
    """Per source: where the sentiment and the transcript came from (a person, or which labeler)."""
    panels = []
    for column, title in (("sentiment_origin", "sentiment origin"), ("transcript_origin", "transcript origin")):
        table = _cross(utterances, "source", column)
        if _informative(table):
            panels.append((title, table))
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


def _plot_train_augmentation(asr: pd.DataFrame, path: Path) -> str | None:
    """Histograms of the train split's SNR and speed: what the recipes actually did."""
    train = asr[_labels(asr, "split") == "train"] if len(asr) else asr
    panels = []
    for column, title, unit in (("snr_db", "SNR of added noise", "dB"), ("speed", "speed factor", "x")):
        values = pd.to_numeric(train[column], errors="coerce").dropna() if column in train.columns else pd.Series()
        if values.nunique() > 1 or (column == "snr_db" and len(values)):
            panels.append((title, unit, values, len(train)))
    if not panels:
        return None
    fig, axes = _figure(len(panels), "Augmentation of the ASR train split")
    for ax, (title, unit, values, n) in zip(axes[0], panels, strict=True):
        bins = min(20, max(3, values.nunique()))
        counts, _edges, bars = ax.hist(values.to_numpy(), bins=bins, color="#4c72b0", edgecolor="white")
        ax.bar_label(bars, labels=[f"{int(c)}" if c else "" for c in counts], fontsize=7)
        ax.set_ylim(0, max(counts.max(), 1) * 1.18)
        ax.set_title(f"{title}: {len(values)} of {n} rows", fontsize=10)
        ax.set_xlabel(unit, fontsize=9)
        ax.set_ylabel("rows", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def _plot_speech_presence(classifier: pd.DataFrame | None, path: Path) -> str | None:
    """Classifier windows per source: with speech (by class) vs without."""
    if classifier is None or classifier.empty:
        return None
    speech = classifier["speech_present"].fillna(False).astype(bool) if "speech_present" in classifier.columns \
        else _labels(classifier, "sentiment", NON_SPEECH) != NON_SPEECH
    label = _labels(classifier, "sentiment", NON_SPEECH).where(speech, NON_SPEECH)
    table = _cross(classifier.assign(_label=label), "source", "_label")
    fig, axes = _figure(1, "Classifier windows per source: speech (by class) vs no speech")
    _stacked(axes[0][0], table, "windows", list(CLASS_ORDER), class_colour, ylabel="windows")
    return _save(fig, path)


def _plot_durations(utterances: pd.DataFrame, path: Path) -> str | None:
    dur = pd.to_numeric(utterances.get("duration_s"), errors="coerce").dropna() if len(utterances) else pd.Series()
    if dur.empty:
        return None
    split = _labels(utterances.loc[dur.index], "split")
    names = _order(split, SPLITS)
    fig, axes = _figure(1, "Utterance durations by split")
    ax = axes[0][0]
    ax.hist([dur[split == s].to_numpy() for s in names], bins=20, stacked=True, label=names,
            color=[split_colour(s) for s in names], edgecolor="white")
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


def make_plots(card: dict[str, Any], utterances: pd.DataFrame, asr: pd.DataFrame, out_dir: str,
               classifier: pd.DataFrame | None = None) -> list[str]:
    """Write the PNGs that have something to show into the local folder `out_dir` (created).

    Returns their paths in PLOT_FILES order; group and agreement plots read the card so they match
    its tables, the rest read the frames.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    hours, dist, origins, agreement, aug, speech, durations, groups = (folder / n for n in PLOT_FILES)
    drawn = [
        _plot_hours(utterances, hours),
        _plot_sentiment_distribution(utterances, asr, dist),
        _plot_label_origins(utterances, origins),
        _plot_agreement(card, agreement),
        _plot_train_augmentation(asr, aug),
        _plot_speech_presence(classifier, speech),
        _plot_durations(utterances, durations),
        _plot_groups(card, groups),
    ]
    return [p for p in drawn if p is not None]
