"""Pytest plugin: a local third-party API and authenticators for the consumer tests.

Shared by tests/test_client.py (another process) and tests/test_inprocess.py (this process).
"""

import json

import httpx
import pytest
import requests
from werkzeug import Response

LIBRARIES = ["requests", "httpx"]


def call(library, method, url, auth, body=None):
    """Send a request with requests or httpx; return (status code, JSON body or None, statuses of earlier tries)."""
    if library == "requests":
        response = requests.request(method, url, auth=auth, data=body, timeout=10)
    else:
        with httpx.Client(timeout=10) as client:
            response = client.request(method, url, auth=auth, content=body)
    earlier = [earlier.status_code for earlier in response.history]
    return response.status_code, (response.json() if response.status_code == 200 else None), earlier


class ThirdPartyApi:
    """A third-party API at /data: 200 with what it saw when `accepts(request)` holds, else 401."""

    def __init__(self, server):
        self.server = server
        self.seen = []

    def accept(self, accepts):
        """Answer /data with `accepts` deciding; return its URL."""

        def answer(request):
            self.seen.append(request)
            if not accepts(request):
                return Response('{"error": "invalid_credentials"}', 401, content_type="application/json")
            body = {"query": request.args.to_dict(flat=False), "body": request.get_data(as_text=True)}
            return Response(json.dumps(body), 200, content_type="application/json")

        self.server.expect_request("/data").respond_with_handler(answer)
        return self.server.url_for("/data")


def bearer_token(request):
    """Return the bearer token a request carries, or ''."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme == "Bearer" else ""


def token_is_active(provider, token):
    """Ask the authorization server whether an access token is active, as a resource server would."""
    response = requests.post(
        provider.introspection_endpoint, data={"token": token}, auth=("basic-client", "basic-secret"), timeout=10
    )
    return response.json().get("active") is True


def revoke(provider, token):
    """Revoke an access token at the authorization server, as its owner or an admin might."""
    requests.post(
        provider.revocation_endpoint, data={"token": token}, auth=("basic-client", "basic-secret"), timeout=10
    ).raise_for_status()


@pytest.fixture
def third_party(httpserver):
    return ThirdPartyApi(httpserver)


@pytest.fixture
def api_key_header(make_authenticator):
    return make_authenticator("Reports", key="X-API-Key", add_to="header", secrets={"value": "key-123"})


@pytest.fixture
def api_key_query(make_authenticator):
    return make_authenticator("Maps", key="api_key", add_to="query", secrets={"value": "key-456"})


@pytest.fixture
def basic(make_authenticator):
    return make_authenticator("Ledger", method="basic", username="ledger-user", secrets={"password": "pa:ss wörd"})


@pytest.fixture
def oauth(make_authenticator, oidc_provider):
    return make_authenticator(
        "Payments", method="oauth2", grant_type="client_credentials", access_token_url=oidc_provider.token_endpoint,
        client_id="basic-client", client_authentication="basic_header", scope="api:read",
        secrets={"client_secret": "basic-secret"},
    )


@pytest.fixture
def not_connected(make_authenticator, oidc_provider):
    return make_authenticator(
        "Mailbox", method="oauth2", grant_type="authorization_code", auth_url=oidc_provider.authorization_endpoint,
        access_token_url=oidc_provider.token_endpoint, client_id="basic-client", scope="openid",
        secrets={"client_secret": "basic-secret"},
    )
