"""The real test authorization servers work, driven with plain requests."""

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.oidc import headless_authorize, make_pkce


def _token_request(provider, client, data):
    """Post to the token endpoint, authenticating as the client registered."""
    if client.auth_method == "client_secret_basic":
        return requests.post(
            provider.token_endpoint, data=data, auth=(client.client_id, client.client_secret), timeout=10
        )
    data = {**data, "client_id": client.client_id}
    if client.auth_method == "client_secret_post":
        data["client_secret"] = client.client_secret
    return requests.post(provider.token_endpoint, data=data, timeout=10)


def _jwt_claims(token):
    """Decode a JWT's payload without checking its signature."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _client_credentials(provider, client, **extra):
    """Ask for a client-credentials token."""
    return _token_request(provider, client, {"grant_type": "client_credentials", **extra})


def _authorize(provider, client, pkce=True):
    """Run the login and consent pages; return (code, code_verifier)."""
    verifier, challenge = make_pkce() if pkce else (None, None)
    url = provider.authorization_url(client, state="st-123", code_challenge=challenge)
    callback = headless_authorize(url, provider.redirect_uri)
    assert callback.startswith(provider.redirect_uri + "?")
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == ["st-123"]
    assert query["iss"] == [provider.issuer]
    return query["code"][0], verifier


def _exchange(provider, client, code, verifier):
    """Exchange an authorization code for tokens."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": provider.redirect_uri}
    if verifier:
        data["code_verifier"] = verifier
    return _token_request(provider, client, data)


@pytest.mark.oidc
@pytest.mark.parametrize("client_name", ["basic_client", "post_client"])
def test_client_credentials(oidc_provider, client_name):
    response = _client_credentials(oidc_provider, getattr(oidc_provider, client_name), scope="api:read")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"]
    assert body["expires_in"] == oidc_provider.client_credentials_ttl
    assert body["scope"] == "api:read"


@pytest.mark.oidc
def test_wrong_client_secret_is_invalid_client(oidc_provider):
    response = requests.post(
        oidc_provider.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(oidc_provider.basic_client.client_id, "wrong-secret"),
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.oidc
@pytest.mark.parametrize(
    ("client_name", "pkce"), [("confidential_pkce_client", True), ("post_client", False)]
)
def test_code_flow_confidential_client(oidc_provider, client_name, pkce):
    client = getattr(oidc_provider, client_name)
    code, verifier = _authorize(oidc_provider, client, pkce=pkce)
    response = _exchange(oidc_provider, client, code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["access_token"] and tokens["refresh_token"] and tokens["id_token"]
    assert tokens["expires_in"] == oidc_provider.access_token_ttl
    assert _jwt_claims(tokens["id_token"])["sub"] == "alice"

    refreshed = _token_request(
        oidc_provider, client, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["access_token"] != tokens["access_token"]


@pytest.mark.oidc
def test_code_flow_public_client_pkce_and_rotation(oidc_provider):
    client = oidc_provider.public_client
    code, verifier = _authorize(oidc_provider, client)
    tokens = _exchange(oidc_provider, client, code, verifier).json()
    assert tokens["access_token"] and tokens["refresh_token"]

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = _token_request(oidc_provider, client, refresh)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]

    reused = _token_request(oidc_provider, client, refresh)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


@pytest.mark.oidc
def test_public_client_without_pkce_is_refused(oidc_provider):
    url = oidc_provider.authorization_url(oidc_provider.public_client, state="s")
    callback = headless_authorize(url, oidc_provider.redirect_uri)
    assert parse_qs(urlsplit(callback).query)["error"] == ["invalid_request"]


@pytest.mark.oidc
def test_stats_count_requests(oidc_provider):
    oidc_provider.reset_stats()
    assert oidc_provider.token_requests() == 0
    token = _client_credentials(oidc_provider, oidc_provider.basic_client).json()["access_token"]
    _client_credentials(oidc_provider, oidc_provider.post_client)
    revoked = requests.post(
        oidc_provider.revocation_endpoint,
        data={"token": token},
        auth=(oidc_provider.basic_client.client_id, oidc_provider.basic_client.client_secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    stats = oidc_provider.stats()
    assert stats["token"] == 2
    assert stats["token_by_grant_type"] == {"client_credentials": 2}
    assert stats["revocation"] == 1
    assert oidc_provider.token_requests("client_credentials") == 2
    assert oidc_provider.token_requests("refresh_token") == 0


@pytest.mark.oidc
def test_factory_starts_short_lived_provider(oidc_provider_factory, oidc_provider):
    short = oidc_provider_factory(access_token_ttl=3, client_credentials_ttl=2)
    assert short.issuer != oidc_provider.issuer
    body = _client_credentials(short, short.basic_client).json()
    assert body["expires_in"] == 2


@pytest.mark.parametrize("auth", ["client_secret_basic", "client_secret_post"])
def test_password_grant_and_refresh(password_server, auth):
    def post(data):
        if auth == "client_secret_basic":
            return requests.post(
                password_server.token_endpoint,
                data=data,
                auth=(password_server.client_id, password_server.client_secret),
                timeout=10,
            )
        data = {**data, "client_id": password_server.client_id, "client_secret": password_server.client_secret}
        return requests.post(password_server.token_endpoint, data=data, timeout=10)

    password_server.reset_stats()
    with password_server.token_lifetime(5):
        response = post(
            {"grant_type": "password", "username": password_server.username, "password": password_server.password}
        )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["access_token"] and tokens["refresh_token"]
    assert tokens["expires_in"] == 5

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = post(refresh)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    assert post(refresh).json()["error"] == "invalid_grant"
    assert password_server.stats() == {
        "token": 3,
        "token_by_grant_type": {"password": 1, "refresh_token": 2},
    }


def test_password_grant_errors(password_server):
    wrong_password = requests.post(
        password_server.token_endpoint,
        data={"grant_type": "password", "username": password_server.username, "password": "passwörd"},
        auth=(password_server.client_id, password_server.client_secret),
        timeout=10,
    )
    assert wrong_password.status_code == 400
    assert wrong_password.json()["error"] == "invalid_grant"

    wrong_secret = requests.post(
        password_server.token_endpoint,
        data={"grant_type": "password", "username": password_server.username, "password": password_server.password},
        auth=(password_server.client_id, "wrong-secret"),
        timeout=10,
    )
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
