"""What the multi-worker benchmarks and tests/test_burst.py share: a database prepared with the
real command line, gunicorn on 127.0.0.1, a token endpoint that answers slowly or not at all,
concurrent credentials calls, a throwaway PostgreSQL.

Everything started here is stopped by its process id; loads go to 127.0.0.1 only.
"""

import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from apiauth import create_app, consumers, tokenstore
from apiauth.config import new_encryption_key
from apiauth.extensions import db

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "Bench"
# oidc-provider's confidential client (tests/oidc_provider/server.js).
OIDC_CLIENT_ID, OIDC_CLIENT_SECRET = "basic-client", "basic-secret"
SHOWN_TOKEN = re.compile(r"^Token \(shown once\): (\S+)$", re.MULTILINE)
# The access log names the worker (process id) that served each request.
ACCESS_LOG_FORMAT = '%(p)s "%(r)s" %(s)s'
ACCESS_LOG_LINE = re.compile(r'^<(\d+)> "(\S+) (\S+) [^"]*" (\d{3})$')
START_TIMEOUT = 20.0
CALL_TIMEOUT = 30.0
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_URL_VARIABLE = "APIAUTH_BENCH_POSTGRES_URL"


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def app_environment(database_url):
    """Return the environment of `flask --app wsgi` and gunicorn for a database, with fresh keys."""
    return {
        **os.environ,
        "APIAUTH_DATABASE_URL": database_url,
        "APIAUTH_SECRET_KEY": secrets.token_urlsafe(32),
        "APIAUTH_ENCRYPTION_KEYS": new_encryption_key(),
        # The token requests go to oidc-provider on this machine.
        "APIAUTH_OUTBOUND_ALLOW": "127.0.0.0/8",
    }


def flask_command(environment, *args, input=None):
    """Run `flask --app wsgi ARGS` from the project folder (input on its stdin); return what it printed, or fail loudly."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=60, input=input,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`flask {' '.join(args)}` failed with {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Tokens:
    """The service tokens of the prepared domain: one to create authenticators, one to use them."""

    manage: str
    use: str


def prepare_database(environment):
    """Create the tables and a domain with a `manage` and a `use` service token, through the real CLI."""
    flask_command(environment, "db", "upgrade")
    flask_command(environment, "domains", "create", DOMAIN)
    shown = {
        scope: SHOWN_TOKEN.search(flask_command(
            environment, "tokens", "create", "--domain", DOMAIN, "--name", f"bench-{scope}", "--scope", scope,
        )).group(1)
        for scope in ("manage", "use")
    }
    return Tokens(**shown)


class Gunicorn:
    """`gunicorn APP` on a free port of 127.0.0.1, started from the project folder; stop() ends it by its ids."""

    def __init__(self, environment, folder, app="wsgi:app", workers=4, threads=16):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.access_log = Path(folder) / f"access-{self.port}.log"
        self.error_log = Path(folder) / f"error-{self.port}.log"
        self.workers = workers
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
                "-b", f"127.0.0.1:{self.port}", "--access-logfile", str(self.access_log),
                "--access-logformat", ACCESS_LOG_FORMAT, "--error-logfile", str(self.error_log),
                # Several servers may run at once (tests, benchmarks): none needs the shared control socket.
                "--no-control-socket", app,
            ],
            cwd=PROJECT_ROOT, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            self._wait_until_all_workers_answer()
        except BaseException:
            self.stop()
            raise

    def _wait_until_all_workers_answer(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if len(self.worker_pids()) == self.workers and requests.get(self.url("/livez"), timeout=5).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not answer /livez within {START_TIMEOUT} s:\n{self.log()}")

    def url(self, path):
        """Return the URL of a path on this server."""
        return self.base_url + path

    def worker_pids(self):
        """Return the process ids of the workers alive now (the master's children)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return {int(pid) for pid in children.read_text().split()}
        except OSError:
            return set()

    def pids_that_served(self, method, path, status=200):
        """Return the workers whose access log shows a request of this method and path answered with status."""
        if not self.access_log.exists():
            return set()
        served = set()
        for line in self.access_log.read_text().splitlines():
            match = ACCESS_LOG_LINE.match(line)
            if match and match[2] == method and match[3] == path and int(match[4]) == status:
                served.add(int(match[1]))
        return served

    def worker_with_local_port(self, port):
        """Return the worker that owns the TCP connection whose local port this is, or None."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
        for pid in self.worker_pids():
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(descriptor) in inodes:
                        return pid
                except OSError:
                    continue
        return None

    def log(self):
        """Return what gunicorn wrote to its error log."""
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def stop(self):
        """Stop the master gracefully, then kill by id whatever of it is left."""
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


class Instances:
    """Several gunicorn masters behind one address, as a load balancer shows them: each call goes to the next.

    It stands in for a Gunicorn wherever calls are made (url), and answers for the workers of all.
    """

    def __init__(self, servers):
        self.servers = list(servers)
        self._turns = itertools.cycle(self.servers)
        self._lock = threading.Lock()

    def url(self, path):
        """Return the URL of a path on the next server in turn."""
        with self._lock:
            server = next(self._turns)
        return server.url(path)

    def worker_pids(self):
        """Return the process ids of every server's workers."""
        return set().union(*(server.worker_pids() for server in self.servers))

    def pids_that_served(self, method, path, status=200):
        """Return the workers of any server that answered this method and path with status."""
        return set().union(*(server.pids_that_served(method, path, status) for server in self.servers))


@contextmanager
def serving(environment, folder, instances=1, **options):
    """Yield a Gunicorn (or, for several instances, their Instances) on one database; stop them all after."""
    with ExitStack() as stack:
        servers = [stack.enter_context(Gunicorn(environment, folder, **options)) for _ in range(instances)]
        yield servers[0] if instances == 1 else Instances(servers)


class _ProxyServer(ThreadingHTTPServer):
    # Without a lease, every caller of a burst may come at once: don't refuse them.
    request_queue_size = 256
    daemon_threads = True


class TokenEndpointProxy:
    """A token endpoint on 127.0.0.1 in front of a real one: it forwards after a delay, or holds requests.

    A delay stands for a busy authorization server and widens the window in which callers
    find the token due; a held request stands for one that never ends, so that its caller
    can be killed while it holds the renewal lease.
    """

    FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept")
    RETURNED_HEADERS = ("Content-Type", "Cache-Control", "Pragma")

    def __init__(self, target, delay=0.0):
        self.target, self.delay = target, delay
        self.holding = False
        self.held = threading.Event()
        self.held_client_port = None
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                proxy._answer(self)

            def log_message(self, format, *args):
                pass

        self.server = _ProxyServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, request):
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if self.holding:
            self.held_client_port = request.client_address[1]
            self.held.set()
            self._released.wait()
            return  # closed unanswered: whoever sent it is gone by now
        time.sleep(self.delay)
        headers = {name: request.headers[name] for name in self.FORWARDED_HEADERS if name in request.headers}
        answer = requests.post(self.target, data=body, headers=headers, timeout=CALL_TIMEOUT)
        request.send_response(answer.status_code)
        for name in self.RETURNED_HEADERS:
            if name in answer.headers:
                request.send_header(name, answer.headers[name])
        request.send_header("Content-Length", str(len(answer.content)))
        request.end_headers()
        request.wfile.write(answer.content)

    def close(self):
        """Let held requests go and stop serving."""
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def create_oauth_authenticator(server, manage_token, token_endpoint, name="Burst"):
    """Create a client-credentials authenticator for oidc-provider through the API; return its id."""
    response = requests.post(
        server.url("/api/v1/authenticators"),
        headers={"Authorization": f"Bearer {manage_token}"},
        json={
            "method": "oauth2", "name": name, "grant_type": "client_credentials",
            "access_token_url": token_endpoint, "client_id": OIDC_CLIENT_ID,
            "client_secret": OIDC_CLIENT_SECRET, "client_authentication": "basic_header",
        },
        timeout=CALL_TIMEOUT,
    )
    if response.status_code != 201:
        raise RuntimeError(f"creating the authenticator answered {response.status_code}: {response.text}")
    return response.json()["id"]


def credentials_path(authenticator_id):
    """Return the path of an authenticator's credentials endpoint."""
    return f"/api/v1/authenticators/{authenticator_id}/credentials"


@dataclass(frozen=True)
class Answer:
    """One credentials call as the caller saw it; status 0 when no HTTP answer came."""

    status: int
    authorization: str | None
    generation: int | None
    expires_at: float | None
    seconds: float
    error: str = ""


def call_credentials(server, use_token, authenticator_id):
    """POST to the credentials endpoint once, on a connection of its own; return the Answer."""
    started = time.perf_counter()
    try:
        response = requests.post(
            server.url(credentials_path(authenticator_id)),
            headers={"Authorization": f"Bearer {use_token}"}, json={}, timeout=CALL_TIMEOUT,
        )
    except requests.RequestException as error:
        return Answer(0, None, None, None, time.perf_counter() - started, type(error).__name__)
    seconds = time.perf_counter() - started
    body = response.json() if response.headers.get("Content-Type") == "application/json" else {}
    if response.status_code != 200:
        return Answer(response.status_code, None, None, None, seconds, response.text[:300])
    return Answer(200, body["headers"].get("Authorization"), body["generation"], body["expires_at"], seconds)


def concurrent_credentials(server, use_token, authenticator_id, count):
    """Make `count` credentials calls at once, each on a thread and connection of its own; return the Answers."""
    answers = [None] * count
    start = threading.Barrier(count)

    def call(index):
        start.wait(timeout=CALL_TIMEOUT)
        answers[index] = call_credentials(server, use_token, authenticator_id)

    threads = [threading.Thread(target=call, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CALL_TIMEOUT + 5)
    return [answer or Answer(0, None, None, None, CALL_TIMEOUT, "no answer in time") for answer in answers]


def warm_up(server, use_token, authenticator_id, batch=16, rounds=50):
    """Call the credentials endpoint in concurrent batches until every worker has served one call."""
    path = credentials_path(authenticator_id)
    for _ in range(rounds):
        if server.worker_pids() <= server.pids_that_served("POST", path):
            return
        failed = [answer for answer in concurrent_credentials(server, use_token, authenticator_id, batch)
                  if answer.status != 200]
        if failed:
            raise RuntimeError(f"a warm-up call failed: {failed[0]}")
    raise RuntimeError(f"after {rounds} rounds of {batch} calls, some workers had served none")


@dataclass(frozen=True)
class Burst:
    """Concurrent credentials calls, and the token requests that reached the provider meanwhile."""

    answers: list
    token_requests: int

    @property
    def authorizations(self):
        """The distinct Authorization headers handed out."""
        return {answer.authorization for answer in self.answers}

    @property
    def failures(self):
        """The calls not answered 200."""
        return [answer for answer in self.answers if answer.status != 200]

    @property
    def next_expiry(self):
        """When the token handed out expires (the latest, should several have been)."""
        return max(answer.expires_at or 0.0 for answer in self.answers)


def counted_burst(server, provider, use_token, authenticator_id, count):
    """Make `count` credentials calls at once and count the token requests that reach the provider."""
    provider.reset_stats()
    answers = concurrent_credentials(server, use_token, authenticator_id, count)
    return Burst(answers, provider.token_requests())


def burst_at_expiry(server, provider, use_token, authenticator_id, expires_at, count):
    """Wait for the token to expire, then make a counted burst of `count` calls."""
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    return counted_burst(server, provider, use_token, authenticator_id, count)


def percentile(values, share):
    """Return the value below which `share` (0-1) of the values lie, interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(share * 1000) - 1]


# App variants for gunicorn's `module:factory(...)` syntax, e.g. 'bench.support:app_without_lease()':
# references that show what the burst counts without the lease. They patch the modules of the
# process that calls them, so only gunicorn's workers may call them.


def configured_app(**settings):
    """Return the app with settings over those of the environment, e.g. a short TOKEN_LEASE_SECONDS."""
    return create_app(settings)


def _lease_always_granted(authenticator, holder, generation, started, now):
    return True


def app_without_lease():
    """Return the app with the renewal lease always granted: whoever finds the token due renews it."""
    tokenstore._claim_lease = _lease_always_granted
    return create_app()


def app_with_process_lock():
    """Return the app with a lock per process in place of the lease: one renewal per worker at most."""
    lock, usable_tokens = threading.Lock(), consumers.usable_tokens

    def usable_tokens_one_thread_at_a_time(*args, **kwargs):
        # Wait holding no pooled connection, as the lease's waiters do: 15 threads waiting with
        # one each would starve the holder of the pool's last (5 + 10 per process, 16 threads).
        db.session.commit()
        with lock:
            return usable_tokens(*args, **kwargs)

    tokenstore._claim_lease = _lease_always_granted
    consumers.usable_tokens = usable_tokens_one_thread_at_a_time
    return create_app()


@contextmanager
def postgres_database():
    """Yield (URL of an empty PostgreSQL database, how it was had), or (None, why not).

    With APIAUTH_BENCH_POSTGRES_URL, a database is created on that server and dropped after;
    otherwise a throwaway cluster of Debian's PostgreSQL 15 is started as user postgres.
    """
    given = os.environ.get(POSTGRES_URL_VARIABLE)
    if given:
        with database_on(given) as url:
            yield url, f"a fresh database on the server of {POSTGRES_URL_VARIABLE}"
        return
    initdb = POSTGRES_BIN / "initdb"
    if not initdb.exists() or shutil.which("runuser") is None or os.geteuid() != 0:
        yield None, (f"PostgreSQL was skipped: set {POSTGRES_URL_VARIABLE}, or run as root with "
                     f"Debian's PostgreSQL 15 installed (`apt-get install -y postgresql`)")
        return
    with _throwaway_cluster() as url:
        yield url, "a throwaway PostgreSQL 15 cluster started for the run (fsync off)"


def benchmark_databases(folder, sqlite_only, notes):
    """Yield (name, URL) of each database a benchmark runs on: an SQLite file in folder, then PostgreSQL.

    PostgreSQL lives until the loop moves on; why it was left out, or how it was had, goes to notes.
    """
    yield "SQLite", f"sqlite:///{Path(folder) / 'apiauth.sqlite3'}"
    with ExitStack() as stack:
        url, name = postgres_for_run(stack, sqlite_only, notes)
        if url is not None:
            yield name, url


def postgres_for_run(stack, sqlite_only, notes):
    """Enter a PostgreSQL server for the run into stack; return (its URL, its name), or (None, None).

    Why there is none (--sqlite-only, or no way to have one), or how it was had, goes to notes.
    """
    if sqlite_only:
        notes.append("PostgreSQL was left out (--sqlite-only)")
        return None, None
    url, how = stack.enter_context(postgres_database())
    if url is None:
        notes.append(how)
        return None, None
    name = f"PostgreSQL {postgres_version(url)}"
    notes.append(f"{name}: {how}")
    return url, name


@contextmanager
def database_on(server_url):
    """Yield the URL of a fresh database on the PostgreSQL server of server_url; drop it after."""
    name = f"apiauth_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _throwaway_cluster():
    folder = tempfile.mkdtemp(prefix="apiauth-bench-pg-")
    shutil.chown(folder, "postgres")
    port = free_port()

    def as_postgres(*command):
        result = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed:\n{result.stdout}{result.stderr}")

    try:
        as_postgres(POSTGRES_BIN / "initdb", "-D", folder, "-U", "postgres", "-A", "trust", "--no-sync")
        as_postgres(POSTGRES_BIN / "pg_ctl", "-D", folder, "-l", f"{folder}/log", "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            as_postgres(POSTGRES_BIN / "pg_ctl", "-D", folder, "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postgres_version(url):
    """Return the version of the PostgreSQL server at url, e.g. 15.14."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SHOW server_version")).scalar().split()[0]
    finally:
        engine.dispose()


def publish(path, text, start, end):
    """Print a benchmark's section and put it into the markdown file at path."""
    print(text)
    write_section(path, text, start, end)
    print(f"Wrote {path}.")


def write_section(path, text, start, end):
    """Put a benchmark's section (text, from its start marker to its end marker) into a markdown file."""
    old = path.read_text() if path.exists() else (
        "# Benchmarks\n\nFigures written by the benchmarks under `bench/` (see bench/README.md); "
        "each section is replaced by the next run of its benchmark.\n"
    )
    if start in old and end in old:
        before, rest = old.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        new = before + text + ("\n" + after if after else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
