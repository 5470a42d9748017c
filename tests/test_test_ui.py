"""Test, from the pane and from the editor: the request, the result panel, the status."""

import base64
import re

import pytest
from werkzeug import Response

from apiauth.extensions import db
from apiauth.models import Authenticator, TokenState
from apiauth.tokenstore import load_tokens

SECRET = "canary-key-9d1e"


def fresh(authenticator):
    db.session.expire_all()
    return db.session.get(Authenticator, authenticator.id)


@pytest.fixture
def api(httpserver):
    """A local API that accepts only X-API-Key: canary-key-9d1e."""

    def handler(request):
        if request.headers.get("X-API-Key") == SECRET:
            return Response('{"ok": true}', content_type="application/json")
        return Response('{"error": "denied"}', status=401, content_type="application/json")

    httpserver.expect_request("/v1/me").respond_with_handler(handler)
    return httpserver


def run_test(client, authenticator, url, origin="pane", **fields):
    return client.post(
        f"/authenticators/{authenticator.id}/test",
        data={"http_method": "GET", "url": url, "headers": "", "body": "", "origin": origin, **fields},
        headers={"HX-Request": "true"},
    )


def test_a_passing_test_sets_succeeded_and_swaps_the_status_cell(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    response = run_test(client, authenticator, api.url_for("/v1/me"))
    page = response.get_data(as_text=True)
    assert '<span class="badge status-succeeded">Succeeded</span>' in page
    assert "HTTP 200" in page and "{&#34;ok&#34;: true}" in page
    assert re.search(rf'<template><td id="status-{authenticator.id}" class="status" hx-swap-oob="true">', page)
    assert "judgment: succeeded" in page
    assert SECRET not in page
    assert fresh(authenticator).status == "succeeded"
    assert fresh(authenticator).status_updated_at is not None


def test_a_rejected_call_sets_failed_with_the_reason(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": "wrong"})
    page = run_test(client, authenticator, api.url_for("/v1/me")).get_data(as_text=True)
    assert "Failed</span> <span class=\"reason\">http_401</span>" in page
    assert (fresh(authenticator).status, fresh(authenticator).status_reason) == ("failed", "http_401")
    assert "http_401" in client.get("/authenticators").get_data(as_text=True)


def test_a_failure_condition_judges_the_result(client, make_authenticator, httpserver):
    httpserver.expect_request("/v1/me").respond_with_data("access denied by policy", status=200)
    authenticator = make_authenticator(
        "Key", secrets={"value": SECRET},
        conditions=[{"source": "body", "name": "", "operator": "contains", "value": "denied"}],
    )
    run_test(client, authenticator, httpserver.url_for("/v1/me"))
    assert fresh(authenticator).status_reason == 'condition: body contains "denied"'


def test_the_test_request_is_remembered_for_next_time(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    url = api.url_for("/v1/me")
    run_test(client, authenticator, url, http_method="POST", headers="Accept: application/json", body="{}")
    panel = client.get(f"/authenticators/{authenticator.id}/test", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert f'value="{url}"' in panel
    assert '<option selected value="POST">' in panel or 'selected value="POST"' in panel or 'value="POST" selected' in panel
    assert "Accept: application/json" in panel
    edit = client.get(f"/authenticators/{authenticator.id}/edit").get_data(as_text=True)
    assert f'value="{url}"' in edit


def test_testing_does_not_count_as_a_configuration_change(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    version, modified_at = authenticator.version, authenticator.modified_at
    run_test(client, authenticator, api.url_for("/v1/me"))
    assert fresh(authenticator).version == version
    assert fresh(authenticator).modified_at == modified_at


def test_bad_test_input_gets_clear_messages(client, make_authenticator):
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    page = run_test(client, authenticator, "not-a-url", headers="no colon here").get_data(as_text=True)
    assert "The test did not run:" in page
    assert "URL: Enter an absolute URL" in page
    assert "Headers: Line 1 is not a header: write it as Name: value." in page
    assert fresh(authenticator).status == "not_tested"


def test_a_blocked_address_fails_without_a_connection(app, client, make_authenticator, api):
    app.config["OUTBOUND_ALLOW"] = []
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    run_test(client, authenticator, api.url_for("/v1/me"))
    assert fresh(authenticator).status_reason == "blocked_address"
    assert api.log == []


def test_the_editor_tests_unsaved_values_without_changing_the_status(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": "wrong"})
    form = {"method": "api_key", "name": "Key", "key": "X-API-Key", "value": SECRET, "add_to": "header",
            "version": str(authenticator.version)}
    response = run_test(client, authenticator, api.url_for("/v1/me"), origin="editor", **form)
    page = response.get_data(as_text=True)
    assert "Succeeded" in page and "These values are not saved yet" in page
    assert SECRET not in page
    assert fresh(authenticator).status == "not_tested"

    # Saving exactly the tested values keeps the result.
    tested = re.search(r'name="tested_result" value="([^"]+)"', page).group(1)
    assert client.post(f"/authenticators/{authenticator.id}", data={**form, "tested_result": tested}).status_code == 302
    assert fresh(authenticator).status == "succeeded"


def test_a_tested_result_does_not_survive_a_change_after_the_test(client, make_authenticator, api):
    authenticator = make_authenticator("Key", secrets={"value": "wrong"})
    form = {"method": "api_key", "name": "Key", "key": "X-API-Key", "value": SECRET, "add_to": "header",
            "version": str(authenticator.version)}
    page = run_test(client, authenticator, api.url_for("/v1/me"), origin="editor", **form).get_data(as_text=True)
    tested = re.search(r'name="tested_result" value="([^"]+)"', page).group(1)
    client.post(f"/authenticators/{authenticator.id}", data={**form, "value": "changed-after", "tested_result": tested})
    assert fresh(authenticator).status == "not_tested"


def test_a_new_authenticator_can_be_tested_before_it_is_saved(client, api):
    form = {"method": "basic", "name": "New", "username": "user", "password": "pa55word"}
    page = client.post("/authenticators/test", data={**form, "http_method": "GET", "url": api.url_for("/v1/me"), "origin": "editor"},
                       headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "http_401" in page
    authorization = api.log[-1][0].headers["Authorization"]
    assert authorization == "Basic " + base64.b64encode(b"user:pa55word").decode()


def test_the_editor_refuses_to_test_an_invalid_form(client, make_authenticator):
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    form = {"method": "oauth2", "name": "Key", "grant_type": "client_credentials", "access_token_url": "nope",
            "client_id": "c", "client_secret": "s", "client_authentication": "body"}
    page = run_test(client, authenticator, "", origin="editor", **form).get_data(as_text=True)
    assert "Access Token URL: Enter an absolute URL" in page


def test_the_pane_picks_up_status_changes_made_elsewhere(client, make_authenticator, api):
    make_authenticator("First", secrets={"value": SECRET})
    second = make_authenticator("Second", secrets={"value": SECRET})
    pane = client.get("/authenticators").get_data(as_text=True)
    poll_url = re.search(r'id="status-poller" hidden hx-get="([^"]+)"', pane).group(1).replace("&amp;", "&")
    assert "Succeeded" not in client.get(poll_url, headers={"HX-Request": "true"}).get_data(as_text=True)

    run_test(client, second, api.url_for("/v1/me"))
    poll = client.get(poll_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    cell = re.search(rf'<td id="status-{second.id}" class="status" hx-swap-oob="true">(.*?)</td>', poll).group(1)
    assert "Succeeded" in cell
    # Each answer carries the poller again, asking from its own time on.
    assert re.search(r'id="status-poller" hidden hx-get="/authenticators/statuses\?ids=1,2&amp;since=', poll)


@pytest.mark.oidc
def test_client_credentials_test_gets_a_token_and_stores_it_encrypted(client, make_authenticator, oidc_provider):
    authenticator = make_authenticator(
        "OIDC", method="oauth2", grant_type="client_credentials", access_token_url=oidc_provider.token_endpoint,
        client_id="basic-client", client_authentication="basic_header", secrets={"client_secret": "basic-secret"},
    )
    page = run_test(client, authenticator, "").get_data(as_text=True)
    assert "Succeeded" in page and "a token was issued" in page
    state = db.session.get(TokenState, authenticator.id)
    assert state.access_token_encrypted.startswith("v1.") and state.expires_at
    before = oidc_provider.token_requests()
    page = run_test(client, authenticator, "").get_data(as_text=True)
    assert "token reused" in page
    assert oidc_provider.token_requests() == before


@pytest.mark.oidc
def test_a_wrong_client_secret_fails_with_invalid_client_and_keeps_the_tokens(client, make_authenticator, oidc_provider):
    authenticator = make_authenticator(
        "OIDC", method="oauth2", grant_type="client_credentials", access_token_url=oidc_provider.token_endpoint,
        client_id="post-client", client_authentication="body", secrets={"client_secret": "wrong-secret"},
    )
    page = run_test(client, authenticator, "").get_data(as_text=True)
    assert "invalid_client" in page and "wrong-secret" not in page
    assert fresh(authenticator).status_reason == "invalid_client"
    assert load_tokens(fresh(authenticator)) is None


def test_a_long_response_body_is_cut_with_a_note(client, make_authenticator, httpserver):
    httpserver.expect_request("/v1/export").respond_with_data("x" * 30_000)
    authenticator = make_authenticator("Key", secrets={"value": SECRET})
    page = run_test(client, authenticator, httpserver.url_for("/v1/export")).get_data(as_text=True)
    body = re.search(r'<pre class="response-body">(x*)</pre>', page).group(1)
    assert len(body) == 20_000
    assert "The body was cut to its first 20,000 characters." in page
