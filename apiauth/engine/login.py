"""Start an authorization-code login: the URL to send the admin to, with state and PKCE."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .config import AuthConfig

VERIFIER_LENGTH = 64  # RFC 7636 allows 43 to 128 characters


@dataclass(frozen=True)
class LoginStart:
    """Where to send the admin, and what to keep for the callback (state, PKCE verifier)."""

    url: str
    state: str
    code_verifier: str = ""


def _code_challenge(method: str, code_verifier: str) -> dict[str, str]:
    """Return the PKCE parameters of the authorization request; none without a verifier."""
    if not code_verifier:
        return {}
    if method == "plain":
        return {"code_challenge": code_verifier, "code_challenge_method": "plain"}
    return {"code_challenge": create_s256_code_challenge(code_verifier), "code_challenge_method": "S256"}


def start_login(config: AuthConfig, redirect_uri: str) -> LoginStart:
    """Return the authorization URL for a new login, with a fresh state and PKCE verifier."""
    uses_pkce = config.grant_type == "authorization_code_pkce"
    code_verifier = generate_token(VERIFIER_LENGTH) if uses_pkce else ""
    client = OAuth2Session(client_id=config.client_id, scope=config.scope or None, redirect_uri=redirect_uri)
    with client:
        challenge = _code_challenge(config.code_challenge_method, code_verifier)
        url, state = client.create_authorization_url(config.auth_url, **challenge)
    # Extras come last and never repeat a parameter the protocol already set (state above all).
    taken = set(parse_qs(urlsplit(url).query, keep_blank_values=True))
    extras = [(name, value) for name, value in config.extra_params("authorization") if name not in taken]
    return LoginStart(url=add_params_to_uri(url, extras), state=state, code_verifier=code_verifier)
