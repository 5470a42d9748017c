"""A tiny real OAuth 2.0 authorization server for the password grant, built with authlib.

oidc-provider does not offer the resource owner password credentials grant, so the tests
get it from here: authlib's AuthorizationServer with the password and refresh_token
grants, in-memory storage, served by werkzeug in a thread on a free port.

Fixture: ``password_server`` (session-scoped), a :class:`PasswordServer`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6749.grants import (
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from flask import Flask, request
from werkzeug.serving import make_server

CLIENT_ID = "password-client"
CLIENT_SECRET = "password-secret"
USERNAME = "alice"
PASSWORD = "pässwörd"
SCOPES = "api:read api:write"
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _same(a: str, b: str) -> bool:
    """Compare two strings in constant time, non-ASCII included."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


@dataclass
class _Client(ClientMixin):
    """The one registered confidential client."""

    client_id: str
    client_secret: str
    scope: str = SCOPES

    def get_client_id(self):
        """Return the client id."""
        return self.client_id

    def get_default_redirect_uri(self):
        """Return nothing: this server has no redirect-based flows."""
        return None

    def get_allowed_scope(self, scope):
        """Return the requested scopes this client may have (all of them if none asked)."""
        if not scope:
            return self.scope
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri):
        """Reject every redirect URI: there are no redirect-based flows."""
        return False

    def check_client_secret(self, client_secret):
        """Check the client secret in constant time."""
        return _same(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        """Accept client_secret_basic and client_secret_post."""
        return method in AUTH_METHODS

    def check_response_type(self, response_type):
        """Reject every response type: there is no authorization endpoint."""
        return False

    def check_grant_type(self, grant_type):
        """Allow the password and refresh_token grants."""
        return grant_type in ("password", "refresh_token")


@dataclass
class _Token(TokenMixin):
    """An issued token pair, looked up by its refresh token."""

    client_id: str
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    revoked: bool = False

    def check_client(self, client):
        """Return whether the token belongs to this client."""
        return self.client_id == client.get_client_id()

    def get_scope(self):
        """Return the token's scope."""
        return self.scope

    def get_expires_in(self):
        """Return the access token's lifetime in seconds."""
        return self.expires_in

    def is_expired(self):
        """Return whether the access token has expired."""
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        """Return whether the token was revoked."""
        return self.revoked

    def get_user(self):
        """Return the resource owner's username."""
        return self.user

    def get_client(self):
        """Return the client the token was issued to."""
        return _Client(self.client_id, "")


class _PasswordGrant(ResourceOwnerPasswordCredentialsGrant):
    """The password grant, answering invalid_grant for wrong user credentials."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_user(self, username, password):
        """Return the username if the password matches, else fail with invalid_grant."""
        if self.server.store.check_user(username, password):
            return username
        raise InvalidGrantError("Invalid username or password.")


class _RefreshGrant(RefreshTokenGrant):
    """The refresh_token grant; it rotates the refresh token on every use."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        """Return the live token with this refresh token, or None."""
        return self.server.store.find_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token):
        """Return the username the refresh token was issued for."""
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token):
        """Revoke the refresh token that was just used."""
        refresh_token.revoked = True


class PasswordServer:
    """A running password-grant authorization server with its test credentials and counters."""

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET
    username = USERNAME
    password = PASSWORD
    scopes = SCOPES

    def __init__(self, expires_in: int = 3600):
        """Build the app and bind a free port on 127.0.0.1 (call start() to serve)."""
        self.expires_in = expires_in
        self.users = {USERNAME: PASSWORD}
        self._client = _Client(CLIENT_ID, CLIENT_SECRET)
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.app = self._make_app()
        self._http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._http.server_port}"
        self.token_endpoint = f"{self.base_url}/token"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="password-server", daemon=True
        )

    def _make_app(self) -> Flask:
        """Create the Flask app with the authlib authorization server on POST /token."""
        app = Flask("password_server")
        server = AuthorizationServer(app, query_client=self._query_client, save_token=self._save_token)
        server.store = self
        server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(32),
                refresh_token_generator=lambda **_: secrets.token_urlsafe(32),
                expires_generator=lambda client, grant_type: self.expires_in,
            ),
        )
        server.register_grant(_PasswordGrant)
        server.register_grant(_RefreshGrant)

        @app.post("/token")
        def token():
            with self._lock:
                self._counts["token"] += 1
                self._counts["grant_type:" + request.form.get("grant_type", "unknown")] += 1
            return server.create_token_response()

        return app

    def _query_client(self, client_id):
        """Return the client with this id, or None."""
        return self._client if client_id == self._client.client_id else None

    def _save_token(self, token, oauth_request):
        """Store an issued token in memory."""
        record = _Token(
            client_id=oauth_request.client.get_client_id(),
            user=oauth_request.user,
            scope=token.get("scope", ""),
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_in=token.get("expires_in", 0),
        )
        if record.refresh_token:
            with self._lock:
                self._tokens[record.refresh_token] = record

    def check_user(self, username: str, password: str) -> bool:
        """Return whether the username and password match a known user."""
        known = self.users.get(username)
        return known is not None and _same(password, known)

    def find_refresh_token(self, refresh_token: str) -> _Token | None:
        """Return the unrevoked token record for a refresh token, or None."""
        with self._lock:
            record = self._tokens.get(refresh_token)
        return record if record and not record.revoked else None

    def stats(self) -> dict:
        """Return the request counters: {"token": N, "token_by_grant_type": {...}}."""
        with self._lock:
            by_grant = {
                key.split(":", 1)[1]: n for key, n in self._counts.items() if key.startswith("grant_type:")
            }
            return {"token": self._counts["token"], "token_by_grant_type": by_grant}

    @property
    def token_requests(self) -> int:
        """Return how many requests reached the token endpoint."""
        return self.stats()["token"]

    def reset_stats(self) -> None:
        """Set the request counters back to zero."""
        with self._lock:
            self._counts.clear()

    @contextmanager
    def token_lifetime(self, seconds: int):
        """Issue tokens with this expires_in inside the with-block, then restore the old value."""
        old, self.expires_in = self.expires_in, seconds
        try:
            yield self
        finally:
            self.expires_in = old

    def start(self) -> PasswordServer:
        """Serve requests in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="session")
def password_server():
    """Serve a password-grant authorization server for the whole test session."""
    server = PasswordServer().start()
    try:
        yield server
    finally:
        server.stop()
