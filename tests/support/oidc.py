"""Pytest plugin: a real oidc-provider authorization server (Node) for the test suite.

Fixtures:
- ``oidc_redirect_uris`` (session): callback URLs registered for every client; override it
  in a conftest (session scope) to register the app's own callback.
- ``oidc_provider_factory`` (session): ``start(access_token_ttl=..., ...)`` starts one more
  server, e.g. with 2-5 s tokens; all of them are stopped at the end of the session.
- ``oidc_provider`` (session): one server with default TTLs (60 s access tokens).

Helpers: ``headless_authorize()`` drives the dev login and consent pages with plain HTTP;
``make_pkce()`` returns an S256 verifier/challenge pair.

The server needs its npm packages: ``npm ci --prefix tests/oidc_provider``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode, urljoin

import pytest
import requests

SERVER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
SERVER_JS = SERVER_DIR / "server.js"
INSTALL_HINT = "run `npm ci --prefix tests/oidc_provider` (from the project root) first"
READY = re.compile(r"^oidc-provider ready at (http://\S+)$", re.MULTILINE)
DEFAULT_REDIRECT_URIS = ["http://127.0.0.1:5000/oauth/callback"]
START_TIMEOUT = 20.0


class OidcClient(NamedTuple):
    """A client registered on the test server."""

    client_id: str
    client_secret: str | None
    auth_method: str


BASIC_CLIENT = OidcClient("basic-client", "basic-secret", "client_secret_basic")
POST_CLIENT = OidcClient("post-client", "post-secret", "client_secret_post")
PUBLIC_CLIENT = OidcClient("public-client", None, "none")
CONFIDENTIAL_PKCE_CLIENT = OidcClient(
    "confidential-pkce-client", "confidential-pkce-secret", "client_secret_basic"
)


@dataclass
class OidcProvider:
    """A running oidc-provider: its endpoints, clients, TTLs and request counters."""

    issuer: str
    redirect_uris: list[str]
    access_token_ttl: int
    client_credentials_ttl: int
    refresh_token_ttl: int
    process: subprocess.Popen = field(repr=False)
    log_path: Path
    metadata: dict = field(default_factory=dict, repr=False)

    basic_client = BASIC_CLIENT
    post_client = POST_CLIENT
    public_client = PUBLIC_CLIENT
    confidential_pkce_client = CONFIDENTIAL_PKCE_CLIENT
    scopes = ("openid", "offline_access", "api:read", "api:write")

    @property
    def discovery_url(self) -> str:
        """Return the OpenID discovery document's URL."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        """Return the authorization endpoint."""
        return self.metadata["authorization_endpoint"]

    @property
    def token_endpoint(self) -> str:
        """Return the token endpoint."""
        return self.metadata["token_endpoint"]

    @property
    def revocation_endpoint(self) -> str:
        """Return the revocation endpoint."""
        return self.metadata["revocation_endpoint"]

    @property
    def introspection_endpoint(self) -> str:
        """Return the introspection endpoint."""
        return self.metadata["introspection_endpoint"]

    @property
    def redirect_uri(self) -> str:
        """Return the first registered callback URL."""
        return self.redirect_uris[0]

    def stats(self) -> dict:
        """Return the counters: token, token_by_grant_type, revocation, introspection, authorization."""
        response = requests.get(f"{self.issuer}/__stats", timeout=5)
        response.raise_for_status()
        return response.json()

    def reset_stats(self) -> None:
        """Set all request counters back to zero."""
        requests.post(f"{self.issuer}/__stats/reset", timeout=5).raise_for_status()

    def token_requests(self, grant_type: str | None = None) -> int:
        """Return how many requests reached the token endpoint (optionally of one grant type)."""
        stats = self.stats()
        return stats["token"] if grant_type is None else stats["token_by_grant_type"].get(grant_type, 0)

    def authorization_url(
        self,
        client: OidcClient,
        *,
        scope: str = "openid offline_access api:read",
        state: str | None = None,
        code_challenge: str | None = None,
        redirect_uri: str | None = None,
        prompt: str | None = "consent",
        **extra: str,
    ) -> str:
        """Build an authorization code request URL (prompt=consent so offline_access is kept)."""
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri or self.redirect_uri,
            "scope": scope,
            "state": state or secrets.token_urlsafe(16),
        }
        if prompt:
            params["prompt"] = prompt
        if code_challenge:
            params.update(code_challenge=code_challenge, code_challenge_method="S256")
        params.update(extra)
        return f"{self.authorization_endpoint}?{urlencode(params)}"

    def log(self) -> str:
        """Return what the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Stop the server process by its PID."""
        if self.process.stdin:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_oidc_provider(
    log_path: Path,
    *,
    redirect_uris: list[str] | None = None,
    access_token_ttl: int = 60,
    client_credentials_ttl: int = 60,
    refresh_token_ttl: int = 86400,
) -> OidcProvider:
    """Start `node tests/oidc_provider/server.js` on a free port and wait until discovery answers."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the oidc-provider test server but `node` is not on PATH")
    if not (SERVER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"the oidc-provider test server is not installed: {INSTALL_HINT}")

    redirect_uris = list(redirect_uris or DEFAULT_REDIRECT_URIS)
    env = {
        **os.environ,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "ACCESS_TOKEN_TTL": str(access_token_ttl),
        "CLIENT_CREDENTIALS_TTL": str(client_credentials_ttl),
        "REFRESH_TOKEN_TTL": str(refresh_token_ttl),
    }
    env.pop("PORT", None)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [node, str(SERVER_JS), "0", "--exit-on-stdin-close"],
            cwd=SERVER_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    provider = OidcProvider(
        issuer="",
        redirect_uris=redirect_uris,
        access_token_ttl=access_token_ttl,
        client_credentials_ttl=client_credentials_ttl,
        refresh_token_ttl=refresh_token_ttl,
        process=process,
        log_path=log_path,
    )
    try:
        provider.issuer = _wait_for_ready_line(provider)
        provider.metadata = _wait_for_discovery(provider)
    except BaseException:
        provider.stop()
        raise
    return provider


def _wait_for_ready_line(provider: OidcProvider) -> str:
    """Wait for the server's ready line and return the issuer it names."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = READY.search(provider.log())
        if match:
            return match.group(1)
        if provider.process.poll() is not None:
            pytest.fail(
                f"the oidc-provider test server exited with {provider.process.returncode} "
                f"(if packages are missing, {INSTALL_HINT}):\n{provider.log()}"
            )
        time.sleep(0.05)
    pytest.fail(f"the oidc-provider test server did not start in {START_TIMEOUT} s:\n{provider.log()}")


def _wait_for_discovery(provider: OidcProvider) -> dict:
    """Wait until the discovery document answers and return it."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            response = requests.get(provider.discovery_url, timeout=2)
            if response.status_code == 200:
                return response.json()
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{provider.discovery_url} did not answer:\n{provider.log()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def oidc_redirect_uris() -> list[str]:
    """Return the callback URLs registered for every client (override to use the app's own)."""
    return list(DEFAULT_REDIRECT_URIS)


@pytest.fixture(scope="session")
def oidc_provider_factory(tmp_path_factory, oidc_redirect_uris):
    """Return start(**options) that starts a new server (e.g. access_token_ttl=3); all stop at session end."""
    started: list[OidcProvider] = []

    def start(**options) -> OidcProvider:
        options.setdefault("redirect_uris", oidc_redirect_uris)
        log_path = tmp_path_factory.mktemp("oidc-provider") / "server.log"
        provider = start_oidc_provider(log_path, **options)
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()


@pytest.fixture(scope="session")
def oidc_provider(oidc_provider_factory) -> OidcProvider:
    """Return a session-wide oidc-provider with default TTLs."""
    return oidc_provider_factory()


def make_pkce() -> tuple[str, str]:
    """Return a new PKCE (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _FormParser(HTMLParser):
    """Collect the first form's action and its input fields."""

    def __init__(self):
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self._done:
            self.action, self._in_form = attrs.get("action") or "", True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def headless_authorize(
    authorization_url: str,
    redirect_uri: str,
    login: str = "alice",
    password: str = "x",
    max_steps: int = 20,
) -> str:
    """Log in and consent on the dev interaction pages; return the final redirect URL, not requested."""
    with requests.Session() as session:
        response = session.get(authorization_url, allow_redirects=False, timeout=10)
        for _ in range(max_steps):
            if response.is_redirect:
                location = urljoin(response.url, response.headers["Location"])
                if location.startswith(redirect_uri):
                    return location
                response = session.get(location, allow_redirects=False, timeout=10)
            elif response.status_code == 200 and "<form" in response.text:
                form = _FormParser()
                form.feed(response.text)
                data = dict(form.fields)
                if "login" in data:
                    data["login"] = login
                if "password" in data:
                    data["password"] = password
                action = urljoin(response.url, form.action or response.url)
                response = session.post(action, data=data, allow_redirects=False, timeout=10)
            else:
                raise AssertionError(
                    f"unexpected {response.status_code} from {response.url} during login:\n{response.text[:2000]}"
                )
        raise AssertionError(f"no redirect to {redirect_uri} after {max_steps} steps")
