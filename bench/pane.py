"""Benchmark the pane with 10 and with 10,000 authenticators in one run, as a ratio.

Each size gets an app of its own on a fresh SQLite database, filled through the real
command line (`db upgrade`, `domains create`, `users create`, `demo seed`) and browsed by
a client that signed in through the real form. Requests alternate between the apps, so
that a noisy neighbour slows them alike; only ratios of medians are judged, never times.

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
from datetime import UTC, datetime
from pathlib import Path

from flask_migrate import upgrade
from sqlalchemy import event

from apiauth import create_app
from apiauth.config import new_encryption_key
from apiauth.extensions import db
from bench.support import write_section

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

    def __init__(self, folder, size, settings):
        self.size = size
        self.app = create_app(
            {
                "INSTANCE_PATH": str(folder / "instance"),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'apiauth.sqlite3'}",
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


def measure(panes, full_page, rounds, warmup):
    """Time every variant on every pane, reversing the order of the panes every other round."""
    figures = Figures([pane.size for pane in panes], full_page, rounds, warmup)
    for number in range(warmup + rounds):
        order = panes if number % 2 == 0 else panes[::-1]
        for variant, url in VARIANTS.items():
            for pane in order:
                figures.add(variant, pane.size, *pane.get(url), timed=number >= warmup)
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


def section(figures, command, started, load, seconds):
    """Render the figures as this benchmark's section of docs/benchmarks.md."""
    sizes, full_page = figures.sizes, figures.full_page
    reference = full_page not in (SMALL, LARGE)
    each = " / ".join(f"{size:,}" for size in sizes)
    failed = [variant for variant in VARIANTS if not figures.passes(variant)]
    lines = [
        SECTION_START,
        f"## Pane: {SMALL:,} against {LARGE:,} authenticators",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        f"- Command: `{command}`",
        f"- Method: GETs through Flask's test client, signed in through the form (CSRF on), "
        f"{full_page} rows a page; {figures.rounds} timed rounds after {figures.warmup} warm-up rounds, "
        f"the apps alternating within every round; SQL statements counted with a `before_cursor_execute` listener.",
        f"- Requirement: for the pane as it opens ({JUDGED}), the median at {LARGE:,} at most {MAX_RATIO} × "
        f"the median at {SMALL:,}; for every view, one and the same number of SQL statements per request "
        f"at every size. The other views' ratios are shown for information (a substring search reads "
        f"every name of the domain).",
    ]
    if reference:
        lines.append(
            f"- Reference: {full_page:,} authenticators fill exactly one page; {LARGE:,} ÷ {full_page:,} "
            f"shows what grows with the database alone, {SMALL:,} rows shown against {full_page:,} left aside."
        )
    header = [f"rows shown ({each})", *(f"median at {size:,}" for size in sizes), f"{LARGE:,} ÷ {SMALL:,}"]
    header += [f"{LARGE:,} ÷ {full_page:,}"] if reference else []
    header += [f"SQL statements ({each})", "verdict"]
    lines += ["", "| request | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
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
    lines += ["", f"Result: {'FAIL: ' + ', '.join(failed) if failed else 'pass'}.", SECTION_END]
    return "\n".join(lines) + "\n"


def print_sql(figures):
    """Print the statements of the first request of every variant at every size."""
    for (variant, size), statements in figures.sql.items():
        print(f"-- {variant} at {size:,}: {len(statements)} statements")
        for statement in statements:
            print("   ", " ".join(statement.split()))


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if the requirement fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.pane", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed requests per variant and size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds before timing")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    parser.add_argument("--sql", action="store_true", help="print the SQL of one request per variant and size")
    parser.add_argument("--page-size", type=int, help="rows per pane page (default: the app's PANE_PAGE_SIZE)")
    options = parser.parse_args(argv)
    settings = {"PANE_PAGE_SIZE": options.page_size} if options.page_size else {}

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-pane-") as folder:
        small = Pane(Path(folder) / str(SMALL), SMALL, settings)
        full_page = small.app.config["PANE_PAGE_SIZE"]
        panes = [small] + [
            Pane(Path(folder) / str(size), size, settings) for size in sorted({full_page, LARGE} - {SMALL})
        ]
        figures = measure(panes, full_page, options.rounds, options.warmup)
        for pane in panes:
            pane.close()
    load = (load_before, os.getloadavg()[0])

    command = f"{COMMAND} --rounds {options.rounds} --warmup {options.warmup}"
    command += f" --page-size {options.page_size}" if options.page_size else ""
    text = section(figures, command, started, load, time.perf_counter() - clock)
    print(text)
    if options.sql:
        print_sql(figures)
    write_section(options.output, text, SECTION_START, SECTION_END)
    print(f"Wrote {options.output}.")
    return 0 if all(figures.passes(variant) for variant in VARIANTS) else 1


if __name__ == "__main__":
    sys.exit(main())
