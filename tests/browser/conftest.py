"""Browser fixtures: the test app on a real port, one Chromium per session, a fresh page per test.

When a test fails, its page is saved under test-output/ (screenshot, HTML, console log).
"""

import re
from pathlib import Path

import pytest

from ..conftest import PASSWORD
from .live import CHROMIUM, chromium, new_page, serve, sign_in

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"
REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so that fixtures can tell a failed test."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def live_server(app):
    """The test app (fresh SQLite database, CSRF on) served over HTTP; yields its base URL."""
    with serve(app) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, launched once for the session."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-deps (never `playwright install`).")
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(request, browser, live_server):
    """A page in a fresh browser context on the live server; uncaught script errors fail the test."""
    page = new_page(browser, live_server)
    console, page_errors = [], []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    yield page
    try:
        if any(report.failed for report in request.node.stash.get(REPORTS, {}).values()):
            _save_evidence(page, request.node.nodeid, console + [f"pageerror: {e}" for e in page_errors])
    finally:
        page.context.close()
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


def _save_evidence(page, nodeid, log_lines):
    """Save a screenshot, the HTML and the console of a failed test's page under test-output/."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    stem = OUTPUT_DIR / re.sub(r"[^\w.-]+", "_", nodeid)
    page.screenshot(path=f"{stem}.png", full_page=True)
    Path(f"{stem}.html").write_text(page.content())
    Path(f"{stem}.log").write_text(f"url: {page.url}\n" + "\n".join(log_lines) + "\n")
    print(f"Saved the page of the failed test: {stem}.png, .html, .log")


@pytest.fixture
def admin_page(page, admin):
    """A page signed in, through the sign-in form, as the test domain's manager."""
    return sign_in(page, admin.username, PASSWORD)
