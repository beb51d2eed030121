"""Entrypoint of the fareflow MLflow image: ``mlflow server`` on the project's PostgreSQL.

1. Reads the PostgreSQL credentials from files (the ``fareflow-postgres`` Secret mounted at
   ``$POSTGRES_SECRET_DIR``, default /etc/fareflow-postgres: POSTGRES_USER, POSTGRES_PASSWORD,
   POSTGRES_DB), never from the command line; and the object store's keys from files too (the
   ``fareflow-s3`` Secret mounted at ``$S3_SECRET_DIR``, default /etc/fareflow-s3:
   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), which it puts in the server's environment (where
   boto3 reads them). No such directory: boto3's own chain (IRSA, instance roles) decides.
2. Waits for the server (``$POSTGRES_HOST``:``$POSTGRES_PORT``, default fareflow-postgres:5432,
   at most ``$POSTGRES_WAIT_S`` seconds, default 300: only while it cannot be reached; a refused
   password or a missing database fails at once) and creates MLflow's own database
   ``$MLFLOW_DATABASE`` (default ``mlflow``) when it is missing: MLflow and Optuna both keep an
   ``alembic_version`` table, so they cannot share one.
3. Replaces itself with ``mlflow server`` (backend store ``postgresql+psycopg://...`` passed
   as ``MLFLOW_BACKEND_STORE_URI``, off the command line), ``--artifacts-destination
   $MLFLOW_ARTIFACTS_DESTINATION --serve-artifacts`` on ``$MLFLOW_PORT`` (default 5000), plus
   any arguments given to the container.

Standard library and psycopg only; one line on stderr and exit 2 for a setting that is wrong.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def fail(message: str) -> None:
    print(f"mlflow-server: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def secret(directory: Path, key: str, name: str = "fareflow-postgres") -> str:
    """One key of the Secret ``name`` mounted at ``directory``."""
    path = directory / key
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        fail(f"{path}: {err.strerror} (mount the {name} Secret there)")
    if not value:
        fail(f"{path}: empty")
    return value


def s3_credentials(directory: Path) -> dict[str, str]:
    """The object store's keys from the mounted ``fareflow-s3`` Secret; none without it."""
    if not directory.is_dir():
        return {}
    return {key: secret(directory, key, "fareflow-s3") for key in S3_KEYS}


def store_uri(user: str, password: str, host: str, port: str, database: str) -> str:
    """SQLAlchemy URL for psycopg 3, user and password escaped."""
    return f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"


def ensure_database(conninfo: dict, database: str, wait_s: float) -> None:
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn = psycopg.connect(**conninfo, autocommit=True, connect_timeout=5)
            break
        except psycopg.OperationalError as err:
            # The server answered after reading the password (wrong password, no such user or
            # database): waiting will not change it. Otherwise it is not up (yet): wait.
            refused = err.pgconn is not None and err.pgconn.used_password
            if refused or time.monotonic() > deadline:
                fail(
                    f"PostgreSQL at {conninfo['host']}:{conninfo['port']}: {str(err).strip().splitlines()[0]}"
                )
            time.sleep(2)
    with conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            print(f"mlflow-server: created database {database}", file=sys.stderr)


def main(argv: list[str]) -> None:
    env = os.environ
    secrets = Path(env.get("POSTGRES_SECRET_DIR", "/etc/fareflow-postgres"))
    user, password = secret(secrets, "POSTGRES_USER"), secret(secrets, "POSTGRES_PASSWORD")
    admin_db = secret(secrets, "POSTGRES_DB")
    host, port = env.get("POSTGRES_HOST", "fareflow-postgres"), env.get("POSTGRES_PORT", "5432")
    database = env.get("MLFLOW_DATABASE", "mlflow")
    artifacts = env.get("MLFLOW_ARTIFACTS_DESTINATION", "")
    if not artifacts:
        fail("MLFLOW_ARTIFACTS_DESTINATION is not set (e.g. s3://mlpipeline/mlflow)")
    s3 = s3_credentials(Path(env.get("S3_SECRET_DIR", "/etc/fareflow-s3")))
    conninfo = {"host": host, "port": port, "user": user, "password": password, "dbname": admin_db}
    ensure_database(conninfo, database, float(env.get("POSTGRES_WAIT_S", "300")))
    # mlflow server reads --backend-store-uri from here: the password stays off the command line
    os.environ["MLFLOW_BACKEND_STORE_URI"] = store_uri(user, password, host, port, database)
    os.environ.update(s3)  # boto3 (the artifact proxy) reads them there, never the pod spec
    command = [
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
        "--host",
        env.get("MLFLOW_HOST", "0.0.0.0"),
        "--port",
        env.get("MLFLOW_PORT", "5000"),
        "--workers",
        env.get("MLFLOW_WORKERS", "2"),
        *argv,
    ]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
