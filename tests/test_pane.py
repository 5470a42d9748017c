"""The pane: every authenticator of the current domain, searched, sorted and paged."""

import re
from datetime import datetime

from apiauth.extensions import db
from apiauth.models import Domain


def row_names(page):
    return re.findall(r'<th scope="row"><a href="/authenticators/\d+/edit">([^<]+)</a>', page)


def test_an_empty_domain_shows_how_to_add_the_first_authenticator(client):
    page = client.get("/authenticators").get_data(as_text=True)
    assert "No authenticators in this domain yet" in page
    for method in ("api_key", "basic", "oauth2"):
        assert f'href="/authenticators/new?method={method}"' in page


def test_the_pane_shows_every_column(client, make_authenticator):
    make_authenticator(
        "CRM", method="oauth2", grant_type="client_credentials", secrets={"client_secret": "s"},
        status="failed", status_reason="server_error", status_updated_at=datetime(2026, 12, 1, 9, 30),
        modified_at=datetime(2026, 11, 30, 8, 15),
    )
    page = client.get("/authenticators").get_data(as_text=True)
    for header in ("Name", "Method", "Last Modified Time", "Modified By", "Status", "Last Updated"):
        assert f">{header}</a>" in page or f">{header} <span" in page, header
    row = page[page.index('<tr id="authenticator-'):]
    assert "CRM" in row and "OAuth 2.0 · Client Credentials" in row
    assert "2026-11-30 08:15 UTC" in row and "2026-12-01 09:30 UTC" in row
    assert "alice" in row
    assert re.search(r'Failed</span> <span class="reason">server_error</span>', row)


def test_the_pane_shows_only_the_current_domain(client, make_authenticator):
    other = Domain(name="Other")
    db.session.add(other)
    db.session.commit()
    make_authenticator("Ours", secrets={"value": "v"})
    make_authenticator("Theirs", secrets={"value": "v"}, target_domain=other)
    assert row_names(client.get("/authenticators").get_data(as_text=True)) == ["Ours"]


def test_search_by_name_ignores_case(client, make_authenticator):
    for name in ("Weather EU", "weather US", "CRM"):
        make_authenticator(name, secrets={"value": "v"})
    assert row_names(client.get("/authenticators?q=WEATHER").get_data(as_text=True)) == ["Weather EU", "weather US"]
    assert "No authenticator name contains “nothing”" in client.get("/authenticators?q=nothing").get_data(as_text=True)


def test_search_treats_wildcards_literally(client, make_authenticator):
    make_authenticator("100% uptime", secrets={"value": "v"})
    make_authenticator("1000 users", secrets={"value": "v"})
    assert row_names(client.get("/authenticators?q=100%25").get_data(as_text=True)) == ["100% uptime"]


def test_sort_by_any_column_both_ways(client, make_authenticator):
    make_authenticator("b-basic", method="basic", secrets={"password": "p"}, status="succeeded")
    make_authenticator("a-key", method="api_key", secrets={"value": "v"}, status="failed")
    make_authenticator("c-oauth", method="oauth2", secrets={"client_secret": "s"}, status="not_tested")
    names = lambda url: row_names(client.get(url).get_data(as_text=True))
    assert names("/authenticators") == ["a-key", "b-basic", "c-oauth"]
    assert names("/authenticators?sort=name&dir=desc") == ["c-oauth", "b-basic", "a-key"]
    assert names("/authenticators?sort=method") == ["a-key", "b-basic", "c-oauth"]
    assert names("/authenticators?sort=status") == ["a-key", "c-oauth", "b-basic"]
    for column in ("modified_at", "modified_by", "status_updated_at"):
        assert sorted(names(f"/authenticators?sort={column}&dir=desc")) == ["a-key", "b-basic", "c-oauth"]


def test_unknown_sort_and_page_values_fall_back_to_defaults(client, make_authenticator):
    make_authenticator("only", secrets={"value": "v"})
    response = client.get("/authenticators?sort=password&dir=sideways&page=-4")
    assert response.status_code == 200 and row_names(response.get_data(as_text=True)) == ["only"]


def test_paging_through_many_rows(app, client, make_authenticator):
    app.config["PANE_PAGE_SIZE"] = 2
    for number in range(5):
        make_authenticator(f"auth-{number}", secrets={"value": "v"})
    first = client.get("/authenticators").get_data(as_text=True)
    assert row_names(first) == ["auth-0", "auth-1"]
    assert "1–2 of 5" in first and "Page 1 of 3" in first and 'rel="next"' in first
    last = client.get("/authenticators?page=3").get_data(as_text=True)
    assert row_names(last) == ["auth-4"] and 'rel="next"' not in last
    assert row_names(client.get("/authenticators?page=99").get_data(as_text=True)) == ["auth-4"]


def test_htmx_requests_get_only_the_results(client, make_authenticator):
    make_authenticator("only", secrets={"value": "v"})
    partial = client.get("/authenticators?q=on", headers={"HX-Request": "true"})
    text = partial.get_data(as_text=True)
    assert "<html" not in text and row_names(text) == ["only"]
    assert "HX-Request" in partial.headers["Vary"]


def test_the_status_cell_is_its_own_partial(client, make_authenticator):
    authenticator = make_authenticator("x", secrets={"value": "v"}, status="failed", status_reason="timeout")
    cell = client.get(f"/authenticators/{authenticator.id}/status", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert cell.startswith(f'<td id="status-{authenticator.id}" class="status">')
    assert "timeout" in cell
