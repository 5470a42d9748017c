"""Benchmark the credentials endpoint's requests per second against a bare endpoint of the same app.

gunicorn (4 workers) serves the app on a database prepared with the real command line, SQLite
and then PostgreSQL; an OAuth authenticator holds a cached token from oidc-provider that
outlives the run. wrk loads the credentials endpoint (POST with a service token) and GET
/livez, a constant JSON answer, in turns, so that a noisy neighbour slows both alike; only the
ratio of the medians is judged on SQLite, the default database; PostgreSQL's is measured
beside it and reported, not judged (each call is a round trip to a database server there).
Below the ratio required (or with
--profile), the credentials call is profiled in-process (cProfile on Flask's test client, same
database) to show where its time goes.
"""

import argparse
import cProfile
import io
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event

from apiauth import create_app
from apiauth.extensions import db
from bench.pane import machine
from bench.support import (
    Gunicorn,
    app_environment,
    benchmark_databases,
    call_credentials,
    create_oauth_authenticator,
    credentials_path,
    prepare_database,
    publish,
)
from tests.support.oidc import start_oidc_provider

MIN_RATIO = 0.60
# The database the requirement is judged on; the others are reported beside it.
JUDGED = "SQLite"
COMMAND = ".venv/bin/python -m bench.throughput"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench.throughput: start -->"
SECTION_END = "<!-- bench.throughput: end -->"
WRK_MISSING = "wrk is not installed: `apt-get install -y wrk` (Debian), then run again."
# Longer than any run: the token stays cached throughout.
TOKEN_TTL = 3600
WARMUP_SECONDS = 2
CREDENTIALS, BARE = "credentials", "bare"
REQUESTS_PER_SECOND = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
NOT_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
MEDIAN_LATENCY = re.compile(r"^\s+50%\s+(\S+)$", re.MULTILINE)
COLUMNS = re.compile(r"^SELECT .+? FROM ")
# Where a credentials call spends its time: (label, module file, function), cumulative per call.
STEPS = [
    ("fast path: the body, the one SELECT, the answer", "apiauth/api/views.py", "_cached_credentials"),
    ("  min_validity read from the JSON body", "apiauth/api/views.py", "_min_validity"),
    ("  read_reached: bearer token hashed, the one SELECT run", "apiauth/api/gate.py", "read_reached"),
    ("    the SELECT on a pooled DBAPI connection, values processed", "apiauth/api/gate.py", "first"),
    ("  cached_credentials: nothing due? then the answer", "apiauth/consumers.py", "cached_credentials"),
    ("    engine_config: configuration, secrets decrypted", "apiauth/authentication.py", "engine_config"),
    ("    valid_tokens: token row decrypted, validity checked", "apiauth/tokenstore.py", "valid_tokens"),
    ("full path, when a write is due (every few seconds): credentials()", "apiauth/consumers.py", "credentials"),
    ("the view and its gate in all", "apiauth/api/gate.py", "gated"),
    ("the whole request through Flask (wsgi_app)", "flask/app.py", "wsgi_app"),
]


@dataclass
class Run:
    """One wrk run against one endpoint."""

    endpoint: str
    requests_per_second: float
    median_latency: str
    errors: int


def wrk(url, options, script=None, seconds=None):
    """Run wrk against a URL; return the Run, or fail if any answer was not 2xx or a socket failed."""
    seconds = seconds or options.seconds
    command = ["wrk", f"-t{options.threads_wrk}", f"-c{options.connections}", f"-d{seconds}s", "--latency",
               *(["-s", str(script)] if script else []), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    found = REQUESTS_PER_SECOND.search(output)
    if found is None:
        raise SystemExit(f"wrk printed no Requests/sec:\n{output}")
    bad = NOT_2XX.search(output)
    sockets = SOCKET_ERRORS.search(output)
    errors = (int(bad[1]) if bad else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    median = MEDIAN_LATENCY.search(output)
    return Run(url, float(found[1]), median[1] if median else "?", errors)


def post_script(folder, use_token):
    """Write the wrk Lua script that POSTs {} with the service token."""
    script = Path(folder) / "credentials.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {use_token}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = "{}"\n'
    )
    return script


def load(server, authenticator_id, use_token, folder, options):
    """Run wrk on both endpoints in turns (order reversed every other round); return {endpoint: [Run]}."""
    targets = {
        CREDENTIALS: (server.url(credentials_path(authenticator_id)), post_script(folder, use_token)),
        BARE: (server.url("/livez"), None),
    }
    for url, script in targets.values():
        wrk(url, options, script, seconds=WARMUP_SECONDS)
    runs = {name: [] for name in targets}
    for number in range(options.rounds):
        order = list(targets) if number % 2 == 0 else list(targets)[::-1]
        for name in order:
            url, script = targets[name]
            runs[name].append(wrk(url, options, script))
    return runs


def median_rate(runs):
    return statistics.median(run.requests_per_second for run in runs)


@dataclass
class Profile:
    """A credentials call and a bare call measured in-process, and where the credentials call's time goes."""

    calls: int
    credentials_seconds: float
    bare_seconds: float
    statements: list
    steps: list
    text: str


def profile(environment, authenticator_id, use_token, calls):
    """Time and profile the two endpoints through Flask's test client on the benchmark's database."""
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": environment["APIAUTH_DATABASE_URL"],
        "ENCRYPTION_KEYS": [environment["APIAUTH_ENCRYPTION_KEYS"]],
        "SECRET_KEY": environment["APIAUTH_SECRET_KEY"],
        "OUTBOUND_ALLOW": ["127.0.0.0/8"],
    })
    client, path = app.test_client(), credentials_path(authenticator_id)
    headers = {"Authorization": f"Bearer {use_token}"}

    def credentials():
        response = client.post(path, headers=headers, json={})
        assert response.status_code == 200, response.get_data(as_text=True)

    def bare():
        client.get("/livez")

    statements = []
    with app.app_context():
        trace_statements(db.engine, statements)
    for _ in range(100):
        credentials()
        bare()
    statements.clear()
    credentials()
    # The column lists say little; what is read, and by what, tells the statements apart.
    shown = [COLUMNS.sub("SELECT … FROM ", " ".join(statement.split())) for statement in statements]
    timed = {}
    for name, call in ((CREDENTIALS, credentials), (BARE, bare)):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        timed[name] = (time.perf_counter() - started) / calls
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [credentials() for _ in range(calls)])
    stats = pstats.Stats(profiler)
    steps = [(label, _cumulative(stats, module, function) / calls) for label, module, function in STEPS]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    with app.app_context():
        db.engine.dispose()
    return Profile(calls, timed[CREDENTIALS], timed[BARE], shown, steps, text.getvalue())


def trace_statements(engine, statements):
    """Append each statement that the engine's new DBAPI connections run to `statements`.

    Traced in the driver, not by SQLAlchemy's events: the fast path runs its SELECT on the
    DBAPI connection itself.
    """

    def connected(dbapi_connection, connection_record):
        if hasattr(dbapi_connection, "set_trace_callback"):  # sqlite3
            dbapi_connection.set_trace_callback(statements.append)
        else:  # psycopg
            dbapi_connection.cursor_factory = _tracing_cursor(dbapi_connection.cursor_factory, statements)

    event.listen(engine, "connect", connected)


def _tracing_cursor(cursor_class, statements):
    class TracingCursor(cursor_class):
        def execute(self, query, *args, **kwargs):
            statements.append(str(query))
            return super().execute(query, *args, **kwargs)

    return TracingCursor


def _cumulative(stats, module, function):
    return sum(
        entry[3] for (filename, _, name), entry in stats.stats.items()
        if name == function and filename.endswith(module)
    )


def microseconds(seconds):
    return f"{seconds * 1e6:,.0f} µs"


@dataclass
class Measured:
    """What one database gave: the wrk runs per endpoint, and the profile when one was taken."""

    database: str
    runs: dict
    found: Profile | None

    @property
    def ratio(self):
        """The credentials endpoint's median requests per second over the bare endpoint's."""
        return median_rate(self.runs[CREDENTIALS]) / median_rate(self.runs[BARE])

    @property
    def errors(self):
        """Answers not 2xx, and socket errors, over every run."""
        return sum(run.errors for endpoint in self.runs.values() for run in endpoint)

    @property
    def passed(self):
        return self.ratio >= MIN_RATIO and self.errors == 0


def section(results, notes, options, started, load_average, seconds):
    """Render the figures as this benchmark's section of docs/benchmarks.md; return it and whether all passed."""
    lines = [
        SECTION_START,
        "## Throughput: the credentials endpoint against a bare endpoint of the same app",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load_average[0]:.2f} before, {load_average[1]:.2f} after.",
        f"- Command: `{command(options)}`",
        f"- Method: `gunicorn -w {options.workers} -k gthread --threads {options.threads}` on 127.0.0.1, on each "
        f"database in turn, prepared with the CLI; a client-credentials authenticator (created through the API) "
        f"holds a token from oidc-provider that outlives the run. `wrk -t{options.threads_wrk} "
        f"-c{options.connections} -d{options.seconds}s` (same machine) against "
        f"`POST /api/v1/authenticators/<id>/credentials` with a `use` service token and body `{{}}`, and against "
        f"`GET /livez` (a constant JSON, no database); {options.rounds} rounds, the endpoints in turns, the order "
        f"reversed every other round, after {WARMUP_SECONDS} s of warm-up each.",
        f"- Requirement, judged on SQLite (the default database): the credentials endpoint's median requests per "
        f"second at least {MIN_RATIO:.0%} of the bare endpoint's, every answer 2xx. PostgreSQL is measured beside "
        f"it and reported, not judged: there every call makes a round trip to the database server.",
        *(f"- {note}." for note in notes),
    ]
    for measured in results:
        lines += database_lines(measured)
    for measured in results:
        if measured.found:
            lines += profile_lines(measured.database, measured.found)
    judged = [measured for measured in results if measured.database == JUDGED]
    passed = bool(judged) and all(measured.passed for measured in judged)
    lines += ["", f"Result, on {JUDGED}: {'pass' if passed else 'FAIL'}.",
              SECTION_END]
    return "\n".join(lines) + "\n", passed


def database_lines(measured):
    """Render one database's runs and ratio."""
    runs = measured.runs
    ratios = [c.requests_per_second / b.requests_per_second for c, b in zip(runs[CREDENTIALS], runs[BARE], strict=True)]
    lines = [
        "",
        f"### {measured.database}",
        "",
        "| endpoint | requests/s per round | median requests/s | median latency per round |",
        "|---|---|---|---|",
    ]
    for name, label in ((CREDENTIALS, "credentials (POST)"), (BARE, "bare `/livez` (GET)")):
        lines.append(
            f"| {label} | {' / '.join(f'{run.requests_per_second:,.0f}' for run in runs[name])} | "
            f"{median_rate(runs[name]):,.0f} | {' / '.join(run.median_latency for run in runs[name])} |"
        )
    lines += [
        "",
        f"Ratio credentials ÷ bare: **{measured.ratio:.2f}** (per round: {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"answers not 2xx or socket errors: {measured.errors}; "
        f"{'at least' if measured.passed else 'below'} {MIN_RATIO:.0%}.",
    ]
    return lines


def profile_lines(database, found):
    """Render the in-process profile: time per call, SQL statements, and where the time goes."""
    lines = [
        "",
        f"### Where a credentials call spends its time on {database} (in-process, {found.calls} calls)",
        "",
        f"Flask's test client on the same database: a credentials call takes "
        f"{microseconds(found.credentials_seconds)}, `/livez` {microseconds(found.bare_seconds)} "
        f"(ratio {found.bare_seconds / found.credentials_seconds:.2f}). A credentials call with the token "
        f"cached runs {len(found.statements)} SQL statement{'s' if len(found.statements) != 1 else ''}, as the "
        f"driver sees them:",
        "",
        *(f"{number}. `{statement[:160]}{'…' if len(statement) > 160 else ''}`"
          for number, statement in enumerate(found.statements, 1)),
        "",
        "Cumulative time per call under cProfile (which slows every call; compare the steps with each other):",
        "",
        "| step | per call |",
        "|---|---|",
        *(f"| {label} | {microseconds(seconds)} |" for label, seconds in found.steps),
    ]
    return lines


def command(options):
    """The command line that reproduces a run."""
    return (f"{COMMAND} --rounds {options.rounds} --seconds {options.seconds} --connections {options.connections}"
            + (" --profile" if options.profile else "") + (" --sqlite-only" if options.sqlite_only else ""))


def measure(database, url, provider, folder, options):
    """Load both endpoints on one database, and profile the credentials call if it falls short (or if asked)."""
    environment = app_environment(url)
    tokens = prepare_database(environment)
    with Gunicorn(environment, folder, workers=options.workers, threads=options.threads) as server:
        authenticator_id = create_oauth_authenticator(server, tokens.manage, provider.token_endpoint)
        first = call_credentials(server, tokens.use, authenticator_id)
        if first.status != 200:
            raise SystemExit(f"The first credentials call answered {first.status}: {first.error}")
        measured = Measured(database, load(server, authenticator_id, tokens.use, folder, options), None)
    if not measured.passed or options.profile:
        measured.found = profile(environment, authenticator_id, tokens.use, options.profile_calls)
    return measured


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if the ratio is below MIN_RATIO on SQLite."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per endpoint")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument("--threads-wrk", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--profile", action="store_true", help="profile the credentials call even when passing")
    parser.add_argument("--profile-calls", type=int, default=1000, help="calls timed and profiled in-process")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    options = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        provider = start_oidc_provider(Path(folder) / "oidc-provider.log", client_credentials_ttl=TOKEN_TTL,
                                       access_token_ttl=TOKEN_TTL)
        try:
            for database, url in benchmark_databases(folder, options.sqlite_only, notes):
                results.append(measure(database, url, provider, folder, options))
        finally:
            provider.stop()
    load_after = os.getloadavg()[0]

    text, passed = section(results, notes, options, started, (load_before, load_after), time.perf_counter() - clock)
    for measured in results:
        if measured.found:
            print(f"{measured.database}:\n{measured.found.text}")
    publish(options.output, text, SECTION_START, SECTION_END)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
