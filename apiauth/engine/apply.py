"""Put an authenticator's credentials on an outgoing request."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_plus, urlencode, urlsplit, urlunsplit

from .config import AuthConfig, TokenSet


@dataclass(frozen=True)
class Credentials:
    """The headers and query parameters that authenticate a request."""

    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def basic_credentials(username: str, password: str) -> str:
    """Return the base64 of the UTF-8 "user:password" pair, as Basic authentication sends it."""
    return base64.b64encode(f"{username}:{password}".encode("utf-8")).decode("ascii")


def client_basic_credentials(client_id: str, client_secret: str) -> str:
    """Return Basic credentials for an OAuth client, URL-encoded first as RFC 6749 2.3.1 says."""
    return basic_credentials(quote(client_id, safe=""), quote(client_secret, safe=""))


def credentials_for(config: AuthConfig, tokenset: TokenSet | None = None) -> Credentials:
    """Return the credentials an authenticator adds to a request; OAuth needs a tokenset."""
    if config.method == "api_key":
        target = "query" if config.add_to == "query" else "headers"
        return Credentials(**{target: {config.key: config.value}})
    if config.method == "basic":
        pair = basic_credentials(config.username, config.password)
        return Credentials(headers={"Authorization": f"Basic {pair}"})
    if config.method == "oauth2":
        if tokenset is None:
            raise ValueError("OAuth 2.0 credentials need a token")
        value = " ".join(part for part in (config.token_prefix.strip(), tokenset.access_token) if part)
        return Credentials(headers={"Authorization": value})
    raise ValueError(f"unknown authentication method: {config.method}")


def with_query_parameter(url: str, name: str, value: str) -> str:
    """Return url with the parameter set to value, replacing any of the same name."""
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[0]) != name
    ]
    query = "&".join([*kept, urlencode({name: value})])
    return urlunsplit(parts._replace(query=query))


def apply_credentials(
    config: AuthConfig,
    tokenset: TokenSet | None,
    url: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[str, dict[str, str]]:
    """Return the url and headers of a request with the authenticator's credentials on it."""
    credentials = credentials_for(config, tokenset)
    names = {name.lower() for name in credentials.headers}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    merged = {name: value for name, value in pairs if name.lower() not in names}
    merged.update(credentials.headers)
    for name, value in credentials.query.items():
        url = with_query_parameter(url, name, value)
    return url, merged
