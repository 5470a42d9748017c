"""Pytest plugin: a real PostgreSQL server started by the test session, when asked for.

Set APIAUTH_TEST_DATABASE=postgresql to run the suite on PostgreSQL: the session starts a
throwaway server (Debian's PostgreSQL 15, initdb run as the `postgres` user when the tests
run as root), and every test gets a database of its own, copied from a template that holds
the migrated schema.
"""

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

BIN = Path(os.environ.get("APIAUTH_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = "install Debian's PostgreSQL: apt-get install -y postgresql"
TEMPLATE = "apiauth_template"


def wanted():
    """Tell whether this test session runs on PostgreSQL."""
    return os.environ.get("APIAUTH_TEST_DATABASE", "sqlite") == "postgresql"


@pytest.fixture(scope="session")
def postgres_wanted():
    """Whether this test session runs on PostgreSQL (APIAUTH_TEST_DATABASE=postgresql)."""
    return wanted()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command):
    """Run a PostgreSQL tool, as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, text=True)


class PostgresServer:
    """A PostgreSQL server in a temporary folder, trusting local connections."""

    def __init__(self):
        if not (BIN / "initdb").exists():
            pytest.exit(f"PostgreSQL was asked for but {BIN / 'initdb'} is missing: {INSTALL_HINT}", returncode=3)
        self.folder = Path(tempfile.mkdtemp(prefix="apiauth-pg-"))
        self.port = _free_port()
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        _as_postgres([str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"])
        self.start()

    @property
    def data(self):
        return self.folder / "data"

    def start(self):
        """Start the server on its port and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", options, "start"])

    def shut_down(self):
        """Stop the server as an operator restarting it would (fast: sessions are cut), keeping its data."""
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    template_name = TEMPLATE

    @property
    def template_url(self):
        return self.url(TEMPLATE)

    def url(self, database="postgres"):
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, statement):
        """Run one statement outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as connection:
            connection.execute(statement)

    def new_database(self, template=TEMPLATE):
        """Create a fresh database from the template and return its URL."""
        name = f"test_{next(self._names)}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def dump(self, database):
        """Return pg_dump's plain-text dump of a database."""
        return subprocess.run(
            [str(BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", database],
            check=True, capture_output=True, text=True,
        ).stdout

    def stop(self):
        """Stop the server for good and delete its folder."""
        _as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session, with an empty template database."""
    server = PostgresServer()
    server.execute(f'CREATE DATABASE "{TEMPLATE}"')
    yield server
    server.stop()
