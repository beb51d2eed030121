"""A real, throw-away PostgreSQL server for tests (``initdb`` + ``pg_ctl``, no Docker).

``PostgresServer.start()`` initialises a cluster in a new temporary directory, starts it on a
free loopback port (its unix socket in that directory too, never ``/var/run/postgresql``) with
password authentication, and ``stop()`` shuts it down and removes the directory. PostgreSQL
refuses to run as root, and CI runs as root: the server then runs as the ``postgres`` user
when there is one (Debian's ``postgresql`` package makes it), else as ``nobody``, through
``subprocess``'s ``user=``/``group=`` (no sudo, su or PAM needed).

Binaries: ``initdb``/``pg_ctl`` on ``PATH``, else the newest ``/usr/lib/postgresql/*/bin``
(Debian installs them there without putting them on ``PATH``). :func:`require` skips a test
with one line when there is none, or fails it when ``POSTGRES_REQUIRED=1`` (``.ci/run``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REQUIRED_ENV = "POSTGRES_REQUIRED"
USER = "fareflow"
PASSWORD = "fareflow-test-secret"  # a throw-away server on 127.0.0.1; tests check it never leaks


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    return candidates[-1] if candidates else None


def missing() -> str | None:
    """Why no server can be started here, or None."""
    for name in ("initdb", "pg_ctl"):
        if find_binary(name) is None:
            return f"PostgreSQL not installed ({name} not found; Debian: apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install -e '.[train]')"
    return None


def require() -> None:
    """Skip (one line) when PostgreSQL cannot run here; fail instead under POSTGRES_REQUIRED=1."""
    import pytest

    why = missing()
    if why is None:
        return
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{REQUIRED_ENV}=1 but {why}", pytrace=False)
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody account exists")


@dataclass
class PostgresServer:
    root: Path
    port: int
    account: pwd.struct_passwd | None

    host = "127.0.0.1"
    user = USER
    password = PASSWORD

    @classmethod
    def start(cls, attempts: int = 3) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="fareflow-pg-", dir="/tmp"))
        account = _run_as()
        server = cls(root, 0, account)
        try:
            (root / "pwfile").write_text(PASSWORD + "\n")
            if account is not None:  # the server's own files, readable by it alone
                for path in (root, root / "pwfile"):
                    os.chown(path, account.pw_uid, account.pw_gid)
            os.chmod(root, 0o700)
            server._run(
                find_binary("initdb"), "-D", str(root / "data"), "-U", USER, "--auth=scram-sha-256",
                f"--pwfile={root / 'pwfile'}", "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
            for attempt in range(attempts):  # another process may take the free port first
                server.port = _free_port()
                options = (
                    f"-c listen_addresses={cls.host} -p {server.port} -k {root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
                )
                done = server._run(
                    find_binary("pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"),
                    "-w", "-t", "30", "-o", options, "start", check=attempt == attempts - 1,
                )  # fmt: skip
                if done.returncode == 0:
                    return server
        except BaseException:
            server.stop()
            raise
        raise AssertionError("unreachable")

    def _run(self, *argv: str | None, check: bool = True) -> subprocess.CompletedProcess:
        extra = {}
        if self.account is not None:
            extra = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root), "LC_ALL": "C"}
        done = subprocess.run(
            [str(a) for a in argv],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            **extra,
        )
        if check and done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")
        return done

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run(find_binary("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w",
                      "stop", check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, password: str | None = None, port: int | None = None) -> str:
        """A ``postgresql://`` URL (fareflow maps it to psycopg 3) of a database on this server."""
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{secret}@{self.host}:{port or self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres",
            autocommit=True, connect_timeout=10,
        ) as conn:  # fmt: skip
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
