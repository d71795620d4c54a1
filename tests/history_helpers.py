"""Databases for the history tests: a SQLite file, or a throwaway PostgreSQL cluster.

:class:`PostgresCluster` runs Debian's ``initdb`` / ``pg_ctl`` in a temporary
folder, listening on a free loopback port only, with ``trust`` authentication
for one local superuser; it is stopped and deleted afterwards. PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres``
user (Debian's package creates it), or ``nobody``. :func:`postgres_problem`
says why no cluster can be started here (the tests then skip with it).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from skin.history.store import NewEntry
from tests.app_helpers import free_port

PG_SUPERUSER = "skinlens"
_counter = itertools.count()


def entry(value: float = 0.2, **kw) -> NewEntry:
    """A small entry: one condition model's scores and the age estimate, with their noise."""
    fields = {"scores": {"condition:mel": value, "condition:malignant": value + 0.1, "age:age": 30.0 + value},
              "noise": {"condition:mel": 0.01, "condition:malignant": 0.01, "age:age": 1.0},
              "photo_type": "closeup", "tone_bucket": "medium", "quality_flags": ()}
    fields.update(kw)
    return NewEntry(**fields)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(debian[-1]) if debian else None


def _run_as() -> str | None:
    """The account the server runs under when we are root (``None``: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def postgres_problem() -> str | None:
    """Why a throwaway PostgreSQL cluster cannot be started here (``None``: it can)."""
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        return "PostgreSQL's initdb / pg_ctl not found (Debian: apt-get install postgresql)"
    if os.geteuid() == 0 and (_run_as() is None or shutil.which("runuser") is None):
        return "running as root without a postgres/nobody account and runuser to start the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (requirements.txt)"
    return None


class PostgresCluster:
    """A PostgreSQL server in a temporary folder (context manager); :meth:`new_database` gives a URL."""

    def __enter__(self) -> PostgresCluster:
        self.folder = Path(tempfile.mkdtemp(prefix="skinlens-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user = _run_as()
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.folder, info.pw_uid, info.pw_gid)
        self.folder.chmod(0o700)
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", PG_SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=on"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options,
                  "-w", "-t", "60", "start")
        return self

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, cwd=self.folder, timeout=120)
        if proc.returncode:
            log = self.folder / "log"
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a fresh, empty database on this server."""
        import sqlalchemy as sa

        name = f"t{os.getpid()}_{next(_counter)}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        return self.url(name)

    def __exit__(self, *exc) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
