"""Get, refresh and reuse OAuth 2.0 tokens with authlib, through the safe outbound layer.

Token requests never follow redirects. A 5xx or 429 answer is retried with backoff (a
Retry-After header is honoured when it fits in the remaining time budget; when it does
not, the request gives up at once rather than retry too early).

Token lifetimes: a missing or non-numeric `expires_in` means the expiry is unknown
(`expires_at` None: the token is used until the API rejects it); zero or negative means
the token is already expired (it serves the current call and is renewed on the next);
more than a year, or infinite, is cut to a year.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import requests
from authlib.integrations.requests_client import OAuth2Session

from .apply import client_basic_credentials
from .config import AuthConfig, TokenSet
from .outbound import OutboundError, OutboundPolicy, Retries, guard_session, translated_errors
from .redact import Redactor

Log = Callable[[str], None]

CLIENT_AUTH_METHODS = {"basic_header": "client_secret_basic", "body": "client_secret_post", "none": "none"}
RENEWAL_MARGIN = 60.0
MAX_LIFETIME = 365 * 24 * 3600.0
ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_DESCRIPTION = 300


class TokenError(Exception):
    """A token request failed; `reason` is the OAuth error code or a short code like `timeout`."""

    def __init__(self, reason: str, description: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.description = description


class _Transient(Exception):
    """A 5xx or 429 answer that may be retried; `error` is raised when retries run out."""

    def __init__(self, error: TokenError, status_code: int, retry_after: float | None):
        super().__init__(error.reason)
        self.error = error
        self.status_code = status_code
        self.retry_after = retry_after


def _encode_client_secret_basic(client, method, uri, headers, body):
    """Send the client id and secret in a Basic header, URL-encoded and UTF-8."""
    credentials = client_basic_credentials(client.client_id, client.client_secret or "")
    headers["Authorization"] = f"Basic {credentials}"
    return uri, headers, body


def _auth_method(config: AuthConfig) -> str:
    """Return authlib's name for the configured client authentication (basic header by default)."""
    return CLIENT_AUTH_METHODS.get(config.client_authentication, "client_secret_basic")


class _TokenEndpointSession(OAuth2Session):
    """An authlib session whose token responses are judged by this module."""

    def __init__(self, config: AuthConfig, policy: OutboundPolicy):
        super().__init__(
            client_id=config.client_id,
            client_secret=config.client_secret or None,
            token_endpoint_auth_method=_auth_method(config),
            scope=config.scope or None,
        )
        # authlib's own encoder neither URL-encodes nor accepts non-Latin-1 secrets.
        self.register_client_auth_method(("client_secret_basic", _encode_client_secret_basic))
        guard_session(self, policy)

    def request(self, method, url, *args, **kwargs):
        """Send without following redirects: a token endpoint must answer by itself."""
        return super().request(method, url, *args, **{**kwargs, "allow_redirects": False})

    def parse_response_token(self, resp):
        """Return the token fields of a successful answer, or raise the failure it shows."""
        self.token = _token_fields(resp)
        return self.token


def _json_object(content: bytes) -> dict | None:
    """Return content as a JSON object, or None when it is not one."""
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _text(value) -> str:
    """Return a token field as text, or "" when it is missing or not text."""
    return value if isinstance(value, str) else ""


def _oauth_error(payload: dict) -> TokenError:
    """Return the OAuth error that a token endpoint answered."""
    code = _text(payload["error"])
    description = _text(payload.get("error_description"))[:MAX_DESCRIPTION]
    return TokenError(code if ERROR_CODE.fullmatch(code) else "invalid_token_response", description)


def _retry_after(response: requests.Response) -> float | None:
    """Return the wait a Retry-After header asks for, in seconds, or None."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def _token_fields(response: requests.Response) -> dict:
    """Return the fields of a token answer, or raise TokenError (or _Transient) for a failure."""
    status = response.status_code
    payload = _json_object(response.content)
    if status == 429:
        error = TokenError("rate_limited")
    elif payload is not None and "error" in payload:
        error = _oauth_error(payload)
    elif status >= 300:
        error = TokenError(f"http_{status}")
    elif payload is None or not _text(payload.get("access_token")):
        error = TokenError("invalid_token_response")
    else:
        return _normalized(payload)
    if status == 429 or status >= 500:
        raise _Transient(error, status, _retry_after(response))
    raise error


def _normalized(payload: dict) -> dict:
    """Return the token fields that this module uses, with a sane lifetime."""
    fields = {
        "access_token": payload["access_token"],
        "token_type": _text(payload.get("token_type")) or "Bearer",
        "refresh_token": _text(payload.get("refresh_token")) or None,
        "scope": _text(payload.get("scope")),
        "expires_in": parse_expires_in(payload.get("expires_in")),
    }
    # authlib copes with neither None values nor odd lifetimes, so leave them out.
    return {name: value for name, value in fields.items() if value is not None}


def parse_expires_in(expires_in) -> float | None:
    """Return a token lifetime in seconds from an `expires_in` value (see the module docstring)."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float, str)):
        return None
    try:
        seconds = float(expires_in)
    except OverflowError:
        seconds = math.inf
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_LIFETIME)


def _tokenset(fields: dict, obtained_at: float, old_refresh_token: str | None = None) -> TokenSet:
    """Return the TokenSet for normalized token fields; a missing refresh token keeps the old one."""
    expires_in = fields.get("expires_in")
    return TokenSet(
        access_token=fields["access_token"],
        token_type=fields.get("token_type", "Bearer"),
        expires_at=None if expires_in is None else obtained_at + expires_in,
        refresh_token=fields.get("refresh_token") or old_refresh_token,
        scope=fields.get("scope", ""),
        obtained_at=obtained_at,
    )


def _with_retries(attempt: Callable[[], dict], retries: Retries, log: Log) -> dict:
    """Run attempt, retrying transient answers with backoff inside the time budget."""
    deadline = time.monotonic() + retries.budget
    for number in itertools.count(1):
        try:
            return attempt()
        except _Transient as transient:
            delay = transient.retry_after
            if delay is None:
                delay = retries.backoff * 2 ** (number - 1)
            if number >= retries.attempts or time.monotonic() + delay > deadline:
                raise transient.error from None
            log(f"token endpoint answered {transient.status_code}; retrying in {delay:g} s")
            time.sleep(delay)


def _attempt(session: _TokenEndpointSession, call: Callable[[_TokenEndpointSession], dict]) -> dict:
    """Make one token request, turning transport failures into TokenError."""
    try:
        with translated_errors():
            return call(session)
    except OutboundError as error:
        raise TokenError(error.reason) from None


def _extra_params(config: AuthConfig) -> str:
    """Return audience, resource and the extra token parameters as a form body."""
    return urlencode(config.extra_params("token"))


def _redacted(error: TokenError, config: AuthConfig) -> TokenError:
    """Return the error with any secret masked, since servers may echo what they got."""
    redactor = Redactor.for_config(config)
    return TokenError(redactor.redact(error.reason), redactor.redact(error.description))


def describe_error(error: TokenError) -> str:
    """Return the reason of a token error with its description, if any."""
    return f"{error.reason} ({error.description})" if error.description else error.reason


def describe_expiry(tokenset: TokenSet, now: float) -> str:
    """Return when a token expires, in words."""
    if tokenset.expires_at is None:
        return "expiry unknown"
    at = datetime.fromtimestamp(tokenset.expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"expires in {round(tokenset.expires_at - now)} s ({at})"


def _request_token(
    config: AuthConfig,
    policy: OutboundPolicy,
    log: Log,
    grant: str,
    call: Callable[[_TokenEndpointSession], dict],
    old_refresh_token: str | None = None,
) -> TokenSet:
    """Send a token request with retries and return the tokens it issued."""
    log(
        f"token request: POST {config.access_token_url} "
        f"(grant {grant}, client authentication {config.client_authentication})"
    )
    obtained_at = time.time()
    try:
        with _TokenEndpointSession(config, policy) as session:
            fields = _with_retries(lambda: _attempt(session, call), policy.retries, log)
    except TokenError as error:
        error = _redacted(error, config)
        log(f"token request failed: {describe_error(error)}")
        raise error from None
    tokenset = _tokenset(fields, obtained_at, old_refresh_token)
    log(f"token obtained: {describe_expiry(tokenset, time.time())}")
    return tokenset


def fetch_token(config: AuthConfig, policy: OutboundPolicy, log: Log) -> TokenSet:
    """Get a new token with the client credentials or password grant."""
    if config.needs_login:
        log("no usable token: an admin must log in")
        raise TokenError("need_login")
    is_password = config.grant_type == "password"
    owner = {"username": config.username, "password": config.password} if is_password else {}
    return _request_token(
        config,
        policy,
        log,
        config.grant_type,
        lambda session: session.fetch_token(
            config.access_token_url,
            grant_type=config.grant_type,
            body=_extra_params(config),
            **owner,
        ),
    )


def refresh_token(config: AuthConfig, tokenset: TokenSet, policy: OutboundPolicy, log: Log) -> TokenSet:
    """Get a new token with the refresh token; an answer without one keeps the old refresh token."""
    return _request_token(
        config,
        policy,
        log,
        "refresh_token",
        lambda session: session.refresh_token(
            config.access_token_url,
            refresh_token=tokenset.refresh_token,
            body=_extra_params(config),
        ),
        old_refresh_token=tokenset.refresh_token,
    )


def exchange_code(
    config: AuthConfig,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    policy: OutboundPolicy,
    log: Log,
) -> TokenSet:
    """Get tokens for the authorization code that a login returned."""
    if not code:
        raise TokenError("invalid_request", "the login returned no authorization code")
    return _request_token(
        config,
        policy,
        log,
        config.grant_type,
        lambda session: session.fetch_token(
            config.access_token_url,
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier or None,
            body=_extra_params(config),
        ),
    )


def needs_renewal(tokenset: TokenSet, now: float) -> bool:
    """Return whether a token expires within min(60 s, a tenth of its lifetime) of now."""
    if tokenset.expires_at is None:
        return False
    lifetime_seconds = max(tokenset.expires_at - tokenset.obtained_at, 0.0)
    return now >= tokenset.expires_at - min(RENEWAL_MARGIN, lifetime_seconds / 10)


def ensure_token(
    config: AuthConfig,
    current: TokenSet | None,
    policy: OutboundPolicy,
    log: Log,
    now: float | None = None,
) -> TokenSet:
    """Return a usable token: current while valid, else refreshed, else new."""
    now = time.time() if now is None else now
    if current is not None and not needs_renewal(current, now):
        log(f"token reused: {describe_expiry(current, now)}")
        return current
    if current is not None and current.refresh_token:
        try:
            return refresh_token(config, current, policy, log)
        except TokenError as error:
            if not config.needs_login:
                log("requesting a new token instead")
            elif error.reason == "invalid_grant":
                raise TokenError("need_login", "the refresh token was rejected") from None
            else:
                raise
    return fetch_token(config, policy, log)


def revoke_token(
    config: AuthConfig, endpoint: str, token: str, token_type_hint: str, policy: OutboundPolicy, log: Log
) -> bool:
    """Revoke a token at the server (RFC 7009); return whether the server accepted it."""
    log(f"revocation request: POST {endpoint} ({token_type_hint})")
    try:
        with _TokenEndpointSession(config, policy) as session, translated_errors():
            response = session.revoke_token(endpoint, token, token_type_hint=token_type_hint)
    except OutboundError as error:
        log(f"revocation failed: {error.reason}")
        return False
    log(f"revocation answered {response.status_code}")
    return response.status_code == 200
