"""Benchmark `keys rotate`: stored values re-encrypted per second, on SQLite and PostgreSQL.

Each database is filled through the real command line (`db upgrade`, `domains create`,
`demo seed`), one sealed secret per authenticator. Rotation passes move every value from
one key to the other and back; baseline passes walk the same batches with the same
compare-and-swap UPDATE but write each value back as it was, without decrypting or
encrypting. The two kinds of pass alternate; the ratio of their medians tells what
re-encryption costs over reading and writing the rows alone.
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flask_migrate import upgrade

from apiauth import create_app
from apiauth.config import new_encryption_key
from apiauth.extensions import db
from apiauth.rotation import batches_under, key_usage, rotate, sealed_columns, swap
from bench.pane import machine
from bench.support import database_on, postgres_for_run, publish

COMMAND = ".venv/bin/python -m bench.rotation"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench.rotation: start -->"
SECTION_END = "<!-- bench.rotation: end -->"
DOMAIN = "Bench"


def keyed_app(database_url, folder, keys):
    """Return the app on a database with this key ring (the first key encrypts)."""
    return create_app({"INSTANCE_PATH": str(folder / "instance"), "SQLALCHEMY_DATABASE_URI": database_url,
                       "ENCRYPTION_KEYS": keys, "SECRET_KEY": secrets.token_urlsafe(32)})


def command(app, *args):
    """Run `flask --app wsgi ARGS` on this app, as the flask script would; fail loudly."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=list(args))
        close(app)
    if result.exit_code != 0:
        raise SystemExit(f"`flask {' '.join(args)}` failed: {result.output}{result.exception or ''}")


def close(app):
    """Give back the session and close the app's connections."""
    db.session.remove()
    db.engine.dispose()


def seed(database_url, folder, key, count):
    """Create the schema and `count` authenticators, each with one secret sealed under key."""
    app = keyed_app(database_url, folder, [key])
    with app.app_context():
        upgrade()
        close(app)
    command(app, "domains", "create", DOMAIN)
    command(app, "demo", "seed", "--count", str(count), "--domain", DOMAIN)


def rotation_pass(app, batch_size):
    """Re-encrypt every value under the app's first key; return (values moved, seconds)."""
    with app.app_context():
        started = time.perf_counter()
        moved = rotate(batch_size)
        seconds = time.perf_counter() - started
        close(app)
    return moved, seconds


def baseline_pass(app, batch_size):
    """Walk the values under the app's old keys as rotation does, writing each back unchanged; return (rows, seconds)."""
    with app.app_context():
        ring = app.extensions["apiauth_keyring"]
        old_ids = [key_id for key_id in ring.key_ids if key_id != ring.primary_id]
        started = time.perf_counter()
        written = 0
        for sealed in sealed_columns():
            for rows in batches_under(sealed, old_ids, batch_size):
                written += sum(swap(sealed, row, row.sealed) for row in rows)
                db.session.commit()
        seconds = time.perf_counter() - started
        close(app)
    return written, seconds


@dataclass
class Figures:
    """The passes of one database: values per second re-encrypted, and written back unchanged."""

    database: str
    values: int
    rotation: list = field(default_factory=list)
    baseline: list = field(default_factory=list)
    keys_in_use: int = 1

    def rate(self, passes):
        """Median values per second over passes of (count, seconds)."""
        return statistics.median(count / seconds for count, seconds in passes)

    def problems(self):
        """Say what went wrong: a pass that did not touch every value once, values left under two keys."""
        found = [f"a pass touched {count} of {self.values} values"
                 for count, _ in self.rotation + self.baseline if count != self.values]
        if self.keys_in_use != 1:
            found.append(f"values remain under {self.keys_in_use} keys")
        return found


def measure(database, database_url, folder, options):
    """Seed a database, then alternate rotation and baseline passes between two keys."""
    first, second = new_encryption_key(), new_encryption_key()
    seed(database_url, folder, first, options.count)
    # Each app's first key is the one its passes move the values to; the values start under `first`.
    apps = [keyed_app(database_url, folder, [second, first]), keyed_app(database_url, folder, [first, second])]
    figures = Figures(database, options.count)
    for number in range(options.rounds):
        toward = apps[number % 2]
        figures.baseline.append(baseline_pass(toward, options.batch_size))
        figures.rotation.append(rotation_pass(toward, options.batch_size))
    with apps[0].app_context():
        figures.keys_in_use = len(key_usage())
        close(apps[0])
    return figures


def section(results, notes, options, started, load, seconds):
    """Render the figures as this benchmark's section of docs/benchmarks.md."""
    failed = [f"{figures.database}: {problem}" for figures in results for problem in figures.problems()]
    lines = [
        SECTION_START,
        f"## Key rotation: values re-encrypted per second, {options.count:,} values",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds:.0f} s.",
        f"- Machine: {machine()}; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        f"- Command: `{COMMAND} --count {options.count} --rounds {options.rounds} --batch-size {options.batch_size}`",
        f"- Method: each database seeded with `db upgrade`, `domains create` and `demo seed --count {options.count}` "
        f"(one sealed secret per authenticator). Then {options.rounds} rounds, each a baseline pass and a rotation "
        f"pass toward the key the values are not under, alternately one key and the other: the rotation pass is "
        f"`rotate()` as `flask keys rotate --batch-size {options.batch_size}` runs it (batches in key order, one "
        f"transaction each, a compare-and-swap UPDATE per value); the baseline pass walks the same batches with the "
        f"same UPDATE, writing each value back unchanged (no decryption, no encryption). In-process, one thread.",
        "- Requirement: every pass touches every value once. The rates and their ratio are for information.",
        *(f"- {note}." for note in notes),
        "",
        "| database | re-encrypted values/s (median) | written back unchanged values/s (median) | "
        "re-encryption ÷ baseline | passes | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for figures in results:
        rotation, baseline = figures.rate(figures.rotation), figures.rate(figures.baseline)
        lines.append(
            f"| {figures.database} | {rotation:,.0f} | {baseline:,.0f} | **{rotation / baseline:.2f}** | "
            f"{len(figures.rotation)} + {len(figures.baseline)} | {'FAIL' if figures.problems() else 'pass'} |"
        )
    lines += ["", f"Result: {'FAIL: ' + '; '.join(failed) if failed else 'pass'}.", SECTION_END]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the benchmark, print and record the figures; exit 1 if a pass missed values."""
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="authenticators, one sealed value each")
    parser.add_argument("--rounds", type=int, default=4, help="rotation passes (and as many baseline passes)")
    parser.add_argument("--batch-size", type=int, default=500, help="values per transaction, as keys rotate's option")
    parser.add_argument("--sqlite-only", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--output", type=Path, default=DOCS, help="markdown file to write the figures into")
    options = parser.parse_args(argv)

    started, clock, load_before = datetime.now(UTC), time.perf_counter(), os.getloadavg()[0]
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as folder, ExitStack() as stack:
        folder = Path(folder)
        results.append(measure("SQLite", f"sqlite:///{folder / 'apiauth.sqlite3'}", folder / "sqlite", options))
        server_url, name = postgres_for_run(stack, options.sqlite_only, notes)
        if server_url:
            database_url = stack.enter_context(database_on(server_url))
            results.append(measure(name, database_url, folder / "postgresql", options))
    load = (load_before, os.getloadavg()[0])

    text = section(results, notes, options, started, load, time.perf_counter() - clock)
    publish(options.output, text, SECTION_START, SECTION_END)
    return 1 if any(figures.problems() for figures in results) else 0


if __name__ == "__main__":
    sys.exit(main())
