"""Benchmark the credentials endpoint's requests per second against a bare endpoint of the same app.

gunicorn (4 workers) serves the app on an SQLite file prepared with the real command line;
an OAuth authenticator holds a cached token from oidc-provider that outlives the run. wrk
loads the credentials endpoint (POST with a service token) and GET /livez, a constant JSON
answer, in turns, so that a noisy neighbour slows both alike; only the ratio of the medians
is judged. Below the ratio required, the credentials call is profiled in-process (cProfile on
Flask's test client, same database) to show where its time goes.
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
    call_credentials,
    create_oauth_authenticator,
    credentials_path,
    prepare_database,
    write_section,
)
from tests.support.oidc import start_oidc_provider

MIN_RATIO = 0.60
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
    ("gate: service token looked up by its hash (1 SELECT)", "apiauth/service_tokens.py", "token_for_bearer"),
    ("gate: last use stamped (a write at most every 10 s)", "apiauth/service_tokens.py", "record_token_use"),
    ("get_authenticator (1 SELECT, and may_use below)", "apiauth/api/gate.py", "get_authenticator"),
    ("  may_use: the token's authenticator list, lazy-loaded (1 SELECT)", "apiauth/models.py", "may_use"),
    ("engine_config: configuration, client secret decrypted", "apiauth/authentication.py", "engine_config"),
    ("usable_tokens: token row read and decrypted, commit", "apiauth/tokenstore.py", "usable_tokens"),
    ("record_use: reloads the authenticator the commit expired (1 SELECT)", "apiauth/consumers.py", "record_use"),
    ("token_generation: reads the token row again (1 SELECT)", "apiauth/tokenstore.py", "token_generation"),
    ("credentials() in all", "apiauth/consumers.py", "credentials"),
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
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
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


def _cumulative(stats, module, function):
    return sum(
        entry[3] for (filename, _, name), entry in stats.stats.items()
        if name == function and filename.endswith(module)
    )


def microseconds(seconds):
    return f"{seconds * 1e6:,.0f} µs"


def section(runs, found, options, started, load_average, seconds):
    """Render the figures as this benchmark's section of docs/benchmarks.md."""
    ratios = [c.requests_per_second / b.requests_per_second for c, b in zip(runs[CREDENTIALS], runs[BARE])]
    ratio = median_rate(runs[CREDENTIALS]) / median_rate(runs[BARE])
    errors = sum(run.errors for endpoint in runs.values() for run in endpoint)
    passed = ratio >= MIN_RATIO and errors == 0
    lines = [
        SECTION_START,
        "## Throughput: the credentials endpoint against a bare endpoint of the same app",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load_average[0]:.2f} before, {load_average[1]:.2f} after.",
        f"- Command: `{command(options)}`",
        f"- Method: `gunicorn -w {options.workers} -k gthread --threads {options.threads}` on 127.0.0.1 and an "
        f"SQLite file prepared with the CLI; a client-credentials authenticator (created through the API) holds a "
        f"token from oidc-provider that outlives the run. `wrk -t{options.threads_wrk} -c{options.connections} "
        f"-d{options.seconds}s` (same machine) against `POST /api/v1/authenticators/<id>/credentials` with a `use` "
        f"service token and body `{{}}`, and against `GET /livez` (a constant JSON, no database); "
        f"{options.rounds} rounds, the endpoints in turns, the order reversed every other round, after "
        f"{WARMUP_SECONDS} s of warm-up each.",
        f"- Requirement: the credentials endpoint's median requests per second at least {MIN_RATIO:.0%} of the "
        f"bare endpoint's, every answer 2xx.",
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
        f"Ratio credentials ÷ bare: **{ratio:.2f}** (per round: {', '.join(f'{r:.2f}' for r in ratios)}); "
        f"answers not 2xx or socket errors: {errors}.",
    ]
    if found:
        lines += profile_lines(found)
    lines += ["", f"Result: {'pass' if passed else 'FAIL'}.", SECTION_END]
    return "\n".join(lines) + "\n", passed


def profile_lines(found):
    """Render the in-process profile: time per call, SQL statements, and where the time goes."""
    lines = [
        "",
        f"### Where a credentials call spends its time (in-process, {found.calls} calls)",
        "",
        f"Flask's test client on the same database: a credentials call takes "
        f"{microseconds(found.credentials_seconds)}, `/livez` {microseconds(found.bare_seconds)} "
        f"(ratio {found.bare_seconds / found.credentials_seconds:.2f}). A credentials call with the token "
        f"cached runs {len(found.statements)} SQL statements:",
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
            + (" --profile" if options.profile else ""))


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if the ratio is below MIN_RATIO."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per endpoint")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument("--threads-wrk", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--profile", action="store_true", help="profile the credentials call even when passing")
    parser.add_argument("--profile-calls", type=int, default=1000, help="calls timed and profiled in-process")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    options = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as folder:
        provider = start_oidc_provider(Path(folder) / "oidc-provider.log", client_credentials_ttl=TOKEN_TTL,
                                       access_token_ttl=TOKEN_TTL)
        try:
            environment = app_environment(f"sqlite:///{Path(folder) / 'apiauth.sqlite3'}")
            tokens = prepare_database(environment)
            with Gunicorn(environment, folder, workers=options.workers, threads=options.threads) as server:
                authenticator_id = create_oauth_authenticator(server, tokens.manage, provider.token_endpoint)
                first = call_credentials(server, tokens.use, authenticator_id)
                if first.status != 200:
                    raise SystemExit(f"The first credentials call answered {first.status}: {first.error}")
                runs = load(server, authenticator_id, tokens.use, folder, options)
            load_after = os.getloadavg()[0]
            ratio = median_rate(runs[CREDENTIALS]) / median_rate(runs[BARE])
            found = None
            if ratio < MIN_RATIO or options.profile:
                found = profile(environment, authenticator_id, tokens.use, options.profile_calls)
        finally:
            provider.stop()

    text, passed = section(runs, found, options, started, (load_before, load_after), time.perf_counter() - clock)
    print(text)
    if found:
        print(found.text)
    write_section(options.output, text, SECTION_START, SECTION_END)
    print(f"Wrote {options.output}.")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
