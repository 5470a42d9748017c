"""The editor and the pane in a real browser: what a person sees while choosing, typing and saving."""

import re

import pytest
from playwright.sync_api import expect

from .pages import assert_not_reloaded, mark_page

pytestmark = pytest.mark.browser

SECRET_CANARY = "canary-client-secret-7f3a9c"


def authenticator_form(page):
    """The editor's form, apart from the Test section below it, which has fields of its own."""
    return page.locator("#authenticator-form")


def names_listed(page):
    """The name cells of the pane, top to bottom."""
    return page.get_by_role("rowheader")


# The editor


def test_choosing_a_method_swaps_its_fields_in_place_keeping_name_and_description(admin_page):
    page = admin_page
    page.goto("/authenticators/new?method=api_key")
    form = authenticator_form(page)
    form.get_by_label("Name", exact=True).fill("Payments API")
    form.get_by_label("Description").fill("Used by the billing webhook")
    expect(form.get_by_label("Key", exact=True)).to_be_visible()
    mark_page(page)

    form.get_by_label("Method").select_option(label="OAuth 2.0")

    expect(form.get_by_label("Access Token URL")).to_be_visible()
    expect(form.get_by_label("Grant type")).to_have_value("client_credentials")
    expect(form.get_by_label("Client ID")).to_be_visible()
    expect(form.get_by_label("Key", exact=True)).to_have_count(0)

    form.get_by_label("Method").select_option(label="Basic Auth")

    expect(form.get_by_label("User name")).to_be_visible()
    expect(form.get_by_label("Password", exact=True)).to_be_visible()
    expect(form.get_by_label("Access Token URL")).to_have_count(0)
    expect(form.get_by_label("Name", exact=True)).to_have_value("Payments API")
    expect(form.get_by_label("Description")).to_have_value("Used by the billing webhook")
    assert_not_reloaded(page)


def test_choosing_a_grant_swaps_its_fields_in_place_keeping_client_id_and_scope(admin_page, live_server):
    page = admin_page
    page.goto("/authenticators/new?method=oauth2")
    form = authenticator_form(page)
    form.get_by_label("Client ID").fill("crm-client")
    form.get_by_label("Scope").fill("contacts.read contacts.write")
    mark_page(page)
    grant = form.get_by_label("Grant type")
    authorization_url = form.get_by_label("Authorization URL")
    callback_url = form.get_by_label("Callback URL")
    challenge_method = form.get_by_label("Code challenge method")
    legacy_note = page.get_by_role("note")
    username = form.get_by_label("User name")
    password = form.get_by_label("Password", exact=True)

    grant.select_option(label="Authorization Code")

    expect(authorization_url).to_be_visible()
    expect(callback_url).to_have_value(f"{live_server}/oauth/callback")
    expect(callback_url).not_to_be_editable()
    expect(challenge_method).to_have_count(0)
    expect(legacy_note).to_have_count(0)
    expect(username).to_have_count(0)

    grant.select_option(label="Authorization Code with PKCE")

    expect(challenge_method).to_have_value("S256")
    expect(authorization_url).to_be_visible()
    expect(callback_url).not_to_be_editable()

    grant.select_option(label="Password (legacy)")

    expect(legacy_note).to_contain_text("The password grant is legacy")
    expect(username).to_be_visible()
    expect(password).to_be_visible()
    expect(authorization_url).to_have_count(0)
    expect(callback_url).to_have_count(0)

    grant.select_option(label="Client Credentials")

    expect(legacy_note).to_have_count(0)
    expect(username).to_have_count(0)
    expect(password).to_have_count(0)
    expect(authorization_url).to_have_count(0)
    expect(callback_url).to_have_count(0)
    expect(form.get_by_label("Client ID")).to_have_value("crm-client")
    expect(form.get_by_label("Scope")).to_have_value("contacts.read contacts.write")
    assert_not_reloaded(page)


def test_condition_rows_are_added_and_removed_in_place_and_saved_with_the_authenticator(admin_page):
    page = admin_page
    page.goto("/authenticators/new?method=api_key")
    form = authenticator_form(page)
    form.get_by_label("Name", exact=True).fill("Weather API")
    form.get_by_label("Key", exact=True).fill("X-API-Key")
    form.get_by_label("Value").fill("weather-key")
    mark_page(page)
    rows = page.locator("#condition-rows [data-row]")
    add_condition = page.get_by_role("button", name="Add condition")

    for count in (1, 2, 3):
        add_condition.click()
        expect(rows).to_have_count(count)
    rows.nth(1).get_by_role("button", name="Remove").click()

    expect(rows).to_have_count(2)
    assert_not_reloaded(page)

    first, second = rows.nth(0), rows.nth(1)
    first.get_by_label("Source").select_option(label="Status code")
    first.get_by_label("Operator").select_option(label="greater than")
    first.get_by_label("Value").fill("499")
    second.get_by_label("Source").select_option(label="Header")
    second.get_by_label("Header name").fill("X-Auth-Result")
    second.get_by_label("Operator").select_option(label="equals")
    second.get_by_label("Value").fill("denied")
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("status")).to_have_text("Authenticator “Weather API” created.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit “Weather API”")
    expect(rows).to_have_count(2)
    expect(first.get_by_label("Source")).to_have_value("status_code")
    expect(first.get_by_label("Operator")).to_have_value("greater_than")
    expect(first.get_by_label("Value")).to_have_value("499")
    expect(second.get_by_label("Source")).to_have_value("header")
    expect(second.get_by_label("Header name")).to_have_value("X-Auth-Result")
    expect(second.get_by_label("Operator")).to_have_value("equals")
    expect(second.get_by_label("Value")).to_have_value("denied")


def test_a_rejected_form_shows_the_message_beside_the_field_and_keeps_all_but_secrets(admin_page):
    page = admin_page
    page.goto("/authenticators/new?method=oauth2")
    form = authenticator_form(page)
    form.get_by_label("Name", exact=True).fill("CRM")
    form.get_by_label("Description").fill("Nightly contact sync")
    form.get_by_label("Grant type").select_option(label="Authorization Code")
    form.get_by_label("Authorization URL").fill("https://auth.example.com/authorize")
    form.get_by_label("Client ID").fill("crm-client")
    form.get_by_label("Client secret").fill(SECRET_CANARY)
    form.get_by_label("Scope").fill("contacts.read")
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("alert")).to_have_text(
        "Some fields need attention. Nothing was saved. "
        "Secrets are never sent back to the browser: type any new secret again."
    )
    token_url = form.get_by_label("Access Token URL")
    expect(token_url).to_have_attribute("aria-invalid", "true")
    expect(token_url).to_have_accessible_description(re.compile(r"Enter the Access Token URL\.$"))
    expect(page.locator("#field-access_token_url")).to_contain_text("Enter the Access Token URL.")
    expect(form.get_by_label("Name", exact=True)).to_have_value("CRM")
    expect(form.get_by_label("Description")).to_have_value("Nightly contact sync")
    expect(form.get_by_label("Grant type")).to_have_value("authorization_code")
    expect(form.get_by_label("Authorization URL")).to_have_value("https://auth.example.com/authorize")
    expect(form.get_by_label("Client ID")).to_have_value("crm-client")
    expect(form.get_by_label("Scope")).to_have_value("contacts.read")
    expect(form.get_by_label("Client secret")).to_have_value("")
    assert SECRET_CANARY not in page.content()

    token_url.fill("https://auth.example.com/token")
    form.get_by_label("Client secret").fill(SECRET_CANARY)
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("status")).to_have_text("Authenticator “CRM” created.")
    expect(page.locator("#editor-status .badge")).to_have_text("Need to Login")
    expect(page.locator("#editor-status .login-link")).to_have_text("Login")


# The pane


def test_search_narrows_the_rows_as_you_type(admin_page, make_authenticator):
    page = admin_page
    for name in ("Billing EU", "Billing US", "CRM", "Weather"):
        make_authenticator(name)
    page.goto("/authenticators")
    expect(names_listed(page)).to_have_text(["Billing EU", "Billing US", "CRM", "Weather"])
    mark_page(page)
    search = page.get_by_label("Search by name")

    search.press_sequentially("bill", delay=30)

    expect(names_listed(page)).to_have_text(["Billing EU", "Billing US"])
    expect(page).to_have_url(re.compile(r"/authenticators\?q=bill(&|$)"))

    search.press_sequentially("ing u", delay=30)

    expect(names_listed(page)).to_have_text(["Billing US"])

    search.fill("no such thing")

    expect(page.get_by_text("No authenticator name contains “no such thing”.")).to_be_visible()
    expect(names_listed(page)).to_have_count(0)

    search.fill("")

    expect(names_listed(page)).to_have_count(4)
    assert_not_reloaded(page)


def test_clicking_a_column_header_sorts_by_it(admin_page, make_authenticator):
    page = admin_page
    make_authenticator("Alpha", method="api_key")
    make_authenticator("Bravo", method="oauth2", access_token_url="https://auth.example.com/token")
    make_authenticator("Charlie", method="basic")
    page.goto("/authenticators")
    name_header = page.get_by_role("columnheader", name="Name", exact=True)
    method_header = page.get_by_role("columnheader", name="Method", exact=True)
    expect(names_listed(page)).to_have_text(["Alpha", "Bravo", "Charlie"])
    expect(name_header).to_have_attribute("aria-sort", "ascending")
    mark_page(page)

    name_header.get_by_role("link").click()

    expect(names_listed(page)).to_have_text(["Charlie", "Bravo", "Alpha"])
    expect(name_header).to_have_attribute("aria-sort", "descending")

    method_header.get_by_role("link").click()

    expect(names_listed(page)).to_have_text(["Alpha", "Charlie", "Bravo"])
    expect(method_header).to_have_attribute("aria-sort", "ascending")
    expect(name_header).not_to_have_attribute("aria-sort", re.compile(".*"))
    expect(page).to_have_url(re.compile(r"/authenticators\?sort=method$"))
    assert_not_reloaded(page)


def test_searching_keeps_the_sort_chosen_by_a_column_header(admin_page, make_authenticator):
    page = admin_page
    make_authenticator("Billing Alpha", method="oauth2", access_token_url="https://auth.example.com/token")
    make_authenticator("Billing Bravo", method="api_key")
    make_authenticator("CRM", method="basic")
    page.goto("/authenticators")
    page.get_by_role("columnheader", name="Method", exact=True).get_by_role("link").click()
    expect(names_listed(page)).to_have_text(["Billing Bravo", "CRM", "Billing Alpha"])

    page.get_by_label("Search by name").press_sequentially("bill", delay=30)

    expect(page).to_have_url(re.compile(r"[?&]q=bill"))
    expect(names_listed(page)).to_have_text(["Billing Bravo", "Billing Alpha"], timeout=2_000)


def test_going_back_after_a_search_shows_the_whole_pane_even_without_htmx_history_cache(
    admin_page, make_authenticator
):
    page = admin_page
    for name in ("Billing EU", "CRM"):
        make_authenticator(name)
    page.goto("/authenticators")
    page.get_by_label("Search by name").press_sequentially("bill", delay=30)
    expect(names_listed(page)).to_have_text(["Billing EU"])
    # htmx keeps only the last ten pages in sessionStorage: older ones are a cache miss, as here.
    page.evaluate("sessionStorage.removeItem('htmx-history-cache')")

    page.go_back()

    expect(names_listed(page)).to_have_text(["Billing EU", "CRM"])
    expect(page.get_by_role("heading", name="API Authenticators")).to_be_visible(timeout=2_000)
    expect(page.get_by_label("Search by name")).to_be_visible(timeout=2_000)


def test_paging_moves_through_the_rows(admin_page, app, make_authenticator):
    page = admin_page
    app.config["PANE_PAGE_SIZE"] = 2
    for number in range(1, 6):
        make_authenticator(f"Service {number}")
    page.goto("/authenticators")
    pager = page.get_by_role("navigation", name="Pages")
    expect(names_listed(page)).to_have_text(["Service 1", "Service 2"])
    expect(pager).to_contain_text("1–2 of 5")
    expect(pager).to_contain_text("Page 1 of 3")
    expect(pager.get_by_role("link", name="Previous")).to_have_count(0)
    mark_page(page)

    pager.get_by_role("link", name="Next").click()

    expect(names_listed(page)).to_have_text(["Service 3", "Service 4"])
    expect(pager).to_contain_text("3–4 of 5")
    expect(pager).to_contain_text("Page 2 of 3")
    expect(page).to_have_url(re.compile(r"/authenticators\?page=2$"))

    pager.get_by_role("link", name="Next").click()

    expect(names_listed(page)).to_have_text(["Service 5"])
    expect(pager).to_contain_text("Page 3 of 3")
    expect(pager.get_by_role("link", name="Next")).to_have_count(0)

    pager.get_by_role("link", name="Previous").click()

    expect(names_listed(page)).to_have_text(["Service 3", "Service 4"])
    assert_not_reloaded(page)


def test_delete_asks_for_confirmation_before_deleting(admin_page, make_authenticator):
    page = admin_page
    make_authenticator("Legacy CRM")
    make_authenticator("Weather")
    page.goto("/authenticators")
    legacy_row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Legacy CRM"))

    legacy_row.get_by_role("link", name="Delete").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Delete “Legacy CRM”?")
    page.get_by_role("link", name="Cancel").click()
    expect(names_listed(page)).to_have_text(["Legacy CRM", "Weather"])

    legacy_row.get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()

    expect(page.get_by_role("status")).to_have_text("Authenticator “Legacy CRM” deleted.")
    expect(names_listed(page)).to_have_text(["Weather"])
