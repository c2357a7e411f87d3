"""The one writer and reader: only regular files are read or replaced, failures change nothing."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from advisor import fileio
from advisor.errors import OutputError, SpecError
from advisor.fileio import WriteResult, check_writable, read_existing, read_user_text, write_text_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.py"
    os.mkfifo(path)
    return path


# ---- what may be written -------------------------------------------------------------------------


def test_new_file_is_created_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        result = write_text_atomic(tmp_path / "out.txt", "hello\n")
    finally:
        os.umask(old)
    assert result.status is WriteResult.CREATED
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640
    assert (tmp_path / "out.txt").read_text() == "hello\n"


def test_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    path.chmod(0o600)
    result = write_text_atomic(path, "new\n", force=True)
    assert result.status is WriteResult.REPLACED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "new\n"


def test_existing_file_is_not_replaced_without_force(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(OutputError, match="already exists"):
        write_text_atomic(path, "new\n")
    assert path.read_text() == "old\n"


def test_identical_file_is_left_alone(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("same\n")
    before = path.stat().st_mtime_ns
    assert write_text_atomic(path, "same\n").status is WriteResult.IDENTICAL
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("device", ["/dev/full", "/dev/zero", "/dev/null"])
@pytest.mark.parametrize("force", [False, True])
def test_a_device_is_never_read_or_replaced(device, force):
    with pytest.raises(OutputError, match="is a device, not a regular file"):
        write_text_atomic(Path(device), "x", force=force)
    assert stat.S_ISCHR(os.stat(device).st_mode)


@pytest.mark.parametrize("force", [False, True])
def test_a_named_pipe_is_refused_without_blocking(fifo, force):
    with pytest.raises(OutputError, match="is a named pipe"):
        write_text_atomic(fifo, "x", force=force)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        write_text_atomic(tmp_path, "x", force=True)


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OutputError, match="is a socket"):
            write_text_atomic(path, "x", force=True)


def test_a_symlink_is_not_replaced_without_force(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link") as err:
        write_text_atomic(link, "new\n")
    assert "--force writes through the link" in (err.value.hint or "")
    assert target.read_text() == "old\n"


def test_force_on_a_symlink_writes_through_to_its_target_and_says_so(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    result = write_text_atomic(link, "new\n", force=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert result.through == target
    assert result.describe() == f"replaced {link} (through the symbolic link to {target})"


def test_a_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "missing.txt")
    with pytest.raises(OutputError, match="which does not exist"):
        write_text_atomic(link, "x", force=True)
    assert not (tmp_path / "missing.txt").exists()


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to("/dev/full")
    with pytest.raises(OutputError, match=r"symbolic link to /dev/full.*is a device"):
        write_text_atomic(link, "x", force=True)
    assert link.is_symlink()


def test_a_read_only_file_is_not_replaced_even_with_force(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    path.chmod(0o444)
    with pytest.raises(OutputError, match="read-only") as err:
        write_text_atomic(path, "new\n", force=True)
    assert "chmod u+w" in (err.value.hint or "")
    assert path.read_text() == "old\n"


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "out.txt", "x")


# ---- failures during the write change nothing ---------------------------------------------------


def _fail_for_temp_files(real, exc: OSError):
    """A stand-in for an os function that fails for our temporary files only."""

    def fake(target, *args, **kwargs):
        name = os.readlink(f"/proc/self/fd/{target}") if isinstance(target, int) else str(target)
        if name.endswith(".tmp"):
            raise exc
        return real(target, *args, **kwargs)

    return fake


def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    monkeypatch.setattr(fileio.os, "write", _fail_for_temp_files(os.write, OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(OutputError, match=r"cannot replace .*No space left; nothing was changed") as err:
        write_text_atomic(path, "new\n", force=True)
    monkeypatch.undo()
    assert "free some space" in (err.value.hint or "")
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_an_unwritable_folder_is_an_error_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "open", _fail_for_temp_files(os.open, PermissionError(errno.EACCES, "Denied")))
    with pytest.raises(OutputError, match=r"cannot write .*Denied") as err:
        write_text_atomic(tmp_path / "out.txt", "x")
    monkeypatch.undo()
    assert f"check that {tmp_path} is writable" in (err.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_an_immutable_file_is_an_error_and_stays_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    real_replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(dst) == path:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(OutputError, match=r"cannot replace .*not permitted") as err:
        write_text_atomic(path, "new\n", force=True)
    monkeypatch.undo()
    assert "immutable" in (err.value.hint or "")
    assert path.read_text() == "old\n"
    assert _leftovers(tmp_path) == []


def test_a_really_immutable_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here (needs CAP_LINUX_IMMUTABLE and a file system with it)")
    try:
        with pytest.raises(OutputError, match="is not writable") as err:
            write_text_atomic(path, "new\n", force=True)
        assert "immutable" in (err.value.hint or "")
        assert path.read_text() == "old\n"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            write_text_atomic(folder / "out.txt", "x")
    finally:
        folder.chmod(0o755)


# ---- the preflight check ------------------------------------------------------------------------


def test_check_writable_refuses_an_existing_file_without_force(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{}")
    with pytest.raises(OutputError, match="already exists"):
        check_writable(path, force=False)
    check_writable(path, force=True)
    check_writable(tmp_path / "new.json")


# ---- reading ------------------------------------------------------------------------------------


def test_read_existing_refuses_a_pipe_without_blocking(fifo):
    with pytest.raises(OutputError, match="named pipe"):
        read_existing(fifo)


def test_read_existing_of_a_new_path_is_none(tmp_path):
    assert read_existing(tmp_path / "new.py") is None


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_user_files_must_be_regular(tmp_path, kind):
    path = {"fifo": tmp_path / "answers.toml", "folder": tmp_path, "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(SpecError, match=f"answers file {path} .*not a regular file"):
        read_user_text(path, "answers file", "TOML")


def test_missing_user_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        read_user_text(tmp_path / "nope.toml", "answers file", "TOML")
