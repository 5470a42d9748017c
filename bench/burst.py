"""Benchmark 200 credentials calls at the moment the token expires, on 4 gunicorn workers.

Counts the token requests that reach oidc-provider (the requirement: exactly 1 per expiry),
on SQLite and on PostgreSQL, and times the calls against baselines taken in the same run:
the same number of concurrent calls while the token is cached, and single calls one after
another. Every expiry burst is followed by its baselines while the renewed token is valid.

On PostgreSQL it runs twice: on one gunicorn, and on two gunicorn masters (separate
instances, two workers each) sharing one database, the calls spread over both.

Two reference apps take the same burst without the lease: with a lock per process (one
renewal per worker) and with no lock at all; they show what the count would be without it.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.pane import machine
from bench.support import (
    TokenEndpointProxy,
    app_environment,
    burst_at_expiry,
    call_credentials,
    counted_burst,
    create_oauth_authenticator,
    percentile,
    postgres_database,
    postgres_version,
    prepare_database,
    serving,
    warm_up,
    publish,
)
from tests.support.oidc import start_oidc_provider

COMMAND = ".venv/bin/python -m bench.burst"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench.burst: start -->"
SECTION_END = "<!-- bench.burst: end -->"
SINGLE_CALLS = 30
# On PostgreSQL, a second row: the same workers split over separate gunicorn masters.
INSTANCES = 2
REFERENCES = {
    "lock per process": "bench.support:app_with_process_lock()",
    "no lock": "bench.support:app_without_lease()",
}


@dataclass
class Figures:
    """What one database gave: expiry bursts, their baselines, and the reference apps' counts."""

    database: str
    expiry_bursts: list
    cached_bursts: list
    singles: list
    references: dict

    def expiry_seconds(self):
        """Latencies of every call made at an expiry."""
        return [answer.seconds for burst in self.expiry_bursts for answer in burst.answers]

    def cached_seconds(self):
        """Latencies of every call of the baseline bursts."""
        return [answer.seconds for burst in self.cached_bursts for answer in burst.answers]

    def single_median(self):
        """Median latency of a single call while nothing else runs."""
        return statistics.median(answer.seconds for answer in self.singles)

    def answered(self):
        """How many calls made at an expiry were answered 200."""
        return sum(len(burst.answers) - len(burst.failures) for burst in self.expiry_bursts)

    def problems(self):
        """Say what fails the requirement: one token request per expiry, every call answered alike."""
        found = []
        for number, burst in enumerate(self.expiry_bursts, 1):
            if burst.token_requests != 1:
                found.append(f"burst {number} made {burst.token_requests} token requests")
            if burst.failures:
                found.append(f"in burst {number}, {len(burst.failures)} calls failed, e.g. {burst.failures[0]}")
            if len(burst.authorizations) != 1:
                found.append(f"burst {number} handed out {len(burst.authorizations)} Authorization headers")
        if any(burst.token_requests or burst.failures for burst in self.cached_bursts):
            found.append("a baseline burst renewed the token or failed: raise --ttl")
        if any(answer.status != 200 for answer in self.singles):
            found.append("a single baseline call failed")
        return found


def ready(server, use_token, authenticator_id):
    """Get a token and let every worker serve a call; return when the token held now expires."""
    first = call_credentials(server, use_token, authenticator_id)
    if first.status != 200:
        raise SystemExit(f"The first credentials call answered {first.status}: {first.error}")
    warm_up(server, use_token, authenticator_id)
    # A slow warm-up may have outlived the first token: the burst waits for the one held now.
    return call_credentials(server, use_token, authenticator_id).expires_at


def measure(database, url, provider, token_endpoint, options, folder, instances=1):
    """Run the expiry bursts with their baselines, then the reference apps, on one database.

    Several instances share the workers out and take the calls in turn.
    """
    environment = app_environment(url)
    tokens = prepare_database(environment)
    shape = {"workers": options.workers // instances, "threads": options.threads, "instances": instances}
    figures = Figures(database, [], [], [], {})
    with serving(environment, folder, **shape) as server:
        authenticator_id = create_oauth_authenticator(server, tokens.manage, token_endpoint)
        expires_at = ready(server, tokens.use, authenticator_id)
        for _ in range(options.bursts):
            burst = burst_at_expiry(server, provider, tokens.use, authenticator_id, expires_at, options.calls)
            figures.expiry_bursts.append(burst)
            figures.cached_bursts.append(counted_burst(server, provider, tokens.use, authenticator_id, options.calls))
            figures.singles += [call_credentials(server, tokens.use, authenticator_id) for _ in range(SINGLE_CALLS)]
            expires_at = burst.next_expiry
    for name, app in REFERENCES.items():
        with serving(environment, folder, app=app, **shape) as server:
            expires_at = ready(server, tokens.use, authenticator_id)
            burst = burst_at_expiry(server, provider, tokens.use, authenticator_id, expires_at, options.calls)
            figures.references[name] = burst.token_requests
    return figures


def measure_postgres(provider, token_endpoint, options, folder, notes):
    """Measure on PostgreSQL: one gunicorn, then INSTANCES of them, each on a fresh database."""
    results = []
    for instances in (1, INSTANCES):
        with postgres_database() as (url, how):
            if url is None:
                notes.append(how)
                return results
            database = f"PostgreSQL {postgres_version(url)}"
            if instances == 1:
                notes.append(f"{database}: {how}")
            else:
                database += f", {instances} instances × {options.workers // instances} workers"
                notes.append(f"{database}: {instances} gunicorn masters of {options.workers // instances} workers "
                             f"each on one database, the calls sent to each in turn, as a load balancer would")
            results.append(measure(database, url, provider, token_endpoint, options, folder, instances))
    return results


def milliseconds(seconds):
    return f"{seconds * 1000:.0f} ms"


def section(results, notes, options, started, load, seconds):
    """Render the figures as this benchmark's section of docs/benchmarks.md."""
    failed = [f"{figures.database}: {problem}" for figures in results for problem in figures.problems()]
    lines = [
        SECTION_START,
        f"## Burst: {options.calls} credentials calls the moment the token expires, {options.workers} workers",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        f"- Command: `{command(options)}`",
        f"- Method: `gunicorn -w {options.workers} -k gthread --threads {options.threads}` on 127.0.0.1; the "
        f"database prepared with the CLI (`db upgrade`, `domains create`, `tokens create`), a client-credentials "
        f"authenticator created through the API; oidc-provider issues {options.ttl} s tokens behind a proxy that "
        f"answers after {options.token_delay} s, as a busy authorization server does. Every worker serves a call "
        f"first. Then, {options.bursts} times, at the moment the token expires, {options.calls} threads of one "
        f"client POST to the credentials endpoint at once (a connection each), and the token requests reaching "
        f"oidc-provider are counted. Each expiry burst is followed, while the renewed token is valid, by its "
        f"baselines: the same {options.calls} calls with the token cached, and {SINGLE_CALLS} single calls one "
        f"after another. Latency: from a thread's start to its answer, every call of every burst pooled.",
        "- Requirement: exactly 1 token request per expiry; every call answered 200, all with one and the same "
        "Authorization header. Latencies and their ratios are shown for information.",
        "- References: the same burst on the app with a lock per process in place of the lease (a renewal in "
        "each worker the burst reaches) and with no lock at all (`bench/support.py`).",
        *(f"- {note}." for note in notes),
    ]
    header = [
        "database", "token requests per expiry", "answered 200", "at expiry: p50 / p90 / p99 / max",
        "cached: p50 / p99", "single: p50", "p50 ÷ cached p50", "p50 ÷ single p50",
        *(f"token requests, {name}" for name in REFERENCES), "verdict",
    ]
    lines += ["", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for figures in results:
        expiry, cached, single = figures.expiry_seconds(), figures.cached_seconds(), figures.single_median()
        cells = [
            figures.database,
            "**" + ", ".join(str(burst.token_requests) for burst in figures.expiry_bursts) + "**",
            f"{figures.answered()} of {len(expiry)}",
            " / ".join(milliseconds(value) for value in (
                percentile(expiry, 0.5), percentile(expiry, 0.9), percentile(expiry, 0.99), max(expiry))),
            f"{milliseconds(percentile(cached, 0.5))} / {milliseconds(percentile(cached, 0.99))}",
            milliseconds(single),
            f"{percentile(expiry, 0.5) / percentile(cached, 0.5):.2f}",
            f"{percentile(expiry, 0.5) / single:.1f}",
            *(str(figures.references[name]) for name in REFERENCES),
            "FAIL" if figures.problems() else "pass",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Result: {'FAIL: ' + '; '.join(failed) if failed else 'pass'}.", SECTION_END]
    return "\n".join(lines) + "\n"


def command(options):
    """The command line that reproduces a run."""
    flags = f" --bursts {options.bursts} --calls {options.calls} --ttl {options.ttl}"
    flags += f" --token-delay {options.token_delay}" + (" --sqlite-only" if options.sqlite_only else "")
    return COMMAND + flags


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if the requirement fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=3, help="expiry bursts per database")
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls per burst")
    parser.add_argument("--ttl", type=int, default=8, help="seconds a token lives; baselines run within 0.9 × TTL")
    parser.add_argument("--token-delay", type=float, default=0.25, help="seconds the token endpoint takes to answer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=16, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    options = parser.parse_args(argv)

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as folder:
        folder = Path(folder)
        provider = start_oidc_provider(folder / "oidc-provider.log", client_credentials_ttl=options.ttl,
                                       access_token_ttl=options.ttl)
        try:
            with TokenEndpointProxy(provider.token_endpoint, delay=options.token_delay) as endpoint:
                results.append(measure("SQLite", f"sqlite:///{folder / 'apiauth.sqlite3'}", provider,
                                       endpoint.url, options, folder))
                if options.sqlite_only:
                    notes.append("PostgreSQL was left out (--sqlite-only)")
                else:
                    results += measure_postgres(provider, endpoint.url, options, folder, notes)
        finally:
            provider.stop()
    load = (load_before, os.getloadavg()[0])

    text = section(results, notes, options, started, load, time.perf_counter() - clock)
    publish(options.output, text, SECTION_START, SECTION_END)
    return 1 if any(figures.problems() for figures in results) else 0


if __name__ == "__main__":
    sys.exit(main())
