"""Any local Hugging Face sequence-classification model folder as the text sentiment labeler, offline.

Why: a team that has a sentiment model it trusts (a fine-tuned RoBERTa, a multilingual model) can
label with it without this project downloading anything: the folder is loaded with
``local_files_only=True`` (no Hub access, ever) and run on the CPU in batches under ``torch.no_grad``.

Labels: the model's ``config.id2label`` names are mapped to negative/neutral/positive by
`settings.label_map` first, then by name (a name containing ``neg``, ``neu`` or ``pos``, so
``NEGATIVE``, ``Neutral``, ``positive`` and ``LABEL_neg`` all work). A label mapped to ``null`` is
ignored (its probability is dropped and the rest renormalised); a label that maps to nothing is an
error naming the labels, so a 5-star model is never guessed. Several model labels may map to one
class (their probabilities add up). A two-class model gives ``p_neutral = 0``.

The model's identity for the label cache is the sha256 of every file in the folder, so replacing the
weights in place starts a fresh cache instead of serving the old model's labels.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from manifests.schema import SENTIMENTS
from tasks.label.sentiment.common import label_from_scores
from tasks.spec_labelers import TextClassifierSettings

LABELER_NAME = "hf-model"
_LOADED: dict[tuple[str, str], LoadedModel] = {}
_IDENTITY: dict[tuple[str, tuple], str] = {}  # (folder, file stats) -> content hash
_LOCK = threading.Lock()


@dataclass
class LoadedModel:
    tokenizer: Any
    model: Any
    class_of: list[str | None]  # model output index -> sentiment (None: ignored)
    model_id: str


def model_identity(model_path: str) -> str:
    """sha256 over the names and bytes of every file in the folder.

    Hashed once per process per folder state: the memo is keyed by every file's size and mtime, so a
    model replaced in place (a long-lived `voicetone serve` process) gets a new identity, and with it
    new cache keys, instead of serving labels of the old model."""
    path = os.path.abspath(model_path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"labelers.text_classifier.model_path {model_path!r} is not a folder")
    stats = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            stats.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    memo_key = (path, tuple(stats))
    with _LOCK:
        if memo_key in _IDENTITY:
            return _IDENTITY[memo_key]
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
    identity = digest.hexdigest()[:24]
    with _LOCK:
        _IDENTITY[memo_key] = identity
    return identity


def map_labels(id2label: dict[int, str], label_map: dict[str, str | None]) -> list[str | None]:
    """Sentiment of each output index; raises ValueError for a label that maps to nothing."""
    lowered = {k.lower(): v for k, v in label_map.items()}
    out: list[str | None] = []
    unknown = []
    for index in range(len(id2label)):
        name = str(id2label[index])
        if name in label_map or name.lower() in lowered:
            out.append(label_map.get(name, lowered.get(name.lower())))
            continue
        low = name.lower()
        guess = next((s for s in SENTIMENTS if s[:3] in low), None)
        if guess is None:
            unknown.append(name)
        out.append(guess)
    if unknown:
        raise ValueError(
            f"model labels {unknown} (of {[id2label[i] for i in range(len(id2label))]}) have no sentiment; "
            "set labelers.text_classifier.label_map, e.g. {LABEL_0: negative, LABEL_1: positive}"
        )
    if not any(out):
        raise ValueError("labelers.text_classifier.label_map ignores every model label")
    return out


def load(settings: TextClassifierSettings) -> LoadedModel:
    """The tokenizer and model in `settings.model_path`, loaded once per process, offline."""
    if not settings.model_path:
        raise ValueError("labelers.text_classifier.kind 'hf_model' needs model_path")
    model_id = model_identity(settings.model_path)
    key = (os.path.abspath(settings.model_path), model_id)
    with _LOCK:
        loaded = _LOADED.get(key)
    if loaded is not None:
        return loaded
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _require_safetensors(settings.model_path)
    tokenizer = AutoTokenizer.from_pretrained(settings.model_path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(settings.model_path, local_files_only=True,
                                                               use_safetensors=True)
    model.eval()
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    loaded = LoadedModel(tokenizer, model, map_labels(id2label, settings.label_map), model_id)
    with _LOCK:
        _LOADED[key] = loaded
    return loaded


def _require_safetensors(model_path: str) -> None:
    """Refuse pickle weights: `pytorch_model.bin` goes through `torch.load`, a code-execution path for a
    crafted file (CVE-2026-24747 in torch < 2.10, which we pin; see docs/security.md)."""
    names = os.listdir(model_path)
    if any(n.endswith(".safetensors") for n in names):
        return
    pickled = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
    found = f" (it has {', '.join(pickled)}: pickle weights, which are refused)" if pickled else ""
    raise ValueError(
        f"labelers.text_classifier.model_path {model_path!r} holds no *.safetensors weights{found}; "
        "convert it once where you trust the file: AutoModelForSequenceClassification.from_pretrained(path)"
        ".save_pretrained(path) (transformers >= 5 writes safetensors)"
    )


def supports(language: Any, settings: TextClassifierSettings) -> bool:
    """Languages are the spec's claim (a model folder does not say); a missing one is the default."""
    from tasks.label.sentiment.trained import primary_language

    primary = primary_language(language)
    allowed = {primary_language(lang) for lang in settings.languages}
    return primary is None or primary in allowed


def classify(texts: Sequence[str], settings: TextClassifierSettings) -> list[dict[str, Any]]:
    """Per-class probabilities from a softmax over the model's logits, in batches of settings.batch_size."""
    import torch

    from tasks.core.threads import pin_native_threads

    loaded = load(settings)
    pin_native_threads()  # torch's intra-op threads follow OMP_NUM_THREADS otherwise (tasks/core/threads.py)
    out: list[dict[str, Any]] = []
    texts = list(texts)
    for start in range(0, len(texts), settings.batch_size):
        batch = texts[start : start + settings.batch_size]
        enc = loaded.tokenizer(
            batch, padding=True, truncation=True, max_length=settings.max_length, return_tensors="pt"
        )
        with torch.no_grad():
            probs = torch.softmax(loaded.model(**enc).logits.float(), dim=-1).cpu().numpy()
        for row in probs:
            scores = {c: 0.0 for c in SENTIMENTS}
            for index, cls in enumerate(loaded.class_of):
                if cls is not None:
                    scores[cls] += float(row[index])
            total = sum(scores.values())
            if total > 0:
                scores = {c: v / total for c, v in scores.items()}
            out.append(label_from_scores(scores))
    return out


def cache_identity(settings: TextClassifierSettings) -> dict[str, Any]:
    """What identifies this labeler's labels: the model's content plus the settings that change them."""
    return {
        "kind": "hf_model",
        "model_id": model_identity(str(settings.model_path)),
        "label_map": dict(sorted(settings.label_map.items())),
        "max_length": settings.max_length,
    }
