"""Test in a real browser: the panel, the result, and the status cell that follows it in place."""

import re

import pytest
from playwright.sync_api import expect
from werkzeug import Response

from apiauth.authentication import record_status
from apiauth.extensions import db

from ..conftest import PASSWORD
from .live import new_page, sign_in
from .pages import assert_not_reloaded, mark_page, row_of, status_cell

pytestmark = pytest.mark.browser

SECRET = "canary-key-5b8e21"
# The pane polls for status changes every 3 s; allow one missed beat.
POLL_WAIT_MS = 7_000
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")


@pytest.fixture
def api(httpserver):
    """A local API at /v1/me that accepts only X-API-Key: canary-key-5b8e21."""

    def handler(request):
        if request.headers.get("X-API-Key") == SECRET:
            return Response('{"ok": true}', content_type="application/json")
        return Response('{"error": "denied"}', status=401, content_type="application/json")

    httpserver.expect_request("/v1/me").respond_with_handler(handler)
    return httpserver


def open_test_panel(page, name):
    """Click the row's Test link and return the panel that appears."""
    row_of(page, name).get_by_role("link", name="Test", exact=True).click()
    panel = page.get_by_role("region", name=f"Test “{name}”")
    expect(panel).to_be_visible()
    return panel


def run_test(panel, url):
    """Fill in the URL, click Run test, and return where the result appears."""
    panel.get_by_label("URL", exact=True).fill(url)
    panel.get_by_role("button", name="Run test").click()
    return panel.locator("#test-result")


# The pane


def test_a_test_from_the_pane_shows_the_result_and_turns_the_status_cell_to_succeeded(
    admin_page, make_authenticator, api
):
    page = admin_page
    authenticator = make_authenticator("Weather", secrets={"value": SECRET})
    page.goto("/authenticators")
    expect(status_cell(page, authenticator)).to_have_text("Not tested")
    mark_page(page)

    panel = open_test_panel(page, "Weather")
    result = run_test(panel, api.url_for("/v1/me"))

    expect(result.locator(".verdict")).to_have_text(re.compile(r"^\s*Succeeded\s*· HTTP 200\s*$"))
    expect(result.locator(".response-body")).to_have_text('{"ok": true}')
    result.get_by_text("Response headers").click()
    expect(result.get_by_role("row", name=re.compile("Content-Type"))).to_contain_text("application/json")
    log = result.locator(".execution-log li")
    expect(log).to_have_text([
        re.compile(r"^request sent: GET http://localhost:\d+/v1/me \(headers: X-API-Key\)$"),
        re.compile(r"^response: 200 OK in \d+ ms, 12 bytes$"),
        "judgment: succeeded",
    ])
    expect(status_cell(page, authenticator)).to_have_text("Succeeded")
    # Read at once, not awaited: the pane's 3 s poll must not be what fills it in.
    assert TIMESTAMP.match(page.locator(f"#updated-{authenticator.id}").inner_text())
    assert_not_reloaded(page)
    assert SECRET not in page.content()


def test_a_rejected_key_turns_the_status_cell_to_failed_http_401_in_place(admin_page, make_authenticator, api):
    page = admin_page
    authenticator = make_authenticator("Weather", secrets={"value": "an-old-key"})
    page.goto("/authenticators")
    mark_page(page)

    result = run_test(open_test_panel(page, "Weather"), api.url_for("/v1/me"))

    expect(result.locator(".verdict")).to_have_text(re.compile(r"^\s*Failed http_401\s*· HTTP 401\s*$"))
    expect(result.locator(".response-body")).to_have_text('{"error": "denied"}')
    expect(result.locator(".execution-log li").last).to_have_text("judgment: failed: http_401")
    expect(status_cell(page, authenticator)).to_have_text("Failed http_401")
    assert_not_reloaded(page)
    assert "an-old-key" not in page.content()


def test_an_open_pane_picks_up_status_changes_made_elsewhere(
    admin_page, browser, live_server, admin, make_authenticator, api
):
    page = admin_page
    authenticator = make_authenticator("Weather", secrets={"value": SECRET})
    make_authenticator("CRM")
    page.goto("/authenticators")
    expect(status_cell(page, authenticator)).to_have_text("Not tested")
    mark_page(page)

    elsewhere = sign_in(new_page(browser, live_server), admin.username, PASSWORD)
    try:
        run_test(open_test_panel(elsewhere, "Weather"), api.url_for("/v1/me"))
        expect(status_cell(elsewhere, authenticator)).to_have_text("Succeeded")
    finally:
        elsewhere.context.close()

    expect(status_cell(page, authenticator)).to_have_text("Succeeded", timeout=POLL_WAIT_MS)
    expect(page.locator(f"#updated-{authenticator.id}")).to_have_text(TIMESTAMP)

    # A consumer's call records its outcome the same way.
    record_status(authenticator, "failed", "timeout")
    db.session.commit()

    expect(status_cell(page, authenticator)).to_have_text("Failed timeout", timeout=POLL_WAIT_MS)
    expect(row_of(page, "CRM").locator("td.status")).to_have_text("Not tested")
    assert_not_reloaded(page)


def test_the_test_request_is_remembered_for_the_next_test(admin_page, make_authenticator, api):
    page = admin_page
    make_authenticator("Weather", secrets={"value": SECRET})
    url = api.url_for("/v1/me")
    page.goto("/authenticators")
    panel = open_test_panel(page, "Weather")
    panel.get_by_label("HTTP method").select_option("POST")
    panel.get_by_label("Headers").fill("Accept: application/json\nX-Trace: browser-test")
    panel.get_by_label("Body").fill('{"ping": 1}')
    expect(run_test(panel, url).locator(".verdict")).to_contain_text("Succeeded")

    page.goto("/authenticators")
    panel = open_test_panel(page, "Weather")

    expect(panel.get_by_label("HTTP method")).to_have_value("POST")
    expect(panel.get_by_label("URL", exact=True)).to_have_value(url)
    expect(panel.get_by_label("Headers")).to_have_value("Accept: application/json\nX-Trace: browser-test")
    expect(panel.get_by_label("Body")).to_have_value('{"ping": 1}')
    sent = api.log[-1][0]
    assert (sent.method, sent.headers["X-Trace"], sent.get_data(as_text=True)) == ("POST", "browser-test", '{"ping": 1}')


# The editor


def test_the_editor_tests_unsaved_values_and_saving_keeps_the_result(admin_page, make_authenticator, api):
    page = admin_page
    authenticator = make_authenticator(
        "Weather", secrets={"value": "an-old-key"}, status="failed", status_reason="http_401"
    )
    page.goto(f"/authenticators/{authenticator.id}/edit")
    editor_status = page.locator("#editor-status")
    expect(editor_status).to_have_text("Failed http_401")
    mark_page(page)
    page.locator("#authenticator-form").get_by_label("Value").fill(SECRET)

    section = page.get_by_role("region", name="Test", exact=True)
    result = run_test(section, api.url_for("/v1/me"))

    expect(result.locator(".verdict")).to_have_text(re.compile(r"^\s*Succeeded\s*· HTTP 200\s*$"))
    expect(result).to_contain_text("These values are not saved yet: saving them keeps this result as the status.")
    expect(editor_status).to_have_text("Failed http_401")
    assert SECRET not in result.inner_html()
    assert_not_reloaded(page)

    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_have_text("Authenticator “Weather” saved.")
    expect(editor_status).to_have_text("Succeeded")
    assert SECRET not in page.content()
