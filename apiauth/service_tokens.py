"""Service tokens: bearer tokens with which other services use one domain's authenticators.

A token is shown once, when it is made; only its SHA-256 hash is stored, with its first
characters so that admins can tell tokens apart.
"""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import event, exists, func, or_, select, update

from .audit.events import record_event
from .extensions import db
from .models import (
    Authenticator,
    ServiceToken,
    find,
    service_token_authenticators,
    utcnow,
)
from .services import NamedActor

# Marks our tokens, so that secret scanners and people recognise a leaked one.
TOKEN_MARK = "apiauth_"
SHOWN_PREFIX_LENGTH = 16
# A busy service calls many times a second: its last use is written at most this often.
LAST_USED_RESOLUTION = timedelta(seconds=10)


def token_actor(token):
    """Return the actor that audit events name for changes made with a token."""
    return NamedActor(f"{token.name} (service token)")


def hash_token(plain):
    """Return the hex SHA-256 of a token, as it is stored."""
    return hashlib.sha256(plain.encode()).hexdigest()


def domain_tokens(domain_id):
    """Return a domain's service tokens: active ones first, newest first."""
    return db.session.scalars(
        select(ServiceToken)
        .where(ServiceToken.domain_id == domain_id)
        .order_by(ServiceToken.revoked_at.is_not(None), ServiceToken.created_at.desc(), ServiceToken.id.desc())
    ).all()


def get_domain_token(domain_id, token_id):
    """Return a service token of a domain, or None."""
    token = find(ServiceToken, token_id)
    return token if token is not None and token.domain_id == domain_id else None


def token_name_taken(domain_id, name):
    """Tell whether a domain has a service token of this name, ignoring case; revoked ones count."""
    query = select(ServiceToken.id).where(
        ServiceToken.domain_id == domain_id, func.lower(ServiceToken.name) == name.lower()
    )
    return db.session.scalar(query.limit(1)) is not None


def authenticators_named(domain_id, names):
    """Return (authenticators, names not found) for names in a domain, ignoring case."""
    keys = {name.casefold(): name for name in names}
    found = db.session.scalars(
        select(Authenticator).where(Authenticator.domain_id == domain_id, Authenticator.name_key.in_(keys))
    ).all()
    known = {authenticator.name_key for authenticator in found}
    return found, [name for key, name in keys.items() if key not in known]


def create_service_token(domain, name, scope, authenticators=(), created_by=""):
    """Create a service token; return it and its plain value, which is never stored."""
    if any(authenticator.domain_id != domain.id for authenticator in authenticators):
        raise ValueError("a service token reaches the authenticators of its own domain only")
    plain = TOKEN_MARK + secrets.token_urlsafe(32)
    token = ServiceToken(
        domain_id=domain.id,
        name=name,
        scope=scope,
        token_hash=hash_token(plain),
        token_prefix=plain[:SHOWN_PREFIX_LENGTH],
        created_by=created_by,
        authenticators=list(authenticators),
    )
    db.session.add(token)
    record_event("service token created", created_by, domain_id=domain.id, detail=f"{name} ({scope})")
    db.session.commit()
    return token, plain


def revoke_service_token(token, revoked_by=""):
    """Revoke a service token: from now on it answers 401."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record_event("service token revoked", revoked_by, domain_id=token.domain_id, detail=token.name)
        db.session.commit()


def token_for_bearer(plain):
    """Return the active service token a bearer value belongs to, or None."""
    if not plain or not plain.startswith(TOKEN_MARK):
        return None
    token = db.session.scalar(select(ServiceToken).where(ServiceToken.token_hash == hash_token(plain)))
    return token if token is not None and token.active else None


def token_use_due(last_used_at, now):
    """Tell whether a token's last use, stamped at last_used_at, should be stamped again at now."""
    return last_used_at is None or last_used_at <= now - LAST_USED_RESOLUTION


def record_token_use(token):
    """Stamp a token's last use, unless it was stamped within LAST_USED_RESOLUTION."""
    now = utcnow()
    if not token_use_due(token.last_used_at, now):
        return
    stale = now - LAST_USED_RESOLUTION
    # Conditional, so that concurrent calls of one token write once.
    stamped = db.session.execute(
        update(ServiceToken)
        .where(
            ServiceToken.id == token.id,
            or_(ServiceToken.last_used_at.is_(None), ServiceToken.last_used_at <= stale),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if stamped:
        record_event("service token used", token_actor(token).username, domain_id=token.domain_id)
    db.session.commit()


@event.listens_for(Authenticator, "before_delete")
def _revoke_tokens_left_without_authenticators(mapper, connection, authenticator):
    """Revoke the tokens limited to this authenticator alone.

    An empty list means "every authenticator of the domain": once the database cascade
    removed the last entry, such a token would reach them all.
    """
    link, other = service_token_authenticators, service_token_authenticators.alias()
    only_this = select(link.c.service_token_id).where(
        link.c.authenticator_id == authenticator.id,
        ~exists().where(
            other.c.service_token_id == link.c.service_token_id,
            other.c.authenticator_id != authenticator.id,
        ),
    )
    connection.execute(
        update(ServiceToken)
        .where(ServiceToken.id.in_(only_this), ServiceToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
