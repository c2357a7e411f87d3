"""Helpers for the tune tests that run real processes: start the CLI, read its study, find its workers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

# Trials long enough to be caught mid-training (a few seconds each on a loaded 2-core machine).
SLOW = ["--dataset", "breast-cancer", "--epochs", "120", "--seeds", "1", "--top", "1"]
STUDY = "dropout-advisor-breast-cancer-mlp"


STARTED: list[subprocess.Popen[str]] = []


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """``dropout-advisor tune ARGS`` in its own session (so a test can signal it as a terminal would)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "advisor", "tune", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


def kill_started() -> None:
    """Kill what a test started and left running (its process group: the workers too)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, proc: subprocess.Popen[str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stamped(path: Path) -> bool:
    """Whether the run has finished creating Optuna's schema in the SQLite file (its version row is written)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def trials(url: str, study: str = STUDY) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return []  # the run has not created it yet (and a reader must not create it first)
    import sqlalchemy.exc

    if url.startswith("sqlite:///") and not _stamped(Path(url.removeprefix("sqlite:///"))):
        return []  # Optuna's RDBStorage stamps an empty alembic_version table itself: leave that to the run
    try:  # read only: never race the run to create the tables
        storage = optuna.storages.RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except (
        KeyError,
        sqlalchemy.exc.IntegrityError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.ProgrammingError,
        optuna.exceptions.StorageInternalError,
    ):  # the run has created the file, not yet all its tables
        return []


def running(url: str, study: str = STUDY) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(url, study) if t.state == optuna.trial.TrialState.RUNNING]


def workers(pid: int) -> list[int]:
    """The worker processes ``--workers`` started under ``pid`` (Linux /proc; not multiprocessing's
    resource tracker, which is a child too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "spawn_main" in cmdline and "resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
