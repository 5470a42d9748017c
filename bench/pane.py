"""Benchmark the pane with 10 and with 10,000 authenticators in one run, as a ratio, on SQLite and PostgreSQL.

Each size gets an app of its own on a fresh database (an SQLite file, and a database on a
PostgreSQL server), filled through the real command line (`db upgrade`, `domains create`,
`users create`, `demo seed`) and browsed by a client that signed in through the real form.
Requests alternate between all the apps, so that a noisy neighbour slows them alike; only
ratios of medians are judged, never times.

A third app holds exactly one page of authenticators (PANE_PAGE_SIZE): 10 fill a fifth
of the page that 10,000 fill, so 10,000 against one full page tells what grows with the
database alone.
"""

import argparse
import os
import platform
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import event, text

from apiauth import create_app
from apiauth.config import new_encryption_key
from apiauth.extensions import db
from bench.support import database_on, postgres_for_run, publish

SMALL, LARGE = 10, 10_000
MAX_RATIO = 1.5
# The ratio binds the pane as an admin opens it; the other views are measured for information.
JUDGED = "default (name ▲)"
VARIANTS = {
    "default (name ▲)": "/authenticators",
    "status ▼": "/authenticators?sort=status&dir=desc",
    "modified by ▲": "/authenticators?sort=modified_by",
    "search “basic”": "/authenticators?q=basic",
    "page 50": "/authenticators?page=50",
}
DOMAIN = "Bench"
USERNAME = "bench-admin"
COMMAND = ".venv/bin/python -m bench.pane"
CSRF_PATTERN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
ROW_MARK = '<tr id="authenticator-'
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench.pane: start -->"
SECTION_END = "<!-- bench.pane: end -->"


class Pane:
    """An app on its own database holding `size` authenticators, and a signed-in client."""

    def __init__(self, folder, size, settings, database_url=None):
        self.size = size
        self.app = create_app(
            {
                "INSTANCE_PATH": str(folder / "instance"),
                "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{folder / 'apiauth.sqlite3'}",
                "ENCRYPTION_KEYS": [new_encryption_key()],
                "SECRET_KEY": secrets.token_urlsafe(32),
                **settings,
            }
        )
        password = secrets.token_urlsafe(16)
        with self.app.app_context():
            upgrade()
        self._command("domains", "create", DOMAIN)
        self._command(
            "users", "create", USERNAME, "--domain", DOMAIN, "--domain-manager", "--password-stdin",
            input=password + "\n",
        )
        self._command("demo", "seed", "--count", str(size), "--domain", DOMAIN)
        self._analyze()
        self.statements = []
        with self.app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._record_statement)
        self.client = self.app.test_client()
        self._sign_in(password)

    def _command(self, *args, input=None):
        # The `flask` script pushes an app context for every command; the test runner does not.
        with self.app.app_context():
            result = self.app.test_cli_runner().invoke(args=list(args), input=input)
        if result.exit_code != 0:
            raise SystemExit(f"`flask {' '.join(args)}` failed: {result.output}{result.exception or ''}")

    def _analyze(self):
        """On PostgreSQL, gather the statistics that autovacuum gathers soon after a bulk load.

        Without them the planner takes the freshly seeded table for a few rows, and reads
        all 10,000 to sort them instead of walking the index.
        """
        with self.app.app_context():
            if db.engine.dialect.name == "postgresql":
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(text("VACUUM ANALYZE"))
            db.engine.dispose()

    def _record_statement(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)

    def _sign_in(self, password):
        page = self.client.get("/login").get_data(as_text=True)
        token = CSRF_PATTERN.search(page).group(1)
        response = self.client.post(
            "/login", data={"username": USERNAME, "password": password, "csrf_token": token}
        )
        if response.status_code != 302:
            raise SystemExit(f"Signing in failed with {response.status_code}.")

    def get(self, url):
        """Request a URL as a browser would; return seconds, SQL statements and rows shown."""
        # No app context is held here, so each request gets a fresh session, as in production.
        self.statements = []
        start = time.perf_counter()
        response = self.client.get(url)
        seconds = time.perf_counter() - start
        if response.status_code != 200:
            raise SystemExit(f"GET {url} answered {response.status_code} with {self.size} authenticators.")
        return seconds, self.statements, response.get_data(as_text=True).count(ROW_MARK)

    def close(self):
        """Let go of the database connections."""
        with self.app.app_context():
            db.engine.dispose()


class Figures:
    """Medians, statement counts and rows shown, per variant and size."""

    def __init__(self, sizes, full_page, rounds, warmup):
        self.sizes, self.full_page, self.rounds, self.warmup = sizes, full_page, rounds, warmup
        self.samples = {(variant, size): [] for variant in VARIANTS for size in sizes}
        self.statement_counts = {key: set() for key in self.samples}
        self.rows = {}
        self.sql = {}

    def add(self, variant, size, seconds, statements, rows, timed):
        """Record one request; warm-up requests count statements but not time."""
        key = (variant, size)
        self.statement_counts[key].add(len(statements))
        self.rows[key] = rows
        self.sql.setdefault(key, statements)
        if timed:
            self.samples[key].append(seconds)

    def median(self, variant, size):
        """Median seconds of a variant at a size."""
        return statistics.median(self.samples[variant, size])

    def ratio(self, variant, size):
        """Median at LARGE over the median at size."""
        return self.median(variant, LARGE) / self.median(variant, size)

    def same_statements(self, variant):
        """Tell whether every request of a variant, at every size, took one and the same count."""
        return len(set().union(*(self.statement_counts[variant, size] for size in self.sizes))) == 1

    def passes(self, variant):
        """Tell whether a variant meets the requirement: the ratio binds the default view only."""
        ratio_ok = variant != JUDGED or self.ratio(variant, SMALL) <= MAX_RATIO
        return ratio_ok and self.same_statements(variant)


def measure(databases, full_page, rounds, warmup):
    """Time every variant on every pane of every database, reversing the order every other round.

    databases maps a database's name to its panes; returns its name mapped to its Figures.
    """
    figures = {name: Figures([pane.size for pane in panes], full_page, rounds, warmup)
               for name, panes in databases.items()}
    every_pane = [(name, pane) for name, panes in databases.items() for pane in panes]
    for number in range(warmup + rounds):
        order = every_pane if number % 2 == 0 else every_pane[::-1]
        for variant, url in VARIANTS.items():
            for name, pane in order:
                figures[name].add(variant, pane.size, *pane.get(url), timed=number >= warmup)
    return figures


def machine():
    """Describe the machine and software the figures come from."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE).group(1)
    except (OSError, AttributeError):
        cpu = platform.processor() or "unknown CPU"
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def section(results, notes, command, started, load, seconds):
    """Render the figures of every database as this benchmark's section of docs/benchmarks.md."""
    first = next(iter(results.values()))
    full_page = first.full_page
    failed = [f"{name}: {variant}" for name, figures in results.items()
              for variant in VARIANTS if not figures.passes(variant)]
    lines = [
        SECTION_START,
        f"## Pane: {SMALL:,} against {LARGE:,} authenticators, " + " and ".join(results),
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        f"- Command: `{command}`",
        f"- Method: GETs through Flask's test client, signed in through the form (CSRF on), "
        f"{full_page} rows a page; {first.rounds} timed rounds after {first.warmup} warm-up rounds, "
        f"the apps of every database alternating within every round; SQL statements counted with a "
        f"`before_cursor_execute` listener. On PostgreSQL, `VACUUM ANALYZE` after seeding, as autovacuum "
        f"does soon after a bulk load (without statistics the planner sorts all the rows).",
        f"- Requirement, on each database: for the pane as it opens ({JUDGED}), the median at {LARGE:,} at most "
        f"{MAX_RATIO} × the median at {SMALL:,}; for every view, one and the same number of SQL statements per "
        f"request at every size. The other views' ratios are shown for information (a substring search reads "
        f"every name of the domain).",
    ]
    if full_page not in (SMALL, LARGE):
        lines.append(
            f"- Reference: {full_page:,} authenticators fill exactly one page; {LARGE:,} ÷ {full_page:,} "
            f"shows what grows with the database alone, {SMALL:,} rows shown against {full_page:,} left aside."
        )
    lines += [f"- {note}." for note in notes]
    for name, figures in results.items():
        lines += ["", f"### {name}", "", *_table(figures)]
    if len(results) > 1:
        lines += ["", *_comparison(results)]
    lines += ["", f"Result: {'FAIL: ' + ', '.join(failed) if failed else 'pass'}.", SECTION_END]
    return "\n".join(lines) + "\n"


def _table(figures):
    """The lines of one database's table: every variant at every size."""
    sizes, full_page = figures.sizes, figures.full_page
    reference = full_page not in (SMALL, LARGE)
    each = " / ".join(f"{size:,}" for size in sizes)
    header = [f"rows shown ({each})", *(f"median at {size:,}" for size in sizes), f"{LARGE:,} ÷ {SMALL:,}"]
    header += [f"{LARGE:,} ÷ {full_page:,}"] if reference else []
    header += [f"SQL statements ({each})", "verdict"]
    lines = ["| request | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for variant, url in VARIANTS.items():
        cells = [" / ".join(str(figures.rows[variant, size]) for size in sizes)]
        cells += [f"{figures.median(variant, size) * 1000:.2f} ms" for size in sizes]
        cells += [f"**{figures.ratio(variant, SMALL):.2f}**"]
        cells += [f"{figures.ratio(variant, full_page):.2f}"] if reference else []
        cells += [
            " / ".join(
                "/".join(str(count) for count in sorted(figures.statement_counts[variant, size])) for size in sizes
            ),
            "pass" if figures.passes(variant) else "FAIL",
        ]
        lines.append(f"| {variant}: `{url}` | " + " | ".join(cells) + " |")
    return lines


def _comparison(results):
    """The lines comparing every database with the first at each size, for information."""
    (base_name, base), *others = results.items()
    lines = [f"Each database's median over {base_name}'s, same request and size (for information):", ""]
    header = [f"{name} ÷ {base_name} at {size:,}" for name, _ in others for size in base.sizes]
    lines += ["| request | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for variant in VARIANTS:
        cells = [f"{figures.median(variant, size) / base.median(variant, size):.2f}"
                 for _, figures in others for size in base.sizes]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def print_sql(results):
    """Print the statements of the first request of every variant at every size, on every database."""
    for name, figures in results.items():
        for (variant, size), statements in figures.sql.items():
            print(f"-- {name}, {variant} at {size:,}: {len(statements)} statements")
            for statement in statements:
                print("   ", " ".join(statement.split()))


def make_panes(folder, settings, database_urls=None):
    """Make the pane of every size, each on a database of its own: SQLite files, or the URLs given in turn."""
    urls = iter(database_urls or ())
    small = Pane(folder / str(SMALL), SMALL, settings, next(urls, None))
    sizes = sorted({small.app.config["PANE_PAGE_SIZE"], LARGE} - {SMALL})
    return [small] + [Pane(folder / str(size), size, settings, next(urls, None)) for size in sizes]


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if the requirement fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.pane", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed requests per variant and size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds before timing")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    parser.add_argument("--sql", action="store_true", help="print the SQL of one request per variant and size")
    parser.add_argument("--page-size", type=int, help="rows per pane page (default: the app's PANE_PAGE_SIZE)")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    options = parser.parse_args(argv)
    settings = {"PANE_PAGE_SIZE": options.page_size} if options.page_size else {}

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    notes = []
    with tempfile.TemporaryDirectory(prefix="bench-pane-") as folder, ExitStack() as stack:
        databases = {f"SQLite {sqlite3.sqlite_version}": make_panes(Path(folder) / "sqlite", settings)}
        server_url, name = postgres_for_run(stack, options.sqlite_only, notes)
        if server_url:
            urls = [stack.enter_context(database_on(server_url)) for _ in range(3)]
            databases[name] = make_panes(Path(folder) / "postgresql", settings, urls)
        full_page = next(iter(databases.values()))[0].app.config["PANE_PAGE_SIZE"]
        results = measure(databases, full_page, options.rounds, options.warmup)
        for panes in databases.values():
            for pane in panes:
                pane.close()
    load = (load_before, os.getloadavg()[0])

    command = f"{COMMAND} --rounds {options.rounds} --warmup {options.warmup}"
    command += f" --page-size {options.page_size}" if options.page_size else ""
    command += " --sqlite-only" if options.sqlite_only else ""
    text = section(results, notes, command, started, load, time.perf_counter() - clock)
    publish(options.output, text, SECTION_START, SECTION_END)
    if options.sql:
        print_sql(results)
    return 0 if all(figures.passes(variant) for figures in results.values() for variant in VARIANTS) else 1


if __name__ == "__main__":
    sys.exit(main())
