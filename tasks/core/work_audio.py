"""Materialised audio in the work store: verified before a later run reuses it.

The materialiser writes `<name>.flac` and then a JSON sidecar `<name>.json` holding the gain, the
sample count and the sha256 of the FLAC's bytes. A resumed or repeated run reuses the FLAC only
when it is what that run wrote: non-empty, hashing to the sidecar's sha256, and decodable with the
sidecar's sample count. Anything else (a 0-byte file left by a crash, a truncated copy, a sidecar
from a version that did not record the hash, an unreadable sidecar) means "redo it", with the
reason naming the file, so a broken work file can never be hard-linked into a release.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from manifests import uri as fs

SIDECAR_KEYS: tuple[str, ...] = ("gain", "num_samples", "sha256")


def sidecar_uri(flac_uri: str) -> str:
    return flac_uri[: -len(".flac")] + ".json" if flac_uri.endswith(".flac") else flac_uri + ".json"


def check_reusable(flac_uri: str, meta_uri: str) -> tuple[dict[str, Any] | None, str | None]:
    """(sidecar, None) when the finished file can be reused; (None, why not) otherwise.

    `why not` is None when there is simply nothing to reuse (no FLAC or no sidecar yet: the normal
    first run), and a sentence naming the file when something is there but must be redone.
    """
    if not (fs.exists(meta_uri) and fs.exists(flac_uri)):
        return None, None
    try:
        meta = json.loads(fs.read_text(meta_uri))
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"work file {meta_uri} is not readable JSON ({err})"
    missing = [k for k in SIDECAR_KEYS if not isinstance(meta, dict) or meta.get(k) is None]
    if missing:
        return None, f"sidecar {meta_uri} lacks {', '.join(missing)} (written by an older version)"
    data = fs.read_bytes(flac_uri)
    if not data:
        return None, f"work file {flac_uri} is empty (0 bytes)"
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        return None, (f"work file {flac_uri} ({len(data)} bytes) hashes to {digest[:16]}..., its sidecar says "
                      f"{str(meta['sha256'])[:16]}... (truncated or overwritten)")
    frames = decoded_frames(data)
    if frames != int(meta["num_samples"]):
        what = "does not decode" if frames is None else f"decodes to {frames} samples"
        return None, f"work file {flac_uri} {what}, its sidecar says {int(meta['num_samples'])}"
    return meta, None


def decoded_frames(data: bytes) -> int | None:
    """The number of frames soundfile decodes from `data`, or None when it cannot decode it."""
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            return int(fh.frames)
    except Exception:  # libsndfile raises RuntimeError / LibsndfileError / TypeError for garbage
        return None
