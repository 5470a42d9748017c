"""Key rotation: re-encrypt every stored secret under the first key of the ring, in batches.

It is safe to interrupt and to run again (it picks up what is still under an old key), and
to run while the app serves traffic: each value is swapped only if it is still the
ciphertext that was read, so a secret changed meanwhile is never overwritten.

Dropping a key that still seals values takes an explicit force: the values are cleared,
each authenticator that loses one gets an audit event and starts over as Not tested.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from flask import current_app
from sqlalchemy import Column, Select, delete, func, literal_column, or_, select, update

from .crypto import KeyRing
from .extensions import db
from .models import (
    SECRET_FIELDS,
    TOKEN_SECRETS,
    Authenticator,
    LoginAttempt,
    TokenState,
    secret_context,
    verifier_context,
)
from .services import NamedActor, clear_sealed


@dataclass(frozen=True)
class SealedColumn:
    """A column of ciphertexts, the query reading (pk, sealed, context parts), the context."""

    column: Column
    key: Column
    query: Select
    context: Callable


def sealed_columns():
    """Every column that holds ciphertexts, with how to name each value's context."""
    authenticators, tokens = Authenticator.__table__, TokenState.__table__
    logins = LoginAttempt.__table__
    found = []
    for field in SECRET_FIELDS:
        column = authenticators.c[f"{field}_encrypted"]
        query = select(authenticators.c.id.label("pk"), column.label("sealed"), authenticators.c.uid)
        found.append(SealedColumn(column, authenticators.c.id, query, lambda row, f=field: secret_context(row.uid, f)))
    for field in TOKEN_SECRETS:
        column = tokens.c[f"{field}_encrypted"]
        query = select(tokens.c.authenticator_id.label("pk"), column.label("sealed"), authenticators.c.uid).join(
            authenticators, authenticators.c.id == tokens.c.authenticator_id
        )
        found.append(SealedColumn(column, tokens.c.authenticator_id, query, lambda row, f=field: secret_context(row.uid, f)))
    column = logins.c.code_verifier_encrypted
    query = select(logins.c.id.label("pk"), column.label("sealed"), logins.c.state_hash)
    found.append(SealedColumn(column, logins.c.id, query, lambda row: verifier_context(row.state_hash)))
    return found


def _key_id(column):
    """SQL for the key id inside a ciphertext 'v1.<key id>.<payload>'.

    Literal positions, not bound parameters: PostgreSQL must see the GROUP BY expression
    as the selected one.
    """
    return func.substr(column, literal_column("4"), literal_column("8"))


def key_usage(only_tables=None):
    """Count the stored values under each key id (in only_tables, for a database not fully migrated)."""
    usage = Counter()
    for sealed in sealed_columns():
        if only_tables is not None and sealed.column.table.name not in only_tables:
            continue
        rows = db.session.execute(
            select(_key_id(sealed.column), func.count()).where(sealed.column.isnot(None)).group_by(_key_id(sealed.column))
        )
        usage.update(dict(rows.all()))
    return usage


def rotate(batch_size=500, progress=lambda moved: None):
    """Re-encrypt every value not under the primary key; return how many moved.

    Each column is walked once in key order, a batch per transaction: a value changed
    meanwhile is left as its writer made it, and is not read again.
    """
    ring = current_app.extensions["apiauth_keyring"]
    # Values under a key the ring lacks (APIAUTH_ALLOW_MISSING_KEYS) cannot be opened: they stay.
    old_ids = [key_id for key_id in ring.key_ids if key_id != ring.primary_id]
    moved = 0
    for sealed in sealed_columns():
        for rows in batches_under(sealed, old_ids, batch_size):
            moved += sum(_reseal(sealed, row, ring) for row in rows)
            db.session.commit()
            progress(moved)
    return moved


def batches_under(sealed, key_ids, batch_size):
    """Yield the rows of a column whose values are sealed under key_ids, a batch at a time, in key order."""
    after = None
    while True:
        query = sealed.query.where(_key_id(sealed.column).in_(key_ids))
        if after is not None:
            query = query.where(sealed.key > after)
        rows = db.session.execute(query.order_by(sealed.key).limit(batch_size)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].pk


def _reseal(sealed, row, ring):
    """Swap one value for its ciphertext under the primary key, unless it changed meanwhile."""
    context = sealed.context(row)
    return swap(sealed, row, ring.encrypt(ring.decrypt(row.sealed, context), context))


def swap(sealed, row, value):
    """Store value in place of the one read in row, unless it changed meanwhile; return 1 if swapped, else 0."""
    return db.session.execute(
        update(sealed.column.table)
        .where(sealed.key == row.pk, sealed.column == row.sealed)
        .values({sealed.column.name: value})
    ).rowcount


# Audit events and Modified By name the command line for what `keys drop --force` clears.
DROP_ACTOR = NamedActor("keys drop --force (command line)")


def drop(key_id):
    """Clear every value sealed under key_id; return how many values were cleared."""
    authenticators, tokens = Authenticator.__table__, TokenState.__table__
    cleared = key_usage().get(key_id, 0)
    sealed_by_key = [authenticators.c[f"{field}_encrypted"] for field in SECRET_FIELDS]
    tokens_by_key = [tokens.c[f"{field}_encrypted"] for field in TOKEN_SECRETS]
    token_owners = select(tokens.c.authenticator_id).where(or_(*(_key_id(c) == key_id for c in tokens_by_key)))
    touched = db.session.scalars(select(Authenticator).where(
        or_(*(_key_id(c) == key_id for c in sealed_by_key), Authenticator.id.in_(token_owners))
    )).all()
    lost_tokens = set(db.session.scalars(token_owners))
    for authenticator in touched:
        fields = [field for field in SECRET_FIELDS if _sealed_under(authenticator, field, key_id)]
        clear_sealed(authenticator, DROP_ACTOR, fields, tokens=authenticator.id in lost_tokens)
    logins = LoginAttempt.__table__
    db.session.execute(delete(logins).where(_key_id(logins.c.code_verifier_encrypted) == key_id))
    db.session.commit()
    return cleared


def _sealed_under(authenticator, field, key_id):
    sealed = getattr(authenticator, f"{field}_encrypted")
    return sealed is not None and KeyRing.key_id_of(sealed) == key_id
