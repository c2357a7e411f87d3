"""tune on a real PostgreSQL server, started here from the Debian ``postgresql`` package's binaries.

The server listens on a Unix socket in a temporary folder only (no TCP), with password authentication
(SCRAM), and is stopped at the end. Without the binaries the tests are skipped, unless
``DROPOUT_ADVISOR_REQUIRE_POSTGRES`` is set (``.ci/run`` sets it after installing ``postgresql``), in
which case they fail: CI must run them.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tune_procs import finish, kill_started, start
from typer.testing import CliRunner

from advisor.cli import app

PASSWORD = "Tune-Pg-Secret-42"
USER = "tuner"


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    yield
    kill_started()


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[Callable[..., str]]:
    """A running server; calling the fixture's value gives a storage URL (password and database optional)."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        reason = "PostgreSQL binaries not found (apt-get install postgresql)"
        if os.environ.get("DROPOUT_ADVISOR_REQUIRE_POSTGRES"):
            pytest.fail(reason + "; DROPOUT_ADVISOR_REQUIRE_POSTGRES is set")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="tune-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as an unprivileged user
        account = next((a for a in ("postgres", "nobody") if _user_exists(a)), None)
        assert account is not None, "no unprivileged account to run PostgreSQL as"
        owner = pwd.getpwnam(account)
        os.chown(base, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", account, "--"]
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if prefix:
        os.chown(pwfile, pwd.getpwnam(prefix[2]).pw_uid, -1)
    data, port = base / "data", _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 180}
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"],
        **run,  # type: ignore[call-overload]
    )
    options = f"-c listen_addresses='' -c unix_socket_directories={base} -p {port} -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-t", "120", "-o", options, "start"],
        **run,  # type: ignore[call-overload]
    )

    def url(password: str = PASSWORD, database: str = "studies") -> str:
        return f"postgresql://{USER}:{password}@/{database}?host={base}&port={port}"

    try:
        import psycopg

        with psycopg.connect(host=str(base), port=port, user=USER, password=PASSWORD, dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute("CREATE DATABASE studies")
        yield url
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _records(out: Path) -> list[dict]:
    return json.loads((out / "trials.json").read_text())


def _finished(records: list[dict]) -> list[dict]:
    return [r for r in records if r["state"] in ("complete", "pruned")]


QUICK = ["--dataset", "breast-cancer", "--epochs", "30", "--seeds", "1", "--top", "1"]


def test_two_local_workers_share_a_postgresql_study(postgres, tmp_path):
    out = tmp_path / "run"
    rc, stdout, stderr = finish(
        start(
            *QUICK,
            "--trials",
            "8",
            "--workers",
            "2",
            "--storage",
            postgres(),
            "--study",
            "local",
            "--out",
            str(out),
            cwd=tmp_path,
        )
    )
    assert rc == 0, stderr
    records = _records(out)
    assert len(_finished(records)) == 8
    assert len({r["number"] for r in records}) == len(records)
    drawn = [json.dumps(r["params"], sort_keys=True) for r in _finished(records) if len(r["params"]) > 1]
    assert len(drawn) == len(set(drawn))
    assert len({r["worker"] for r in _finished(records) if r["worker"]}) == 2
    assert PASSWORD not in stdout + stderr + (out / "tune.json").read_text() + (out / "report.json").read_text()
    assert "postgresql+psycopg://tuner:***@/studies" in stdout


def test_the_same_command_on_two_machines_shares_one_study(postgres, tmp_path):
    """Two independent processes (as on two machines) run the same command against one study."""
    args = [*QUICK, "--trials", "8", "--storage", postgres(), "--study", "machines"]
    first = start(*args, "--out", str(tmp_path / "a"), cwd=tmp_path)
    second = start(*args, "--out", str(tmp_path / "b"), cwd=tmp_path)
    (rc_a, _, err_a), (rc_b, _, err_b) = finish(first), finish(second)
    assert (rc_a, rc_b) == (0, 0), err_a + err_b
    records = _records(tmp_path / "b")
    assert _records(tmp_path / "a") == records  # one study, seen from both
    assert len(_finished(records)) == 8
    assert len({r["number"] for r in records}) == len(records)
    assert all(r["note"] == "surplus" for r in records if r["state"] == "failed")
    assert {r["worker"].split(":")[1] for r in _finished(records) if r["worker"]} == {str(first.pid), str(second.pid)}


def test_wrong_credentials_exit_2_without_printing_the_password(postgres, tmp_path):
    result = CliRunner().invoke(
        app, ["tune", *QUICK, "--storage", postgres(password="Wrong-Guess-7"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the storage postgresql+psycopg://tuner:***@/studies")
    assert "refused the credentials" in result.stderr and "hint: check the user name and password" in result.stderr
    assert "Wrong-Guess-7" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_database_is_named(postgres, tmp_path):
    result = CliRunner().invoke(
        app, ["tune", *QUICK, "--storage", postgres(database="nosuchdb"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "has no such database" in result.stderr and "createdb" in result.stderr


def test_resume_asks_for_the_url_whose_password_tune_did_not_save(postgres, tmp_path):
    out = tmp_path / "run"
    common = ["--storage", postgres(), "--study", "resume"]
    assert CliRunner().invoke(app, ["tune", *QUICK, "--trials", "2", *common, "--out", str(out)]).exit_code == 0
    refused = CliRunner().invoke(app, ["tune", "--resume", "--out", str(out)])
    assert refused.exit_code == 2
    assert "needs its password, which tune never saves" in refused.stderr
    resumed = CliRunner().invoke(app, ["tune", "--resume", "--out", str(out), "--trials", "3", "--storage", postgres()])
    assert resumed.exit_code == 0, resumed.stderr
    assert len(_finished(_records(out))) == 3
