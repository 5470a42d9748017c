"""Authorization server metadata (RFC 8414, OpenID Connect Discovery), found from the URLs."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from .config import AuthConfig
from .outbound import OutboundError, OutboundPolicy, send

# How deep into the endpoint's path an issuer may sit (e.g. /realms/NAME in Keycloak).
MAX_ISSUER_DEPTH = 3


def _candidates(config: AuthConfig) -> list[str]:
    """Return the metadata URLs to try, for an issuer at the origin or under a path prefix.

    RFC 8414 puts the well-known part before the issuer's path; OpenID Connect after it.
    """
    parts = urlsplit(config.auth_url or config.access_token_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    origin = f"{parts.scheme}://{parts.netloc}"
    segments = [segment for segment in parts.path.split("/") if segment][:MAX_ISSUER_DEPTH]
    prefixes = [""] + ["/" + "/".join(segments[:depth]) for depth in range(len(segments), 0, -1)]
    urls = []
    for prefix in prefixes:
        urls += [f"{origin}/.well-known/oauth-authorization-server{prefix}", f"{origin}{prefix}/.well-known/openid-configuration"]
    return urls


def _describes(metadata: dict, config: AuthConfig) -> bool:
    """Tell whether metadata is about the endpoints this authenticator is configured with."""
    return bool(metadata.get("issuer")) and (
        metadata.get("authorization_endpoint") == config.auth_url
        or metadata.get("token_endpoint") == config.access_token_url
    )


def discover_metadata(config: AuthConfig, policy: OutboundPolicy) -> dict:
    """Return the server's metadata when it publishes some about these endpoints, else {}."""
    for url in _candidates(config):
        try:
            response = send(policy, "GET", url, headers={"Accept": "application/json"})
            metadata = json.loads(response.content) if response.status_code == 200 else None
        except (OutboundError, ValueError):
            continue
        if isinstance(metadata, dict) and _describes(metadata, config):
            return metadata
    return {}
