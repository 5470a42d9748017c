"""Login for authorization-code grants against a real oidc-provider, and every refused callback."""

import logging
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from apiauth.extensions import db
from apiauth.models import Authenticator, LoginAttempt, TokenState
from tests.support.oidc import headless_authorize

from .conftest import TEST_CLIENT_CALLBACK, sign_in

pytestmark = pytest.mark.oidc

CLIENTS = {
    "authorization_code": ("basic-client", "basic-secret", "basic_header"),
    "authorization_code_pkce": ("public-client", None, "none"),
}


@pytest.fixture
def login_authenticator(make_authenticator, oidc_provider):
    """Make an authorization-code authenticator pointing at an oidc-provider."""

    def make(grant="authorization_code", provider=None, name="CRM", client=None, **fields):
        provider = provider or oidc_provider
        client_id, secret, client_auth = client or CLIENTS[grant]
        return make_authenticator(
            name, method="oauth2", grant_type=grant, status="need_login",
            auth_url=provider.authorization_endpoint, access_token_url=provider.token_endpoint,
            client_id=client_id, client_authentication=client_auth, scope="openid offline_access api:read",
            extra_params=[{"target": "authorization", "name": "prompt", "value": "consent"}],
            secrets={"client_secret": secret} if secret else {}, **fields,
        )

    return make


def start(client, authenticator, popup=False):
    """Click Login: return the provider URL apiauth sends the user to."""
    response = client.get(f"/oauth/login/{authenticator.id}" + ("?popup=1" if popup else ""))
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def come_back(client, callback_url):
    """Follow the provider's redirect back to apiauth's callback."""
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


def log_in(client, authenticator, popup=False):
    return come_back(client, headless_authorize(start(client, authenticator, popup), TEST_CLIENT_CALLBACK))


def fresh(authenticator):
    db.session.expire_all()
    return db.session.get(Authenticator, authenticator.id)


def test_a_new_authorization_code_authenticator_needs_login_and_shows_the_button(client, login_authenticator):
    authenticator = login_authenticator()
    page = client.get("/authenticators").get_data(as_text=True)
    assert "Need to Login" in page
    assert f'href="/oauth/login/{authenticator.id}" data-login-popup>Login</a>' in page
    assert "data-login-popup>Login</a>" in client.get(f"/authenticators/{authenticator.id}/edit").get_data(as_text=True)


@pytest.mark.parametrize("grant", ["authorization_code", "authorization_code_pkce"])
def test_login_connects_and_stores_the_tokens_encrypted(client, login_authenticator, oidc_provider, grant):
    authenticator = login_authenticator(grant)
    provider_url = start(client, authenticator)
    query = parse_qs(urlsplit(provider_url).query)
    assert query["redirect_uri"] == [TEST_CLIENT_CALLBACK]
    assert query["prompt"] == ["consent"]
    if grant == "authorization_code_pkce":
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    else:
        assert "code_challenge" not in query

    callback = headless_authorize(provider_url, TEST_CLIENT_CALLBACK)
    response = come_back(client, callback)

    assert response.status_code == 303 and response.headers["Location"] == "/authenticators"
    assert "code=" not in response.headers["Location"]
    assert "“CRM” is connected." in client.get("/authenticators").get_data(as_text=True)
    assert fresh(authenticator).status == "connected"
    state = db.session.get(TokenState, authenticator.id)
    assert state.access_token_encrypted.startswith("v1.") and state.refresh_token_encrypted.startswith("v1.")


def test_a_confidential_client_with_pkce_logs_in(client, login_authenticator):
    authenticator = login_authenticator(
        "authorization_code_pkce", client=("confidential-pkce-client", "confidential-pkce-secret", "basic_header"))
    log_in(client, authenticator)
    assert fresh(authenticator).status == "connected"


def test_plain_pkce_is_used_only_when_configured(client, login_authenticator):
    authenticator = login_authenticator("authorization_code_pkce", code_challenge_method="plain")
    query = parse_qs(urlsplit(start(client, authenticator)).query)
    assert query["code_challenge_method"] == ["plain"]


def test_each_attempt_gets_a_fresh_state_and_verifier(client, login_authenticator):
    authenticator = login_authenticator("authorization_code_pkce")
    first, second = (parse_qs(urlsplit(start(client, authenticator)).query) for _ in range(2))
    assert first["state"] != second["state"]
    assert first["code_challenge"] != second["code_challenge"]


def test_the_popup_callback_page_reports_and_sends_no_referrer(client, login_authenticator):
    authenticator = login_authenticator()
    response = log_in(client, authenticator, popup=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'id="login-result" data-authenticator-id="{authenticator.id}" data-succeeded="true"' in page
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_provider_refusing_shows_the_reason_escaped_and_sets_failed(client, login_authenticator, oidc_provider):
    authenticator = login_authenticator()
    state = parse_qs(urlsplit(start(client, authenticator, popup=True)).query)["state"][0]
    query = urlencode({"error": "access_denied", "error_description": "<script>alert(1)</script> said no",
                       "state": state, "iss": oidc_provider.issuer})
    page = client.get(f"/oauth/callback?{query}").get_data(as_text=True)
    assert '<code class="reason">access_denied</code>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; said no" in page and "<script>alert(1)" not in page
    assert (fresh(authenticator).status, fresh(authenticator).status_reason) == ("failed", "access_denied")


def test_an_odd_error_code_is_not_taken_as_a_reason(client, login_authenticator, oidc_provider):
    authenticator = login_authenticator()
    state = parse_qs(urlsplit(start(client, authenticator)).query)["state"][0]
    client.get("/oauth/callback?" + urlencode({"error": "<b>bad</b> code", "state": state, "iss": oidc_provider.issuer}))
    assert fresh(authenticator).status_reason == "login_error"


class TestRefusedCallbacks:
    """Each refusal happens before any token request, and changes nothing."""

    def assert_refused(self, response, message, authenticator, provider, tokens_before):
        page = response.get_data(as_text=True)
        assert response.status_code == 400, page
        assert "Login refused" in page and message in page
        assert fresh(authenticator).status == "need_login"
        assert provider.token_requests() == tokens_before

    def test_missing_state(self, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        before = oidc_provider.token_requests()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        parts = urlsplit(callback)
        query = {k: v for k, v in parse_qs(parts.query).items() if k != "state"}
        response = client.get("/oauth/callback?" + urlencode(query, doseq=True))
        self.assert_refused(response, "carries no state", authenticator, oidc_provider, before)

    def test_unknown_state(self, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        before = oidc_provider.token_requests()
        response = client.get("/oauth/callback?code=abc&state=forged")
        self.assert_refused(response, "This Login is unknown", authenticator, oidc_provider, before)

    def test_replayed_state(self, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        come_back(client, callback)
        assert fresh(authenticator).status == "connected"
        before = oidc_provider.token_requests()
        response = come_back(client, callback)
        page = response.get_data(as_text=True)
        assert response.status_code == 400 and "already completed" in page
        assert oidc_provider.token_requests() == before

    def test_expired_state(self, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        db.session.execute(db.update(LoginAttempt).values(expires_at=LoginAttempt.created_at))
        db.session.commit()
        before = oidc_provider.token_requests()
        self.assert_refused(come_back(client, callback), "expired", authenticator, oidc_provider, before)

    def test_state_of_another_user(self, app, client, login_authenticator, oidc_provider, make_user, domain):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        other = sign_in(app.test_client(), make_user("bob", {domain: True}).username)
        before = oidc_provider.token_requests()
        self.assert_refused(come_back(other, callback), "another user", authenticator, oidc_provider, before)

    def test_state_from_another_session_of_the_same_user(self, app, client, login_authenticator, oidc_provider, admin):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        second_session = sign_in(app.test_client(), admin.username)
        before = oidc_provider.token_requests()
        self.assert_refused(come_back(second_session, callback), "another session", authenticator, oidc_provider, before)

    def test_signed_out_user(self, app, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        client.post("/logout", data={})
        before = oidc_provider.token_requests()
        response = come_back(client, callback)
        self.assert_refused(response, "not signed in", authenticator, oidc_provider, before)

    def test_wrong_issuer(self, client, login_authenticator, oidc_provider):
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        parts = urlsplit(callback)
        query = {**{k: v[0] for k, v in parse_qs(parts.query).items()}, "iss": "https://evil.example"}
        before = oidc_provider.token_requests()
        response = client.get("/oauth/callback?" + urlencode(query))
        self.assert_refused(response, "another issuer", authenticator, oidc_provider, before)

    def test_missing_issuer_when_the_metadata_promises_one(self, client, login_authenticator, oidc_provider):
        assert oidc_provider.metadata.get("authorization_response_iss_parameter_supported") is True
        authenticator = login_authenticator()
        callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items() if k != "iss"}
        before = oidc_provider.token_requests()
        response = client.get("/oauth/callback?" + urlencode(query))
        self.assert_refused(response, "lacks the issuer", authenticator, oidc_provider, before)


def test_only_a_domain_manager_can_start_a_login(app, login_authenticator, make_user, domain):
    authenticator = login_authenticator()
    viewer = sign_in(app.test_client(), make_user("viewer", {domain: False}).username)
    assert viewer.get(f"/oauth/login/{authenticator.id}").status_code == 403


def test_login_is_refused_for_grants_without_login(client, make_authenticator):
    authenticator = make_authenticator("Key", secrets={"value": "v"})
    assert client.get(f"/oauth/login/{authenticator.id}").status_code == 400


def test_no_code_or_token_reaches_the_logs(client, login_authenticator, caplog):
    caplog.set_level(logging.DEBUG)
    authenticator = login_authenticator()
    callback = headless_authorize(start(client, authenticator), TEST_CLIENT_CALLBACK)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    come_back(client, callback)
    assert code not in caplog.text
    from apiauth.tokenstore import load_tokens

    tokens = load_tokens(fresh(authenticator))
    assert tokens.access_token not in caplog.text and tokens.refresh_token not in caplog.text


def run_test(client, authenticator):
    return client.post(f"/authenticators/{authenticator.id}/test",
                       data={"http_method": "GET", "url": "", "origin": "pane"}, headers={"HX-Request": "true"})


def test_a_connected_authenticator_refreshes_its_token_at_expiry(client, login_authenticator, oidc_provider_factory):
    provider = oidc_provider_factory(access_token_ttl=2)
    authenticator = login_authenticator(provider=provider)
    log_in(client, authenticator)
    from apiauth.tokenstore import load_tokens

    first = load_tokens(fresh(authenticator))
    time.sleep(2.1)
    page = run_test(client, authenticator).get_data(as_text=True)
    assert "token request: POST" in page and "grant refresh_token" in page
    second = load_tokens(fresh(authenticator))
    assert second.access_token != first.access_token
    assert fresh(authenticator).status == "connected"
    assert provider.token_requests("refresh_token") == 1


def test_a_rotated_refresh_token_replaces_the_old_one(client, login_authenticator, oidc_provider_factory):
    provider = oidc_provider_factory(access_token_ttl=2)
    authenticator = login_authenticator("authorization_code_pkce", provider=provider)
    log_in(client, authenticator)
    from apiauth.tokenstore import load_tokens

    first = load_tokens(fresh(authenticator))
    time.sleep(2.1)
    run_test(client, authenticator)
    second = load_tokens(fresh(authenticator))
    assert second.refresh_token != first.refresh_token
    time.sleep(2.1)
    run_test(client, authenticator)
    assert fresh(authenticator).status == "connected"


def test_a_rejected_refresh_token_sets_need_to_login(client, login_authenticator, oidc_provider_factory):
    provider = oidc_provider_factory(access_token_ttl=2)
    authenticator = login_authenticator(provider=provider)
    log_in(client, authenticator)
    from apiauth.tokenstore import load_tokens
    import requests

    refresh = load_tokens(fresh(authenticator)).refresh_token
    requests.post(provider.revocation_endpoint, data={"token": refresh, "token_type_hint": "refresh_token"},
                  auth=("basic-client", "basic-secret"), timeout=5).raise_for_status()
    time.sleep(2.1)
    page = run_test(client, authenticator).get_data(as_text=True)
    assert "Need to Login" in page
    assert fresh(authenticator).status == "need_login"
    assert db.session.get(TokenState, authenticator.id).access_token_encrypted is None


def test_disconnect_revokes_at_the_provider_and_needs_login(client, login_authenticator, oidc_provider):
    authenticator = login_authenticator()
    log_in(client, authenticator)
    edit = client.get(f"/authenticators/{authenticator.id}/edit").get_data(as_text=True)
    assert "Disconnect" in edit
    oidc_provider.reset_stats()
    response = client.post(f"/oauth/disconnect/{authenticator.id}", data={"next": "/authenticators"})
    assert response.status_code == 303
    assert oidc_provider.stats()["revocation"] == 2
    assert fresh(authenticator).status == "need_login"
    assert db.session.get(TokenState, authenticator.id).access_token_encrypted is None
    assert "is disconnected" in client.get("/authenticators").get_data(as_text=True)


def test_editing_the_client_id_of_a_connected_authenticator_needs_login_again(client, login_authenticator):
    authenticator = login_authenticator()
    log_in(client, authenticator)
    authenticator = fresh(authenticator)
    form = {"method": "oauth2", "name": "CRM", "grant_type": "authorization_code", "auth_url": authenticator.auth_url,
            "access_token_url": authenticator.access_token_url, "client_id": "post-client",
            "client_authentication": "basic_header", "scope": authenticator.scope, "token_prefix": "Bearer",
            "version": str(authenticator.version)}
    assert client.post(f"/authenticators/{authenticator.id}", data=form).status_code == 302
    assert fresh(authenticator).status == "need_login"
    assert db.session.get(TokenState, authenticator.id) is None


def test_renaming_a_connected_authenticator_keeps_it_connected(client, login_authenticator):
    authenticator = login_authenticator()
    log_in(client, authenticator)
    authenticator = fresh(authenticator)
    form = {"method": "oauth2", "name": "CRM renamed", "grant_type": "authorization_code", "auth_url": authenticator.auth_url,
            "access_token_url": authenticator.access_token_url, "client_id": authenticator.client_id,
            "client_authentication": "basic_header", "scope": authenticator.scope, "token_prefix": "Bearer",
            "extra_params-0-target": "authorization", "extra_params-0-name": "prompt", "extra_params-0-value": "consent",
            "version": str(authenticator.version)}
    assert client.post(f"/authenticators/{authenticator.id}", data=form).status_code == 302
    assert fresh(authenticator).status == "connected"
