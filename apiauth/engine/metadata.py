"""Authorization server metadata (RFC 8414, OpenID Connect Discovery), found from the URLs."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from .config import AuthConfig
from .outbound import OutboundError, OutboundPolicy, send

WELL_KNOWN = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


def _candidates(config: AuthConfig) -> list[str]:
    """Return the metadata URLs to try: each well-known path at the server's origin."""
    parts = urlsplit(config.auth_url or config.access_token_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return []
    return [f"{parts.scheme}://{parts.netloc}{path}" for path in WELL_KNOWN]


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
