"""Tuning on PostgreSQL: the URL forms taken (``postgresql://`` runs on psycopg 3), a wrong DSN
or an unreachable server is one line naming host:port without the password, quickly (libpq's
connect timeout), and Optuna's ``SELECT ... FOR UPDATE`` hands a waiting trial to exactly one
of many workers claiming it at once (why the SQLite-only ``_AskLock`` is not needed there).
The server is real (tests/postgres.py, the ``postgres_server`` fixture)."""

from __future__ import annotations

import socket
import threading
import time

import optuna
import pytest

from components.common.errors import UserError
from components.tune import core
from components.tune.__main__ import main
from components.tune.config import postgres_endpoint, redact, sqlalchemy_url
from components.tune.core import DEFAULTS, TuneConfig
from components.tune.study import open_study


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/optuna", "postgresql+psycopg://u:p@db:5432/optuna"),
        ("postgres://u@db/optuna", "postgresql+psycopg://u@db/optuna"),
        ("postgresql+psycopg://u@db/optuna", "postgresql+psycopg://u@db/optuna"),
        ("postgresql://", "postgresql+psycopg://"),  # everything from libpq's PG* environment
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("mysql+pymysql://u@db/optuna", "mysql+pymysql://u@db/optuna"),
    ],
)
def test_postgresql_urls_run_on_psycopg3(given, used):
    assert sqlalchemy_url(given) == used


def test_endpoint_and_redaction_never_show_the_password(monkeypatch):
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    assert postgres_endpoint("postgresql://u:pw@db.example:6543/x") == "db.example:6543"
    assert postgres_endpoint("postgresql://u@db/x") == "db:5432"
    assert postgres_endpoint("postgresql://") == "localhost:5432"
    monkeypatch.setenv("PGHOST", "fareflow-postgres.fareflow")
    monkeypatch.setenv("PGPORT", "5433")
    assert postgres_endpoint("postgresql://") == "fareflow-postgres.fareflow:5433"
    assert redact("postgresql://u:s3cr:et@db/x") == "postgresql://u:***@db/x"
    assert redact("postgresql://db/x?user=u&password=s3cret&sslmode=require") == (
        "postgresql://db/x?user=u&password=***&sslmode=require"
    )
    with pytest.raises(UserError, match=r"^--storage postgresql://u:\*\*\*@db:port/x: not a PostgreSQL URL"):
        TuneConfig("s", storage="postgresql://u:pw@db:port/x").validate()


def _fails_in_one_line(capsys, splits, url: str, *extra: str) -> tuple[str, float]:
    started = time.monotonic()
    code = main(["--splits", str(splits), "--trials", "1", "--storage", url, *extra])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0], elapsed


def test_a_wrong_password_is_one_line_naming_host_and_port(postgres_server, shared_splits, capsys):
    url = postgres_server.url("postgres", password="not-the-password")
    line, elapsed = _fails_in_one_line(capsys, shared_splits, url)
    where = f"{postgres_server.host}:{postgres_server.port}"
    assert line == (
        f"fareflow tune: error: --storage postgresql://fareflow:***@{where}/postgres: cannot open study "
        f"'fareflow-tune' on PostgreSQL at {where} (FATAL: password authentication failed for user "
        '"fareflow")'
    )
    assert "not-the-password" not in line and elapsed < 10


def test_a_refused_port_is_one_line_and_fast(postgres_server, shared_splits, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line, elapsed = _fails_in_one_line(capsys, shared_splits, postgres_server.url("postgres", port=port))
    assert f"on PostgreSQL at 127.0.0.1:{port} (Connection refused)" in line, line
    assert postgres_server.password not in line and elapsed < 10


def test_a_server_that_never_answers_fails_at_the_connect_timeout(shared_splits, monkeypatch):
    """A listening socket that never speaks (a black-holed address, a hung server): libpq's
    connect_timeout ends the attempt after ``connect_timeout_s``, in one line."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        config = TuneConfig(
            str(shared_splits),
            trials=1,
            storage=f"postgresql://u:hush@127.0.0.1:{port}/db",
            connect_timeout_s=2,
        )
        started = time.monotonic()
        with pytest.raises(UserError) as err:
            core.run(config, log=lambda _m: None)
        elapsed = time.monotonic() - started
    message = str(err.value)
    assert "\n" not in message and "hush" not in message, message
    assert f"on PostgreSQL at 127.0.0.1:{port} (" in message and "timeout" in message.lower(), message
    assert 1.5 < elapsed < 15  # the timeout, not TCP's minutes (libpq may try twice: SSL, then not)


def test_dsn_from_libpq_environment(postgres_server, monkeypatch, tmp_path):
    """``--storage postgresql://`` with the host, port, user, password and database in PG*
    variables (the cluster Job's Secret): the study opens; a wrong PGPASSWORD is not shown."""
    url = postgres_server.create_database("from_env")
    monkeypatch.setenv("PGHOST", postgres_server.host)
    monkeypatch.setenv("PGPORT", str(postgres_server.port))
    monkeypatch.setenv("PGUSER", postgres_server.user)
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    monkeypatch.setenv("PGDATABASE", "from_env")
    study = open_study(TuneConfig("s", storage="postgresql://", study_name="env"))
    assert study.study_name == "env"
    assert [s.study_name for s in optuna.get_all_study_summaries(sqlalchemy_url(url))] == ["env"]
    monkeypatch.setenv("PGPASSWORD", "wrong-env-secret")
    with pytest.raises(UserError) as err:
        open_study(TuneConfig("s", storage="postgresql://", study_name="env"))
    assert f"PostgreSQL at {postgres_server.host}:{postgres_server.port}" in str(err.value)
    assert "wrong-env-secret" not in str(err.value)


def test_one_waiting_trial_is_claimed_by_exactly_one_of_many_workers(postgres_server):
    """Eight workers (threads, each with its own storage and connection) ask at the same moment
    while one trial waits: PostgreSQL's row lock gives it to one; the others get new trials.
    Repeated, so a race would show (the same test on SQLite, which ignores FOR UPDATE, hands the
    waiting trial to 2-5 of the 8 in most rounds)."""
    url = postgres_server.create_database("claims")
    config = TuneConfig("s", storage=url, study_name="claims")
    rounds, workers = 5, 8
    for r in range(rounds):
        study = open_study(config)
        study.enqueue_trial({**DEFAULTS, "dropout": 0.01 * (r + 1)})
        studies = [open_study(config, worker=w) for w in range(workers)]
        barrier = threading.Barrier(workers)
        got: list = []

        def claim(s, barrier=barrier, got=got) -> None:
            barrier.wait()
            trial = s.ask()
            attrs = s._storage.get_trial_system_attrs(trial._trial_id)
            got.append((trial.number, attrs.get("fixed_params")))

        threads = [threading.Thread(target=claim, args=(s,)) for s in studies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for s in (study, *studies):  # each storage's connection pool, closed with the round
            getattr(s._storage, "_backend", s._storage).engine.dispose()
        claimed = [n for n, fixed in got if fixed]
        assert len(got) == workers and len(claimed) == 1, got
        assert len({n for n, _ in got}) == workers  # distinct trial numbers
    running = optuna.load_study(study_name="claims", storage=sqlalchemy_url(url)).get_trials(
        states=(optuna.trial.TrialState.RUNNING,)
    )
    assert len(running) == rounds * workers
    assert not optuna.load_study(study_name="claims", storage=sqlalchemy_url(url)).get_trials(
        states=(optuna.trial.TrialState.WAITING,)
    )
