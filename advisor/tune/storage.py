"""Where a study lives: Optuna storages named by URL, their errors in plain words, and the study's key.

Storage URLs (``--storage``):

- none: an SQLite database ``study.db`` in the output folder;
- ``sqlite:///path``, ``postgresql://user@host/db`` (driven by psycopg 3), ``mysql+pymysql://...``: an
  Optuna ``RDBStorage`` through SQLAlchemy, with a heartbeat so that a trial whose worker died is marked
  failed and the others go on;
- ``journal:PATH``: Optuna's journal file (``JournalFileBackend``), for a shared file system;
- ``grpc://host:port``: Optuna's gRPC storage proxy (``pip install grpcio``).

A URL's password is never printed: :func:`display_url` hides it and :func:`redact` scrubs it from any
driver message before it reaches an ``error:`` line.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from advisor.errors import AdvisorError, MissingDependencyError, UsageError
from advisor.tune import DISTRIBUTED_HINT

if TYPE_CHECKING:
    import optuna

Kind = Literal["sqlite", "rdb", "journal", "grpc"]

DEFAULT_FILE = "study.db"
CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_S = 60  # several local workers take turns writing one SQLite file
META_KEY = "dropout_advisor"
META_WAIT_S = 15.0  # how long a joining worker waits for the creator to write the study's key
CREATE_ATTEMPTS = 5
_CREATE_RACE = re.compile(r"already exists|duplicate key|UNIQUE constraint failed|database is locked", re.IGNORECASE)

_FORMS = "sqlite:///path.db, postgresql://user@host/db, mysql+pymysql://user@host/db, journal:PATH, grpc://host:port"


class StorageError(AdvisorError):
    """A storage that cannot be reached, refuses the credentials, or holds an incompatible study."""


@dataclass(frozen=True)
class StorageRef:
    url: str  # as used to connect; may hold a password, never printed
    kind: Kind
    display: str  # the password hidden

    @property
    def heartbeat(self) -> bool:
        return self.kind in ("sqlite", "rdb")

    @property
    def password(self) -> str | None:
        if self.kind not in ("sqlite", "rdb"):
            return None
        try:
            from sqlalchemy.engine import make_url

            password: str | None = make_url(self.url).password
            return password
        except Exception:
            return None


def display_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redact(text: str, ref: StorageRef | None) -> str:
    """``text`` without the storage's password, raw or URL-encoded."""
    if ref is None:
        return text
    secret = ref.password
    if secret is None:
        parts = urlsplit(ref.url)
        secret = unquote(parts.password) if parts.password else None
    if secret:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, "***")
    return text


def parse_storage(url: str | None, out_dir: Path) -> StorageRef:
    """The storage a study uses: ``url`` as given, or SQLite ``study.db`` in ``out_dir`` when None."""
    if url is None:
        path = (Path(out_dir) / DEFAULT_FILE).resolve()
        return StorageRef(url=f"sqlite:///{path}", kind="sqlite", display=str(path))
    url = url.strip()
    if url.startswith("journal:"):
        path_text = url.removeprefix("journal:")
        if path_text.startswith("//"):
            path_text = path_text[2:]
        if not path_text:
            raise UsageError("--storage journal: needs a file path", hint="e.g. --storage journal:/shared/study.log")
        return StorageRef(url=f"journal:{path_text}", kind="journal", display=f"journal:{path_text}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "grpc":
        parts = urlsplit(url)
        if not parts.hostname:
            raise UsageError(f"--storage {url}: no host", hint="e.g. --storage grpc://localhost:13000")
        return StorageRef(url=url, kind="grpc", display=url)
    if scheme == "sqlite":
        return StorageRef(url=url, kind="sqlite", display=url)
    if scheme in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; the 'distributed' extra installs psycopg 3.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
        scheme = "postgresql+psycopg"
    base = scheme.split("+", 1)[0]
    if base not in ("postgresql", "mysql", "mariadb", "oracle", "mssql"):
        raise UsageError(f"--storage: unknown storage URL '{display_url(url)}'", hint=f"use one of: {_FORMS}")
    return StorageRef(url=url, kind="rdb", display=display_url(url))


def _require_driver(ref: StorageRef) -> None:
    scheme = ref.url.split("://", 1)[0].lower()
    if scheme == "postgresql+psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "a PostgreSQL storage needs the psycopg driver, which is not installed", hint=DISTRIBUTED_HINT
            ) from None
    if ref.kind == "grpc":
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "a gRPC storage proxy needs grpcio, which is not installed", hint="pip install grpcio"
            ) from None


_CREDENTIALS = re.compile(
    r"password authentication failed|authentication failed|access denied|no password supplied|"
    r"password is missing|role \S+ does not exist|invalid password",
    re.IGNORECASE,
)
_NO_DATABASE = re.compile(r'database "?[^"\s]+"? does not exist|unknown database', re.IGNORECASE)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def storage_error(exc: BaseException, ref: StorageRef) -> StorageError:
    """A driver's failure as one ``error:`` line and a ``hint:``, with the password scrubbed."""
    detail = redact(_first_line(exc), ref)
    full = redact(str(getattr(exc, "orig", None) or exc), ref)
    if ref.kind == "sqlite":
        return StorageError(
            f"cannot open the SQLite study {ref.display}: {detail}",
            hint="check that its folder exists and is writable",
        )
    if _CREDENTIALS.search(full):
        return StorageError(
            f"the storage {ref.display} refused the credentials: {detail}",
            hint="check the user name and password (for PostgreSQL also PGPASSWORD or ~/.pgpass)",
        )
    if _NO_DATABASE.search(full):
        return StorageError(
            f"the storage {ref.display} has no such database: {detail}",
            hint="create the database first (e.g. createdb), then run tune again",
        )
    return StorageError(
        f"cannot reach the storage {ref.display}: {detail}",
        hint="check the host, the port and that the database server is running",
    )


def open_storage(ref: StorageRef, *, heartbeat_s: int) -> optuna.storages.BaseStorage:
    """Connect to the storage (creating Optuna's tables in an empty database); errors are StorageError."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    _require_driver(ref)
    if ref.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(ref.url.removeprefix("journal:")))
        except OSError as exc:
            raise StorageError(
                f"cannot open the journal file {ref.display}: {exc.strerror or exc}",
                hint="check that its folder exists and is writable",
            ) from None
    if ref.kind == "grpc":
        parts = urlsplit(ref.url)
        return optuna.storages.GrpcStorageProxy(host=parts.hostname or "localhost", port=parts.port or 13000)

    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {}
    scheme = ref.url.split("://", 1)[0].lower()
    if ref.kind == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif scheme.startswith("postgresql") or scheme.startswith(("mysql", "mariadb")):
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        for attempt in range(CREATE_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        ref.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s
                    )
                break
            except (
                sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.ProgrammingError,
                sqlalchemy.exc.IntegrityError,
            ) as exc:
                # Workers starting together on an empty database race to create Optuna's tables; the loser
                # finds them made and tries again.
                if attempt + 1 == CREATE_ATTEMPTS or not _CREATE_RACE.search(str(exc)):
                    raise
                time.sleep(0.2 * (attempt + 1))
        if ref.kind == "sqlite":
            _sqlite_wal(storage)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise storage_error(exc, ref) from None
    except ImportError as exc:  # a driver SQLAlchemy wanted and could not import
        module = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "its driver"
        raise MissingDependencyError(
            f"the storage {ref.display} needs the database driver '{module}', which is not installed",
            hint="for MySQL: pip install pymysql and use mysql+pymysql://; for PostgreSQL: " + DISTRIBUTED_HINT,
        ) from None


def _sqlite_wal(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging with ``synchronous=NORMAL``: a trial's dozen small writes stop costing an fsync
    each (measured here: 0.48 -> 0.10 s of storage time per 15-epoch trial). Safe against a killed process;
    only an OS crash can lose the last transactions. SQLite on a network file system is unsafe either way
    (use ``journal:`` there)."""
    import sqlalchemy

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # the connections opened so far predate the listener
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")


# ---- the study and its key ----


def _difference(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    keys = sorted(set(mine) | set(theirs))
    return [k for k in keys if mine.get(k) != theirs.get(k)]


_WHAT = {
    "space": "search space",
    "data": "data",
    "arch": "network",
    "epochs": "epochs",
    "batch_size": "batch size",
    "lr": "learning rate",
    "seed": "training seed",
    "objective": "objective",
    "tool": "tool",
}


def open_study(
    storage: optuna.storages.BaseStorage,
    ref: StorageRef,
    name: str,
    key: dict[str, Any],
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    enqueue: dict[str, Any] | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study ``name`` (recording ``key`` and enqueuing ``enqueue`` as its first trial) or join
    it, refusing a study whose key differs. Returns the study and whether this call created it."""
    import optuna
    import sqlalchemy.exc

    try:
        try:
            study = optuna.create_study(
                storage=storage, study_name=name, sampler=sampler, pruner=pruner, direction="minimize"
            )
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        else:
            study.set_user_attr(META_KEY, key)
            if enqueue is not None:
                study.enqueue_trial(enqueue)
            return study, True
        deadline = time.monotonic() + META_WAIT_S
        theirs = study.user_attrs.get(META_KEY)
        while theirs is None and time.monotonic() < deadline:  # the creator may be writing it right now
            time.sleep(0.5)
            theirs = optuna.load_study(storage=storage, study_name=name).user_attrs.get(META_KEY)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise storage_error(exc, ref) from None
    if theirs is None:
        raise StorageError(
            f"study '{name}' in {ref.display} was not created by dropout-advisor tune",
            hint="choose another name with --study",
        )
    if study.directions != [optuna.study.StudyDirection.MINIMIZE] or theirs != key:
        changed = [_WHAT.get(k, k) for k in _difference(key, theirs if isinstance(theirs, dict) else {})]
        raise StorageError(
            f"study '{name}' in {ref.display} was created with a different {', '.join(changed) or 'setup'}",
            hint="run with the study's original settings (or --resume --out its folder), or choose another --study",
        )
    return study, False
