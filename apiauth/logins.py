"""Login for authorization-code grants: start, complete at the callback, disconnect.

Security rules (RFC 9700, RFC 7636, RFC 9207): the state is random, single-use, bound to
the user and session that started the Login and to the authenticator, and expires; PKCE
uses a fresh verifier per attempt; the redirect URI is the same in both requests; an `iss`
sent by the provider must match the issuer its metadata names. Every check runs before
any token request.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, session
from sqlalchemy import update

from .audit.events import record_event
from .authentication import engine_config, outbound_policy, record_status, redact_secrets
from .tokenstore import load_tokens, store_tokens
from .engine.login import start_login
from .engine.metadata import discover_metadata
from .engine.tokens import TokenError, exchange_code, revoke_token
from .extensions import db
from .models import Authenticator, LoginAttempt, utcnow, verifier_context

LOGIN_LIFETIME = timedelta(minutes=10)
SESSION_KEY = "login_binding"
ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class LoginRefused(Exception):
    """A callback that fails a security check; nothing was asked of the provider."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


@dataclass
class LoginResult:
    """How a completed callback ended, for the page that reports it."""

    authenticator: Authenticator
    succeeded: bool
    reason: str = ""
    description: str = ""
    popup: bool = False
    return_to: str = ""


def _digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def _session_binding():
    """Return this session's Login binding, creating it on first use."""
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return _digest(session[SESSION_KEY])


def begin_login(authenticator, user, redirect_uri, popup, return_to):
    """Record a Login attempt and return the provider URL to send the user to."""
    config = engine_config(authenticator)
    metadata = discover_metadata(config, outbound_policy())
    start = start_login(config, redirect_uri)
    state_hash = _digest(start.state)
    ring = current_app.extensions["apiauth_keyring"]
    db.session.add(
        LoginAttempt(
            state_hash=state_hash,
            authenticator_id=authenticator.id,
            user_id=user.id,
            session_binding=_session_binding(),
            code_verifier_encrypted=(
                ring.encrypt(start.code_verifier, verifier_context(state_hash)) if start.code_verifier else None
            ),
            redirect_uri=redirect_uri,
            expected_issuer=metadata.get("issuer", ""),
            issuer_required=metadata.get("authorization_response_iss_parameter_supported") is True,
            return_to=return_to,
            popup=popup,
            expires_at=utcnow() + LOGIN_LIFETIME,
        )
    )
    record_event("login started", user.username, authenticator=authenticator)
    db.session.commit()
    return start.url


def claim_attempt(args, user):
    """Find the attempt a callback answers and use it up, or refuse the callback."""
    state = args.get("state", "")
    if not state:
        raise LoginRefused("The provider's answer carries no state.")
    attempt = db.session.scalar(db.select(LoginAttempt).where(LoginAttempt.state_hash == _digest(state)))
    if attempt is None:
        raise LoginRefused("This Login is unknown. Start it again from apiauth.")
    if attempt.user_id != user.id or not hmac.compare_digest(attempt.session_binding, _session_binding()):
        raise LoginRefused("This Login was started by another user or in another session.")
    if attempt.expires_at < utcnow():
        raise LoginRefused("This Login expired. Start it again.")
    claimed = db.session.execute(
        update(LoginAttempt)
        .where(LoginAttempt.id == attempt.id, LoginAttempt.used_at.is_(None))
        .values(used_at=utcnow())
    ).rowcount
    db.session.commit()
    if claimed != 1:
        raise LoginRefused("This Login was already completed. Start it again.")
    _check_issuer(attempt, args.get("iss"))
    return attempt


def _check_issuer(attempt, issuer):
    """Refuse an answer whose issuer is not the server the Login went to (RFC 9207)."""
    if issuer is None:
        if attempt.issuer_required:
            raise LoginRefused("The provider's answer lacks the issuer its metadata promises.")
        return
    if attempt.expected_issuer and issuer != attempt.expected_issuer:
        raise LoginRefused("The answer comes from another issuer than the one this Login went to.")


def complete_login(attempt, args, user):
    """Exchange the code of a checked callback, or record the provider's refusal."""
    authenticator = db.session.get(Authenticator, attempt.authenticator_id)
    result = LoginResult(authenticator, succeeded=False, popup=attempt.popup, return_to=attempt.return_to)
    if "error" in args:
        code = args["error"]
        # From the provider's redirect, which anyone can forge: it may echo the client secret.
        result.reason = redact_secrets(authenticator, code) if ERROR_CODE.fullmatch(code) else "login_error"
        result.description = args.get("error_description", "")[:300]
    else:
        result.reason, result.description = _exchange(authenticator, attempt, args.get("code", ""))
        result.succeeded = not result.reason
    if result.succeeded:
        record_status(authenticator, "connected")
        record_event("logged in", user.username, authenticator=authenticator)
    else:
        record_status(authenticator, "failed", result.reason)
        record_event("login failed", user.username, authenticator=authenticator, detail=result.reason)
    db.session.commit()
    return result


def _exchange(authenticator, attempt, code):
    """Trade the code for tokens and store them; return ('', '') or the failure reason."""
    config = engine_config(authenticator)
    verifier = None
    if attempt.code_verifier_encrypted:
        ring = current_app.extensions["apiauth_keyring"]
        verifier = ring.decrypt(attempt.code_verifier_encrypted, verifier_context(attempt.state_hash))
    try:
        tokens = exchange_code(config, code, attempt.redirect_uri, verifier, outbound_policy(), current_app.logger.info)
    except TokenError as error:
        return error.reason, error.description
    store_tokens(authenticator, tokens)
    return "", ""


def disconnect(authenticator, user):
    """Revoke the tokens where the provider allows it, forget them, and set Need to Login."""
    tokens = load_tokens(authenticator)
    if tokens is not None:
        config = engine_config(authenticator)
        endpoint = discover_metadata(config, outbound_policy()).get("revocation_endpoint")
        if endpoint:
            for token, hint in ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")):
                if token:
                    revoke_token(config, endpoint, token, hint, outbound_policy(), current_app.logger.info)
    store_tokens(authenticator, None)
    record_status(authenticator, "need_login")
    record_event("disconnected", user.username, authenticator=authenticator)
    db.session.commit()
