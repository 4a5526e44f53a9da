"""Say what a path really is when it is not the audio file its name promises.

A reject that says "does not exist" for a named pipe, or "declares a sample rate of 0 Hz" for a text
file someone named `.flac`, sends a person looking for the wrong problem. These helpers turn the
file system's answer (stat, the first bytes) into a phrase for the reject detail.
"""

from __future__ import annotations

import errno
import os
import stat

SNIFF_BYTES = 4096
# Magic numbers of common non-audio files that end up in audio folders.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)


def non_regular(path: str) -> tuple[str, str] | None:
    """(reason, phrase) when local `path` is not a regular file it can read, else None.

    The phrase completes "<path> ..."; the reason is `missing_audio` only when nothing is there (a
    symlink whose target is gone counts: the file it names is missing), else `unreadable_audio`.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "unreadable_audio", "is a symbolic link loop (following it comes back to itself); it names no file"
        if os.path.islink(path):
            return "missing_audio", f"is a symbolic link to {os.readlink(path)}, which does not exist"
        if isinstance(err, FileNotFoundError):
            return "missing_audio", "does not exist"
        return "unreadable_audio", f"cannot be read ({err.strerror})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder" if stat.S_ISDIR(mode)
        else "not a regular file"
    )
    return "unreadable_audio", f"is {kind}, not a regular audio file; it was not read"


def not_audio(path: str) -> str | None:
    """A phrase naming what the file's first bytes show it is (text, PDF, ZIP, ...), or None.

    Only called after the decoders failed, so a file is called text only when its start has no NUL
    byte and decodes as UTF-8 (every audio container we read has binary headers).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"is {what}, not audio"
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the sniff boundary
            return None
        text = head[: err.start].decode("utf-8")
    start = " ".join(text.split())[:40]
    return f"is a text file, not audio (it begins {start!r})"
