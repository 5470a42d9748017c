"""The bearer-token gate of the API, and lookups scoped to the token's domain."""

import functools

from flask import g, request

from ..models import Authenticator, find
from ..service_tokens import record_token_use, token_for_bearer
from .errors import MESSAGES, ApiError

GATE_ATTRIBUTE = "service_token_gate"
# What each scope may do: `manage` includes `use`.
SCOPES_ALLOWED = {"use": {"use", "manage"}, "manage": {"manage"}}
# The largest id a database column holds; a larger one would fail in the driver.


def service_token_required(scope):
    """Let a view run only for an active service token holding `scope`."""

    def decorate(view):
        @functools.wraps(view)
        def gated(*args, **kwargs):
            token = _bearer_token()
            if token is None:
                raise ApiError(401, "unauthorized", MESSAGES[401])
            record_token_use(token)
            if token.scope not in SCOPES_ALLOWED[scope]:
                raise ApiError(403, "forbidden", f"This needs a service token with scope {scope}.")
            g.service_token = token
            return view(*args, **kwargs)

        setattr(gated, GATE_ATTRIBUTE, scope)
        return gated

    return decorate


def _bearer_token():
    """Return the active service token the request presents, or None."""
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer" or not credentials.token:
        return None
    return token_for_bearer(credentials.token)


def current_service_token():
    """Return the service token of this request."""
    return g.service_token


def get_authenticator(authenticator_id):
    """Return an authenticator the token reaches: 404 in another domain, 403 outside its list."""
    token = current_service_token()
    authenticator = find(Authenticator, authenticator_id)
    if authenticator is None or authenticator.domain_id != token.domain_id:
        raise ApiError(404, "not_found", "There is no authenticator with this id in this token's domain.")
    if not token.may_use(authenticator):
        raise ApiError(403, "forbidden", "This service token is limited to other authenticators.")
    return authenticator
