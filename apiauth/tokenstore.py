"""Stored OAuth tokens, and renewing them: one token request per expiry, across workers.

Whoever finds the tokens due for renewal claims a lease on their row with a conditional
UPDATE and commits it before the token request, which runs without holding a database
connection. Everyone else waits and reads what the holder stores. Every write of tokens
bumps a generation number and only lands on the generation it started from, so a holder
whose lease expired (and was taken over) cannot overwrite newer tokens. A failed renewal is
recorded on the row, so that those who waited (or come a moment later) share its failure
instead of retrying.
"""

import secrets
import time

from flask import current_app
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from .audit.events import APIAUTH, record_event
from .engine.config import TokenSet
from .engine.tokens import TokenError, ensure_token, needs_renewal
from .extensions import db
from .models import TokenState, secret_context

FIRST_WAIT = 0.02
LONGEST_WAIT = 0.25


def _ring():
    return current_app.extensions["apiauth_keyring"]


def _read_state(authenticator):
    """Read the token row as the database has it now, or None."""
    return db.session.get(TokenState, authenticator.id, populate_existing=True)


def _decrypt(authenticator, state):
    """Return the tokens a row holds, or None."""
    if state is None or state.access_token_encrypted is None:
        return None
    ring, refresh = _ring(), state.refresh_token_encrypted
    return TokenSet(
        access_token=ring.decrypt(state.access_token_encrypted, secret_context(authenticator.uid, "access_token")),
        refresh_token=ring.decrypt(refresh, secret_context(authenticator.uid, "refresh_token")) if refresh else None,
        token_type=state.token_type,
        scope=state.scope,
        expires_at=state.expires_at,
        obtained_at=state.obtained_at or 0.0,
    )


def load_tokens(authenticator):
    """Return the stored tokens of an authenticator, or None."""
    return _decrypt(authenticator, _read_state(authenticator))


def token_generation(authenticator):
    """Return the generation of the tokens last read or written (0 before any)."""
    state = db.session.get(TokenState, authenticator.id)
    return state.generation if state else 0


def _ensure_row(authenticator):
    """Create the authenticator's token row if it has none, racing other workers safely."""
    if db.session.get(TokenState, authenticator.id) is not None:
        return
    db.session.add(TokenState(authenticator_id=authenticator.id))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def store_tokens(authenticator, tokenset, expected_generation=None):
    """Store tokens (None forgets them), releasing any lease; return whether the write landed.

    With expected_generation, the write lands only if nobody stored newer tokens meanwhile.
    The caller commits.
    """
    _ensure_row(authenticator)
    seal = lambda value, field: _ring().encrypt(value, secret_context(authenticator.uid, field)) if value else None  # noqa: E731
    statement = (
        update(TokenState)
        .where(TokenState.authenticator_id == authenticator.id)
        .values(
            access_token_encrypted=seal(tokenset and tokenset.access_token, "access_token"),
            refresh_token_encrypted=seal(tokenset and tokenset.refresh_token, "refresh_token"),
            token_type=(tokenset and tokenset.token_type) or "Bearer",
            scope=(tokenset and tokenset.scope) or "",
            expires_at=tokenset and tokenset.expires_at,
            obtained_at=tokenset and tokenset.obtained_at,
            generation=TokenState.generation + 1,
            lease_holder=None,
            lease_until=None,
            failure_reason="",
            failed_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if expected_generation is not None:
        statement = statement.where(TokenState.generation == expected_generation)
    return db.session.execute(statement).rowcount == 1


def expire_access_token(authenticator, generation=None):
    """Mark the stored access token unusable (keeping the refresh token); return whether it was."""
    statement = (
        update(TokenState)
        .where(TokenState.authenticator_id == authenticator.id, TokenState.access_token_encrypted.isnot(None))
        .values(expires_at=0.0)
        .execution_options(synchronize_session=False)
    )
    if generation is not None:
        statement = statement.where(TokenState.generation == generation)
    return db.session.execute(statement).rowcount == 1


def _claim_lease(authenticator, holder, generation, started, now):
    """Take the renewal lease if it is free (or expired), the tokens unchanged, and no failure
    recorded that this call should share (see _shares_failure); commit it."""
    _ensure_row(authenticator)
    failure_shared_until = now - current_app.config["TOKEN_FAILURE_HOLD_SECONDS"]
    claimed = db.session.execute(
        update(TokenState)
        .where(
            TokenState.authenticator_id == authenticator.id,
            TokenState.generation == generation,
            or_(TokenState.lease_until.is_(None), TokenState.lease_until < now),
            or_(
                TokenState.failed_at.is_(None),
                (TokenState.failed_at < started) & (TokenState.failed_at < failure_shared_until),
            ),
        )
        .values(lease_holder=holder, lease_until=now + current_app.config["TOKEN_LEASE_SECONDS"])
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return claimed == 1


def _release_with_failure(authenticator, holder, reason):
    """Give the lease back, recording why the renewal failed for those who waited on it."""
    db.session.execute(
        update(TokenState)
        .where(TokenState.authenticator_id == authenticator.id, TokenState.lease_holder == holder)
        .values(lease_holder=None, lease_until=None, failure_reason=reason[:200], failed_at=time.time())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def usable_tokens(authenticator, config, policy, log, min_validity=0.0):
    """Return tokens valid for at least min_validity seconds, renewing them at most once per expiry."""
    holder, started = secrets.token_hex(16), time.time()
    deadline = started + 2 * current_app.config["TOKEN_LEASE_SECONDS"]
    wait, waited = FIRST_WAIT, False
    while True:
        state = _read_state(authenticator)
        current, now = _decrypt(authenticator, state), time.time()
        if current is not None and not needs_renewal(current, now + min_validity):
            if not waited:
                log(f"token reused: valid for {_remaining(current, now)}")
            return current
        if config.needs_login and current is None:
            db.session.commit()
            log("no tokens: an admin must log in")
            raise TokenError("need_login")
        if _shares_failure(state, started, now):
            db.session.commit()
            log(f"the token renewal failed {now - state.failed_at:.1f} s ago: {state.failure_reason}")
            raise TokenError(state.failure_reason)
        generation = state.generation if state else 0
        if _claim_lease(authenticator, holder, generation, started, now):
            return _renew(authenticator, config, policy, log, current, generation, holder, min_validity)
        if time.time() > deadline:
            raise TokenError("token_renewal_timeout")
        if not waited:
            log("another call is getting new tokens: waiting for them")
            waited = True
        time.sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT)


def _shares_failure(state, started, now):
    """Tell whether a call should take a recent failed renewal as its own answer.

    It does when it waited for that renewal, or came within a moment after it: a failing
    authorization server gets one request, not one per caller.
    """
    if state is None or not state.failed_at or state.lease_holder is not None:
        return False
    return state.failed_at >= started or now - state.failed_at < current_app.config["TOKEN_FAILURE_HOLD_SECONDS"]


def _remaining(tokens, now):
    return "unknown time" if tokens.expires_at is None else f"{round(tokens.expires_at - now)} s"


def _renew(authenticator, config, policy, log, current, generation, holder, min_validity):
    """Get new tokens under the lease (no database connection held) and store them."""
    try:
        tokens = ensure_token(config, current, policy, log, now=time.time() + min_validity)
    except TokenError as error:
        record_event("token renewal failed", APIAUTH, authenticator=authenticator, detail=error.reason)
        if error.reason == "need_login" and current is not None:
            # The refresh token was rejected: forget the tokens, unless newer ones arrived.
            forgotten = store_tokens(authenticator, None, expected_generation=generation)
            db.session.commit()
            newer = None if forgotten else load_tokens(authenticator)
            if newer is not None:
                log("newer tokens were stored meanwhile: using them")
                return newer
        else:
            _release_with_failure(authenticator, holder, error.reason)
        raise
    if store_tokens(authenticator, tokens, expected_generation=generation):
        db.session.commit()
        return tokens
    db.session.commit()
    log("newer tokens were stored meanwhile: using them")
    return load_tokens(authenticator) or tokens

