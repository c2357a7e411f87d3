"""Storage URLs, their errors without passwords, and the study key that refuses a different search."""

from __future__ import annotations

import socket

import optuna
import pytest

from advisor.errors import UsageError
from advisor.tune.search import make_pruner, make_sampler, quiet_optuna
from advisor.tune.storage import (
    StorageError,
    StorageRef,
    display_url,
    open_storage,
    open_study,
    parse_storage,
    redact,
)

SECRET = "s3cr3t-Pw"


def test_the_default_storage_is_study_db_in_the_output_folder(tmp_path):
    ref = parse_storage(None, tmp_path / "out")
    assert ref.kind == "sqlite" and ref.url == f"sqlite:///{(tmp_path / 'out' / 'study.db').resolve()}"
    assert ref.heartbeat


def test_postgresql_urls_use_the_psycopg_3_driver():
    for url in ("postgresql://tuner@db/studies", "postgres://tuner@db/studies"):
        assert parse_storage(url, None).url == "postgresql+psycopg://tuner@db/studies"  # type: ignore[arg-type]
    explicit = "postgresql+psycopg2://tuner@db/studies"
    assert parse_storage(explicit, None).url == explicit  # type: ignore[arg-type]


def test_journal_and_grpc_urls():
    assert parse_storage("journal:///shared/s.log", None).url == "journal:/shared/s.log"  # type: ignore[arg-type]
    assert parse_storage("journal:s.log", None).kind == "journal"  # type: ignore[arg-type]
    grpc = parse_storage("grpc://localhost:13000", None)  # type: ignore[arg-type]
    assert grpc.kind == "grpc" and not grpc.heartbeat


def test_an_unknown_scheme_is_a_usage_error_without_the_password():
    with pytest.raises(UsageError) as err:
        parse_storage(f"redis://user:{SECRET}@host/0", None)  # type: ignore[arg-type]
    assert SECRET not in err.value.message and "***" in err.value.message
    assert "postgresql://" in (err.value.hint or "")


def test_display_hides_the_password():
    assert display_url(f"postgresql://tuner:{SECRET}@db:5432/x") == "postgresql://tuner:***@db:5432/x"
    assert display_url("postgresql://tuner@db/x") == "postgresql://tuner@db/x"


def test_redact_scrubs_raw_and_url_encoded_passwords():
    ref = parse_storage("postgresql://tuner:p%40ss%2Fword@db/x", None)  # type: ignore[arg-type]
    assert redact("failed for p@ss/word and p%40ss%2Fword", ref) == "failed for *** and ***"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_postgresql_server_is_a_storage_error_without_the_password():
    ref = parse_storage(f"postgresql://tuner:{SECRET}@127.0.0.1:{_closed_port()}/studies", None)  # type: ignore[arg-type]
    with pytest.raises(StorageError) as err:
        open_storage(ref, heartbeat_s=10)
    assert err.value.exit_code == 2
    assert err.value.message.startswith("cannot reach the storage postgresql+psycopg://tuner:***@127.0.0.1:")
    assert SECRET not in err.value.message + (err.value.hint or "")
    assert "running" in (err.value.hint or "")


def test_an_sqlite_file_in_a_missing_folder_is_a_storage_error(tmp_path):
    ref = parse_storage(f"sqlite:///{tmp_path}/missing/study.db", tmp_path)
    with pytest.raises(StorageError, match="cannot open the SQLite study"):
        open_storage(ref, heartbeat_s=10)


def _study(ref: StorageRef, key: dict, name: str = "s") -> tuple[optuna.Study, bool]:
    quiet_optuna()
    return open_study(open_storage(ref, heartbeat_s=10), ref, name, key, sampler=make_sampler(0), pruner=make_pruner(6))


def test_the_creator_records_the_key_and_the_next_worker_joins(tmp_path):
    ref = parse_storage(None, tmp_path)
    key = {"space": {"a": 1}, "epochs": 3}
    first, created = _study(ref, key)
    second, joined_created = _study(ref, key)
    assert created and not joined_created
    assert second._study_id == first._study_id


def test_the_creator_enqueues_the_plan_as_the_first_trial(tmp_path):
    ref = parse_storage(None, tmp_path)
    quiet_optuna()
    study, _ = open_study(
        open_storage(ref, heartbeat_s=10),
        ref,
        "s",
        {"k": 1},
        sampler=make_sampler(0),
        pruner=make_pruner(6),
        enqueue={"placement": "advisor", "p_fc": 0.5},
    )
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.number for t in waiting] == [0]
    assert waiting[0].system_attrs["fixed_params"] == {"placement": "advisor", "p_fc": 0.5}


def test_a_study_with_a_different_search_space_is_refused(tmp_path):
    ref = parse_storage(None, tmp_path)
    _study(ref, {"space": {"a": 1}, "epochs": 3})
    with pytest.raises(StorageError) as err:
        _study(ref, {"space": {"a": 2}, "epochs": 3})
    assert err.value.exit_code == 2
    assert "was created with a different search space" in err.value.message
    assert "--study" in (err.value.hint or "")


def test_a_study_not_made_by_tune_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("advisor.tune.storage.META_WAIT_S", 0.1)
    ref = parse_storage(None, tmp_path)
    optuna.create_study(storage=ref.url, study_name="theirs")
    with pytest.raises(StorageError, match="was not created by dropout-advisor tune"):
        _study(ref, {"k": 1}, name="theirs")


def test_the_study_key_names_user_data_by_content_not_by_path(tmp_path):
    from advisor.experiment.variants import advisor_spec
    from advisor.recommend import recommend
    from advisor.tune.data import DataRef
    from advisor.tune.search import Settings
    from advisor.tune.space import derive_space

    space = derive_space(recommend(advisor_spec("mlp", samples=100)), "mlp")

    def key(file: str) -> dict:
        ref = DataRef(dataset="d.npz", file=file, sha256="ab" * 32)
        return Settings(data=ref, arch="mlp", epochs=2, batch_size=64, lr=5e-3, device="cpu", seed=0).key(space)

    assert key("d.npz") == key("/home/someone/d.npz")  # two machines, one file
    other = Settings(
        data=DataRef(dataset="d.npz", file="d.npz", sha256="cd" * 32), arch="mlp", epochs=2, batch_size=64, lr=5e-3,
        device="cpu", seed=0,
    )  # fmt: skip
    assert other.key(space) != key("d.npz")
