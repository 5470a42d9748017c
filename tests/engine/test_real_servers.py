"""Tokens from real authorization servers: oidc-provider (Node) and an authlib password server."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from apiauth.engine.config import AuthConfig
from apiauth.engine.login import start_login
from apiauth.engine.outbound import OutboundPolicy
from apiauth.engine.tokens import TokenError, ensure_token, exchange_code, fetch_token, needs_renewal
from tests.support.oidc import headless_authorize

CLIENTS = [("basic_client", "basic_header"), ("post_client", "body")]
POLICY = OutboundPolicy(allow_networks=["127.0.0.0/8"], connect_timeout=2, read_timeout=5)


def _discard(line):
    """Ignore a log line."""


def _client_credentials(provider, client, client_authentication, **fields):
    """Return a client-credentials configuration for a client registered on the provider."""
    defaults = {
        "method": "oauth2",
        "grant_type": "client_credentials",
        "access_token_url": provider.token_endpoint,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "client_authentication": client_authentication,
        "scope": "api:read",
    }
    return AuthConfig(**{**defaults, **fields})


@pytest.mark.oidc
@pytest.mark.parametrize("client_name, client_authentication", CLIENTS)
def test_client_credentials(oidc_provider, client_name, client_authentication):
    config = _client_credentials(oidc_provider, getattr(oidc_provider, client_name), client_authentication)
    before = oidc_provider.token_requests("client_credentials")
    tokens = fetch_token(config, POLICY, _discard)
    assert tokens.access_token
    assert tokens.token_type == "Bearer"
    assert tokens.scope == "api:read"
    assert tokens.expires_at == tokens.obtained_at + oidc_provider.client_credentials_ttl
    assert oidc_provider.token_requests("client_credentials") == before + 1


@pytest.mark.oidc
def test_a_valid_token_is_reused(oidc_provider):
    config = _client_credentials(oidc_provider, oidc_provider.basic_client, "basic_header")
    tokens = ensure_token(config, None, POLICY, _discard)
    before = oidc_provider.token_requests()
    log = []
    assert ensure_token(config, tokens, POLICY, log.append) is tokens
    assert oidc_provider.token_requests() == before
    assert log[0].startswith("token reused")


@pytest.mark.oidc
def test_a_token_is_renewed_when_it_expires(oidc_provider_factory):
    provider = oidc_provider_factory(client_credentials_ttl=2)
    config = _client_credentials(provider, provider.post_client, "body")
    first = ensure_token(config, None, POLICY, _discard)
    assert ensure_token(config, first, POLICY, _discard) is first
    while not needs_renewal(first, time.time()):
        time.sleep(0.05)
    second = ensure_token(config, first, POLICY, _discard)
    assert second.access_token != first.access_token
    assert second.obtained_at > first.obtained_at
    assert provider.token_requests("client_credentials") == 2


@pytest.mark.oidc
@pytest.mark.parametrize("client_name, client_authentication", CLIENTS)
def test_a_wrong_secret_is_an_invalid_client(oidc_provider, client_name, client_authentication):
    client = getattr(oidc_provider, client_name)
    config = _client_credentials(oidc_provider, client, client_authentication, client_secret="wrong-secret")
    log = []
    with pytest.raises(TokenError) as caught:
        fetch_token(config, POLICY, log.append)
    assert caught.value.reason == "invalid_client"
    assert "wrong-secret" not in " ".join(log)


@pytest.mark.oidc
def test_authorization_code_with_pkce_and_refresh(oidc_provider):
    client = oidc_provider.public_client
    config = AuthConfig(
        method="oauth2",
        grant_type="authorization_code_pkce",
        auth_url=oidc_provider.authorization_endpoint,
        access_token_url=oidc_provider.token_endpoint,
        client_id=client.client_id,
        client_authentication="none",
        scope="openid offline_access api:read",
        extra_auth_params=(("prompt", "consent"),),
    )
    login = start_login(config, oidc_provider.redirect_uri)
    callback = headless_authorize(login.url, oidc_provider.redirect_uri)
    query = parse_qs(urlsplit(callback).query)
    assert query["state"] == [login.state]
    tokens = exchange_code(config, query["code"][0], oidc_provider.redirect_uri, login.code_verifier, POLICY, _discard)
    assert tokens.access_token and tokens.refresh_token
    renewed = ensure_token(config, tokens, POLICY, _discard, now=tokens.expires_at)
    assert renewed.access_token != tokens.access_token
    assert renewed.refresh_token != tokens.refresh_token  # a public client's refresh token rotates
    with pytest.raises(TokenError) as caught:  # the rotated-out refresh token is rejected
        ensure_token(config, tokens, POLICY, _discard, now=tokens.expires_at)
    assert caught.value.reason == "need_login"


def _password_config(server, **fields):
    """Return a password-grant configuration for the password server."""
    defaults = {
        "method": "oauth2",
        "grant_type": "password",
        "access_token_url": server.token_endpoint,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "username": server.username,
        "password": server.password,
        "scope": "api:read",
    }
    return AuthConfig(**{**defaults, **fields})


@pytest.mark.parametrize("client_authentication", ["basic_header", "body"])
def test_password_grant(password_server, client_authentication):
    config = _password_config(password_server, client_authentication=client_authentication)
    tokens = fetch_token(config, POLICY, _discard)
    assert tokens.access_token and tokens.refresh_token
    assert tokens.expires_at == tokens.obtained_at + password_server.expires_in
    assert tokens.scope == "api:read"


def test_password_grant_refreshes_an_expiring_token(password_server):
    config = _password_config(password_server)
    tokens = fetch_token(config, POLICY, _discard)
    password_server.reset_stats()
    renewed = ensure_token(config, tokens, POLICY, _discard, now=tokens.expires_at)
    assert renewed.access_token != tokens.access_token
    assert renewed.refresh_token != tokens.refresh_token
    assert password_server.stats()["token_by_grant_type"] == {"refresh_token": 1}


def test_password_grant_with_a_wrong_password_is_an_invalid_grant(password_server):
    with pytest.raises(TokenError) as caught:
        fetch_token(_password_config(password_server, password="wrong"), POLICY, _discard)
    assert caught.value.reason == "invalid_grant"
