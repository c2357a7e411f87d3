"""Atomic, non-destructive file writes shared by every command that writes files."""

from __future__ import annotations

import os
import tempfile
from enum import Enum
from pathlib import Path

from advisor.errors import OutputError, SpecError


class WriteResult(str, Enum):
    CREATED = "created"
    REPLACED = "replaced"
    IDENTICAL = "identical"


def read_user_text(path: Path, what: str, expect: str) -> str:
    """Read a file the user named (answers, plan); errors say which file and what was expected."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{what} {path} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {what} {path}: {exc}", hint=f"give a UTF-8 {expect} file") from None


def write_text_atomic(path: Path, text: str, *, force: bool = False) -> WriteResult:
    """Write ``text`` (UTF-8, ``\n`` line ends) with :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"), force=force)


def write_bytes_atomic(path: Path, data: bytes, *, force: bool = False) -> WriteResult:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    An existing file is never touched without ``force``; an identical one is left alone and reported.
    An interrupted write leaves the old file intact.
    """
    path = Path(path)
    existed = path.exists()
    if existed:
        if path.is_dir():
            raise OutputError(f"{path} is a directory", hint="give a file path")
        try:
            if path.read_bytes() == data:
                return WriteResult.IDENTICAL
        except OSError:
            pass
        if not force:
            raise OutputError(
                f"{path} already exists",
                hint="pass --force to overwrite it, or choose another path",
            )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist", hint="create it first or choose another path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, (path.stat().st_mode & 0o777) if existed else 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return WriteResult.REPLACED if existed else WriteResult.CREATED
