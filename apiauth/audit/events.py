"""Recording audit events: one function for every kind, never a secret in them."""

from flask import has_request_context, request

from ..extensions import db
from ..models import AuditEvent

# Every action an event may name, as the audit page offers them to filter by.
ACTIONS = (
    "created", "updated", "duplicated", "deleted",
    "login started", "logged in", "login failed", "disconnected", "token renewal failed",
    "service token created", "service token revoked", "service token used",
    "signed in", "sign-in failed", "signed out",
    "keys rotated",
)
# The actor of events that come from the command line, and of those apiauth causes itself.
COMMAND_LINE = "command line"
APIAUTH = "apiauth"


def record_event(action, actor, *, authenticator=None, domain_id=None, changes=(), detail=""):
    """Add an audit event to the session; the caller commits.

    An event about an authenticator belongs to its domain; one with neither an authenticator
    nor a domain_id belongs to no one domain and shows on every domain's page. The detail of
    an authenticator's event comes from outside (a provider's error code): its secrets and
    tokens are masked in it.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if authenticator is not None:
        domain_id = authenticator.domain_id
        detail = _redacted(authenticator, detail) if detail else ""
    db.session.add(
        AuditEvent(
            domain_id=domain_id,
            authenticator_id=authenticator.id if authenticator is not None else None,
            authenticator_name=authenticator.name if authenticator is not None else "",
            actor=actor,
            action=action,
            changes=list(changes),
            version=authenticator.version if authenticator is not None else None,
            detail=detail[:300],
            address=(request.remote_addr or "") if has_request_context() else "",
        )
    )


def _redacted(authenticator, text):
    """Mask an authenticator's secrets and stored tokens in text."""
    # Imported here: authentication (through tokenstore) records events itself.
    from ..authentication import redact_secrets

    return redact_secrets(authenticator, text)
