"""The one reader of user-named input files and the one writer of output files, shared by every command.

Rules (issue 12, "files are safe"):

* Only a regular file, or a path where nothing exists yet, is ever read, compared or replaced. A folder,
  a device (``/dev/full``, ``/dev/zero``), a named pipe or a socket is refused with an :class:`OutputError`
  (or a :class:`SpecError` for inputs) before anything is opened, so nothing blocks or reads forever.
* An existing file is replaced only with ``force`` (an identical one is left alone and reported), and never
  when it is read-only. A symbolic link is never replaced by a file: with ``force`` the write goes through
  to the regular file it points to, and the result says so; a link to anything else is refused.
* Writes go to a temporary file in the destination's folder, then ``os.replace``: an interrupted or failed
  write (read-only folder, immutable file, full disk) leaves the old file as it was and no temporary file
  behind. A new file gets the permissions the user's umask gives; a replaced file keeps its mode.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from advisor.errors import AdvisorError, OutputError, SpecError


class WriteResult(str, Enum):
    CREATED = "created"
    REPLACED = "replaced"
    IDENTICAL = "identical"


@dataclass(frozen=True)
class Written:
    """What a write did: its :class:`WriteResult`, and the link's target when it wrote through a link."""

    status: WriteResult
    path: Path
    through: Path | None = None  # the regular file a symbolic link at ``path`` points to

    @property
    def value(self) -> str:
        return self.status.value

    @property
    def via(self) -> str:
        """`` (through the symbolic link to real/model.py)`` when written through a link, else ``""``."""
        return f" (through the symbolic link to {self.through})" if self.through is not None else ""

    def describe(self) -> str:
        """``created model.py``, ``replaced model.py (through the symbolic link to real/model.py)``."""
        return f"{self.status.value} {self.path}{self.via}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@dataclass(frozen=True)
class _Dest:
    path: Path  # as the user named it
    real: Path  # where the bytes go (the link's target for a symbolic link)
    mode: int | None  # st_mode of the existing regular file; None for a new path
    link: bool

    @property
    def exists(self) -> bool:
        return self.mode is not None


def _inspect(path: Path, error: type[AdvisorError] = OutputError, what: str = "") -> _Dest:
    """Classify ``path`` without opening it; raise ``error`` for anything but a regular file or a new path."""
    label = f"{what} {path}".strip()
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return _Dest(path, path, None, False)
    except OSError as exc:
        raise error(
            f"cannot inspect {label}: {exc.strerror or exc}", hint="check the path and its permissions"
        ) from None
    link = stat.S_ISLNK(lst.st_mode)
    real = Path(os.path.realpath(path)) if link else path
    if link:
        try:
            st = os.stat(path)
        except OSError:
            raise error(
                f"{label} is a symbolic link to {os.readlink(path)}, which does not exist",
                hint="remove the link or give another path",
            ) from None
    else:
        st = lst
    if not stat.S_ISREG(st.st_mode):
        via = f" (a symbolic link to {real})" if link else ""
        raise error(
            f"{label}{via} is {_kind(st.st_mode)}, not a regular file",
            hint="give the path of a regular file, or of a new one",
        )
    return _Dest(path, real, st.st_mode, link)


def _read_regular(path: Path) -> bytes:
    """Read a file already classified as regular; O_NONBLOCK and fstat guard against a swap in between."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# ---- reading ------------------------------------------------------------------------------------


def read_user_text(path: Path, what: str, expect: str) -> str:
    """Read a file the user named (answers, plan, baseline); errors say which file and what was expected.

    Raises :class:`SpecError` (exit 2) for a missing path, a folder, a device, a pipe, an unreadable file
    or one that is not UTF-8.
    """
    path = Path(path)
    dest = _inspect(path, SpecError, what)
    if not dest.exists:
        raise SpecError(f"{what} {path} does not exist", hint="check the path")
    try:
        data = _read_regular(dest.real)
        return data.decode("utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc.strerror or exc}", hint=f"give a {expect} file") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc}", hint=f"give a UTF-8 {expect} file") from None


def read_existing(path: Path) -> bytes | None:
    """The bytes of an existing output file, ``None`` when nothing is there yet.

    Raises :class:`OutputError` for a path that is not a regular file (so ``--diff`` or ``--dry-run`` never
    reads a device or blocks on a pipe) and for a file that cannot be read.
    """
    dest = _inspect(Path(path))
    if not dest.exists:
        return None
    try:
        return _read_regular(dest.real)
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}", hint="check its permissions") from None


# ---- writing ------------------------------------------------------------------------------------


def _read_only(dest: _Dest) -> bool:
    # Root passes os.access, so a file without any write bit also counts as read-only.
    assert dest.mode is not None
    return not os.access(dest.real, os.W_OK) or not dest.mode & 0o222


def check_writable(path: Path, *, force: bool = False) -> None:
    """Refuse up front an output that :func:`write_bytes_atomic` would refuse whatever the content.

    For commands that spend time before they write (``audit``): an existing file without ``force``, a
    read-only file, a path that is not a regular file, a missing folder. Raises :class:`OutputError`.
    """
    dest = _inspect(Path(path))
    if dest.exists:
        if not force:
            raise _exists_error(dest)
        if _read_only(dest):
            raise _read_only_error(dest)
    _check_parent(dest.real)


def _exists_error(dest: _Dest) -> OutputError:
    via = f" (a symbolic link to {dest.real})" if dest.link else ""
    return OutputError(
        f"{dest.path}{via} already exists",
        hint="pass --force to overwrite it, or choose another path"
        + (" (--force writes through the link to that file)" if dest.link else ""),
    )


def _read_only_error(dest: _Dest) -> OutputError:
    via = f" (through the symbolic link to {dest.real})" if dest.link else ""
    assert dest.mode is not None
    if dest.mode & 0o222:  # write bits, yet not writable: immutable, or owned by someone else
        return OutputError(
            f"{dest.path}{via} is not writable; not replaced, even with --force",
            hint=f"check its owner and permissions, and whether it is immutable (lsattr {dest.real}), "
            "or choose another path",
        )
    return OutputError(
        f"{dest.path}{via} is read-only; not replaced, even with --force",
        hint=f"make it writable first (chmod u+w {dest.real}) or choose another path",
    )


def _check_parent(real: Path) -> Path:
    parent = real.parent if str(real.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist", hint="create it first or choose another path")
    return parent


def write_text_atomic(path: Path, text: str, *, force: bool = False) -> Written:
    """Write ``text`` (UTF-8, ``\\n`` line ends) with :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"), force=force)


def write_bytes_atomic(path: Path, data: bytes, *, force: bool = False) -> Written:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``; see the module docstring.

    Returns what happened (created, replaced or identical, and through which link). Raises
    :class:`OutputError` (exit 2) for an existing file without ``force``, a read-only file, anything but a
    regular file, a missing or unwritable folder, a full disk or any other failed write; nothing is then
    changed on disk.
    """
    path = Path(path)
    dest = _inspect(path)
    through = dest.real if dest.link else None
    if dest.exists:
        try:
            if _read_regular(dest.real) == data:
                return Written(WriteResult.IDENTICAL, path, through)
        except OSError:
            pass  # unreadable: it cannot be compared, so it counts as different
        if not force:
            raise _exists_error(dest)
        if _read_only(dest):
            raise _read_only_error(dest)
    parent = _check_parent(dest.real)
    _replace(dest, parent, data)
    return Written(WriteResult.REPLACED if dest.exists else WriteResult.CREATED, path, through)


def _open_temp(parent: Path, name: str) -> tuple[int, Path]:
    """A new temporary file next to the destination, created with 0o666 so that the umask applies."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary file name", str(parent))


def _replace(dest: _Dest, parent: Path, data: bytes) -> None:
    tmp: Path | None = None
    try:
        fd, tmp = _open_temp(parent, dest.real.name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if dest.mode is not None:
                os.fchmod(fd, stat.S_IMODE(dest.mode))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest.real)
        tmp = None
    except OSError as exc:
        raise _write_error(dest, parent, exc) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _write_error(dest: _Dest, parent: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        hint = f"free some space on the disk that holds {parent}, or choose another folder"
    elif exc.errno == errno.EROFS:
        hint = f"{parent} is on a read-only file system: choose another folder"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = (
            f"check that {parent} is writable"
            + (f" and that {dest.real} is not immutable (lsattr)" if dest.exists else "")
            + ", or choose another path"
        )
    else:
        hint = "choose another path"
    what = "replace" if dest.exists else "write"
    return OutputError(f"cannot {what} {dest.path}: {reason}; nothing was changed", hint=hint)
