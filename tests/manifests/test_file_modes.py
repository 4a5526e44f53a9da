"""Files the project writes get the umask's mode, not mkstemp's owner-only 0600 (issue 14 item 4)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from manifests import uri as fs
from tasks.core import storage


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_honour_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        assert fs.current_umask() == mask
        fs.write_bytes(str(tmp_path / "manifests" / "a.parquet"), b"x")
        storage.write_bytes(str(tmp_path / "work" / "b.parquet"), b"y")
        fs.write_bytes(str(tmp_path / "LATEST"), b"old\n")
        fs.write_bytes(str(tmp_path / "LATEST"), b"new\n")  # a rewrite too
    expected = 0o666 & ~mask
    assert mode(tmp_path / "manifests" / "a.parquet") == expected
    assert mode(tmp_path / "work" / "b.parquet") == expected
    assert mode(tmp_path / "LATEST") == expected
    assert mode(tmp_path / "manifests") == 0o777 & ~mask  # folders made on the way, likewise


def test_current_umask_leaves_the_umask_unchanged() -> None:
    with umask(0o027):
        fs.current_umask()
        assert os.umask(0o027) == 0o027
