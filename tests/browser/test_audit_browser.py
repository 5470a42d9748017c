"""The audit log in a real browser: the filters narrow the list in place."""

import re

import pytest
from playwright.sync_api import expect

from apiauth.audit.events import record_event
from apiauth.extensions import db

pytestmark = pytest.mark.browser


def test_choosing_a_filter_narrows_the_list_without_a_page_load(admin_page, make_authenticator):
    page = admin_page
    weather, crm = make_authenticator("Weather"), make_authenticator("CRM")
    record_event("updated", "alice", authenticator=weather, changes=["key"])
    record_event("deleted", "bob", authenticator=crm)
    db.session.commit()
    page.get_by_role("link", name="Audit log").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(3)  # and alice's sign-in
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_label("Authenticator").select_option("Weather")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("fields: key")
    page.get_by_label("User").select_option("bob")
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    page.get_by_label("Authenticator").select_option("CRM")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("deleted")

    assert page.evaluate("window.stillTheSamePage === true"), "the page was reloaded"
    expect(page).to_have_url(re.compile(r"/audit\?authenticator=CRM&actor=bob(&action=)?$"))
