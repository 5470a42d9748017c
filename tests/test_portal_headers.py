"""The security headers on every response: each route of the URL map, as a manager, an anonymous
visitor and an API caller, redirects, partials, JSON and errors included."""

import re

import pytest

from apiauth.service_tokens import create_service_token

from .conftest import sign_in

PORTAL = "https://portal.example.com"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.IGNORECASE)


@pytest.fixture
def app_settings():
    return {"FRAME_ANCESTORS": ["'self'", PORTAL]}


@pytest.fixture
def real_ids(make_authenticator, domain):
    """A real id for each kind of URL argument, so that each route answers as it does in use."""
    authenticator = make_authenticator("Weather", secrets={"value": "k"})
    token, plain = create_service_token(domain, "webhooks", "manage")
    return {"authenticator_id": authenticator.id, "token_id": token.id, "filename": "app.css"}, plain


def every_route(app, ids):
    """(endpoint, method, URL) of each rule of the URL map, with a real id for each argument."""
    for rule in app.url_map.iter_rules():
        missing = rule.arguments - ids.keys()
        assert not missing, f"{rule.rule}: give the scan a real value for {missing}"
        url = rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def assert_security_headers(response, where):
    headers = response.headers
    policy = headers.get("Content-Security-Policy", "")
    assert "script-src 'self';" in policy and "unsafe" not in policy, (where, policy)
    assert "style-src 'self';" in policy, (where, policy)
    assert policy.endswith(f"frame-ancestors 'self' {PORTAL}"), (where, policy)
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("same-origin", "no-referrer"), where
    if response.mimetype in ("text/html", "application/json"):
        assert headers.get("Cache-Control") == "no-store", where
    if response.mimetype == "text/html":
        page = response.get_data(as_text=True)
        assert not INLINE_SCRIPT.search(page) and not INLINE_STYLE.search(page), where


def request_every_route(client, app, ids, **kwargs):
    responses = []
    for endpoint, method, url in every_route(app, ids):
        response = client.open(url, method=method, **kwargs)
        response.close()
        assert_security_headers(response, (endpoint, method, url, response.status_code))
        responses.append(response)
    return responses


def test_every_route_answers_a_manager_with_the_security_headers(app, real_ids):
    ids, _ = real_ids
    client = sign_in(app.test_client(), "alice")
    statuses = [response.status_code for response in request_every_route(client, app, ids)]
    assert {200, 302, 400} <= set(statuses), "the scan should meet pages, redirects and refusals"
    for htmx in request_every_route(client, app, ids, headers={"HX-Request": "true"}):
        assert htmx.status_code < 500


def test_every_route_answers_an_anonymous_visitor_with_the_security_headers(app, real_ids):
    ids, _ = real_ids
    statuses = {response.status_code for response in request_every_route(app.test_client(), app, ids)}
    assert {200, 302, 401} <= statuses


def test_every_api_route_answers_a_service_with_the_security_headers(app, real_ids):
    ids, plain = real_ids
    client = app.test_client()
    responses = request_every_route(client, app, ids, headers={"Authorization": f"Bearer {plain}"}, json={})
    assert any(response.status_code == 200 and response.is_json for response in responses)


def test_errors_and_static_files_carry_the_headers_and_static_files_stay_cacheable(app, client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert_security_headers(missing, "404")
    static = client.get("/static/app.js")
    static.close()
    assert_security_headers(static, "static")
    assert static.headers.get("Cache-Control") != "no-store"


@pytest.mark.parametrize("app_settings", [{}], ids=["default"])
def test_by_default_only_apiauth_itself_may_frame_the_ui(client):
    policy = client.get("/authenticators").headers["Content-Security-Policy"]
    assert policy.endswith("frame-ancestors 'self'")


@pytest.mark.parametrize("app_settings", [{"THEME_URL": "https://portal.example.com/theme/apiauth.css"}])
def test_a_theme_stylesheet_of_the_portal_is_linked_and_allowed(client):
    response = client.get("/authenticators")
    assert "style-src 'self' https://portal.example.com;" in response.headers["Content-Security-Policy"]
    assert '<link rel="stylesheet" href="https://portal.example.com/theme/apiauth.css">' in response.get_data(
        as_text=True
    )


def test_the_oauth_pages_send_no_referrer(client, make_authenticator):
    authenticator = make_authenticator("CRM", method="oauth2", grant_type="authorization_code")
    assert client.get("/oauth/callback?state=x").headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/authenticators").headers["Referrer-Policy"] == "same-origin"
    assert authenticator.id
