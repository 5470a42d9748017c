"""OAuth 2.0 Login for authorization-code grants."""

from flask import current_app, request


def callback_url():
    """Return the Callback URL to register at the provider, from APIAUTH_PUBLIC_URL when set."""
    base = current_app.config["PUBLIC_URL"] or (request.host_url.rstrip("/") + request.script_root)
    return f"{base}/oauth/callback"
