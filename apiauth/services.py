"""Changing authenticators: saving, duplicating, deleting, each recorded as an audit event."""

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm.exc import StaleDataError

from .audit.events import record_event
from .extensions import db
from .models import (
    SECRET_FIELDS,
    AuditEvent,
    Authenticator,
    Domain,
    TokenState,
    utcnow,
)
from .tokenstore import load_tokens

CONFIG_FIELDS = (
    "name", "description", "method", "key", "add_to", "username", "grant_type",
    "access_token_url", "auth_url", "client_id", "scope", "client_authentication",
    "code_challenge_method", "audience", "resource", "extra_params", "token_prefix", "conditions",
    "allowed_hosts",
)

# Changing any of these invalidates the last authentication result.
CREDENTIAL_FIELDS = set(CONFIG_FIELDS) - {"name", "description", "allowed_hosts"} | set(SECRET_FIELDS)
# ...and these the stored tokens too: they were issued for other credentials.
TOKEN_FIELDS = CREDENTIAL_FIELDS - {"conditions", "token_prefix", "key", "add_to"}


@dataclass(frozen=True)
class NamedActor:
    """Who changes authenticators without a user account (a service token, the command line),
    shaped as audit events and Modified By read a user: Modified By keeps the name only."""

    username: str
    id: None = None


class EditConflict(Exception):
    """The authenticator changed after the editor loaded it."""

    def __init__(self, events):
        super().__init__("the authenticator changed meanwhile")
        self.events = events


def events_since(authenticator, version):
    """Return the audit events that moved an authenticator past a version, oldest first."""
    return db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.authenticator_id == authenticator.id, AuditEvent.version > version)
        .order_by(AuditEvent.id)
    ).all()


def history(authenticator):
    """Return the audit events of an authenticator, newest first."""
    return db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.authenticator_id == authenticator.id)
        .order_by(AuditEvent.id.desc())
    ).all()


def _apply(authenticator, values, secrets):
    """Set configuration values and non-blank secrets; return the names of fields that changed."""
    changed = []
    for field in CONFIG_FIELDS:
        if field in values and getattr(authenticator, field) != values[field]:
            setattr(authenticator, field, values[field])
            changed.append(field)
    for field, plaintext in secrets.items():
        if plaintext and plaintext != authenticator.get_secret(field):
            authenticator.set_secret(field, plaintext)
            changed.append(field)
    authenticator.name_key = authenticator.name.casefold()
    return changed


def _reset_status(authenticator, tokens_kept=False):
    """Forget the last result: the credentials it was about changed.

    A Login grant whose tokens still fit its configuration stays Connected.
    """
    if authenticator.uses_login:
        authenticator.status = "connected" if tokens_kept else "need_login"
    else:
        authenticator.status = "not_tested"
    authenticator.status_reason = ""
    authenticator.status_updated_at = None


def create_authenticator(domain, actor, values, secrets, action="created"):
    """Create an authenticator in a domain."""
    authenticator = Authenticator(domain_id=domain.id, name=values["name"], method=values["method"])
    db.session.add(authenticator)
    changed = _apply(authenticator, values, secrets)
    _reset_status(authenticator)
    _stamp(authenticator, actor)
    db.session.flush()
    record_event(action, actor.username, authenticator=authenticator, changes=changed)
    db.session.commit()
    return authenticator


def update_authenticator(authenticator, actor, values, secrets, loaded_version):
    """Save an edit made on loaded_version, refusing it if someone saved in between."""
    if authenticator.version != loaded_version:
        raise EditConflict(events_since(authenticator, loaded_version))
    changed = _apply(authenticator, values, secrets)
    if not changed:
        return []
    if TOKEN_FIELDS.intersection(changed):
        db.session.execute(delete(TokenState).where(TokenState.authenticator_id == authenticator.id))
        _reset_status(authenticator)
    elif CREDENTIAL_FIELDS.intersection(changed):
        # Flush the edit only below, where a concurrent save is caught as a conflict.
        with db.session.no_autoflush:
            tokens_kept = load_tokens(authenticator) is not None
        _reset_status(authenticator, tokens_kept=tokens_kept)
    _stamp(authenticator, actor)
    try:
        db.session.flush()
    except StaleDataError:
        db.session.rollback()
        db.session.refresh(authenticator)
        raise EditConflict(events_since(authenticator, loaded_version)) from None
    record_event("updated", actor.username, authenticator=authenticator, changes=changed)
    db.session.commit()
    return changed


def duplicate_authenticator(source, actor):
    """Copy an authenticator, secrets included, under a free name."""
    values = {field: getattr(source, field) for field in CONFIG_FIELDS}
    values["name"] = _free_copy_name(source)
    secrets = {field: source.get_secret(field) for field in SECRET_FIELDS}
    domain = db.session.get(Domain, source.domain_id)
    return create_authenticator(domain, actor, values, secrets, action="duplicated")


def delete_authenticator(authenticator, actor):
    """Delete an authenticator, keeping its audit trail."""
    record_event("deleted", actor.username, authenticator=authenticator)
    db.session.delete(authenticator)
    db.session.commit()


def name_taken(domain_id, name, except_id=None):
    """Tell whether a name is used in a domain, ignoring case."""
    query = select(Authenticator.id).where(
        Authenticator.domain_id == domain_id, Authenticator.name_key == name.casefold()
    )
    if except_id is not None:
        query = query.where(Authenticator.id != except_id)
    return db.session.scalar(query.limit(1)) is not None


def _free_copy_name(source):
    """Return 'NAME (copy)', or 'NAME (copy N)', whichever is free in the domain."""
    base = f"{source.name[:90]} (copy"
    candidate, number = f"{base})", 2
    while name_taken(source.domain_id, candidate):
        candidate, number = f"{base} {number})", number + 1
    return candidate


def _stamp(authenticator, actor):
    """Record who changed the configuration, and when."""
    authenticator.modified_at = utcnow()
    authenticator.modified_by_id = actor.id
    authenticator.modified_by_name = actor.username


def clear_sealed(authenticator, actor, fields, tokens):
    """Forget secrets (and the tokens, if tokens) whose key is gone; the status starts over."""
    if tokens:
        db.session.execute(delete(TokenState).where(TokenState.authenticator_id == authenticator.id))
    for field in fields:
        setattr(authenticator, f"{field}_encrypted", None)
    _reset_status(authenticator)
    _stamp(authenticator, actor)
    db.session.flush()
    record_event("updated", actor.username, authenticator=authenticator,
                 changes=[*fields, *(["tokens"] if tokens else [])])
