"""How other features use an authenticator: credentials to add, rejections reported, relayed calls.

Each use records the authenticator's status and the consumer's name and time. To keep a
busy credentials endpoint cheap, an unchanged status is written at most every few seconds,
and the common credentials call (token cached and valid, nothing to write) is answered from
one read without the ORM: see cached_credentials.
"""

import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

from sqlalchemy import update

from .authentication import CONFIG_ATTRIBUTES, engine_config, outbound_policy
from .editor.forms import normalize_host
from .engine.apply import apply_credentials, credentials_for
from .engine.conditions import judge
from .engine.outbound import OutboundError, send
from .engine.redact import Redactor
from .engine.testing import response_text
from .engine.tokens import TokenError
from .extensions import db
from .models import SECRET_FIELDS, Authenticator, ServiceToken, TokenState, utcnow
from .service_tokens import token_use_due
from .tokenstore import (
    expire_access_token,
    token_generation,
    usable_tokens,
    valid_tokens,
)

RECORD_EVERY = timedelta(seconds=5)


class ConsumerError(Exception):
    """A use that failed; `code` is stable, `status` the HTTP status, `message` for people."""

    def __init__(self, code, status, message, reason=""):
        super().__init__(message)
        self.code, self.status, self.message, self.reason = code, status, message, reason


def record_use(authenticator, consumer, status=None, reason=""):
    """Record who used an authenticator and when, and the use's result when it has one.

    The write is skipped when nothing new would show: same result, same consumer, recently.
    """
    now = utcnow()
    if not _use_due(authenticator, consumer, status, reason, now):
        return
    values = {"last_consumer": consumer, "last_used_at": now}
    if status is not None:
        values.update(status=status, status_reason=reason[:200], status_updated_at=now)
    db.session.execute(
        update(Authenticator)
        .where(Authenticator.id == authenticator.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.expire(authenticator)


def _use_due(authenticator, consumer, status, reason, now):
    """Tell whether a use would show something new: another result, another consumer, or a while since the last."""
    same_status = status is None or (authenticator.status, authenticator.status_reason) == (status, reason)
    recent = authenticator.last_used_at and now - authenticator.last_used_at < RECORD_EVERY
    return not (same_status and authenticator.last_consumer == consumer and recent)


def _success_status(config):
    return "connected" if config.needs_login else "succeeded"


def _tokens(authenticator, config, consumer, min_validity, log=lambda message: None):
    """Return usable OAuth tokens (None for other methods), or raise the ConsumerError of their failure."""
    if config.method != "oauth2":
        return None
    try:
        return usable_tokens(authenticator, config, outbound_policy(), log, min_validity)
    except TokenError as error:
        if error.reason == "need_login":
            record_use(authenticator, consumer, "need_login")
            raise ConsumerError("need_login", 409, "An admin must log in to this authenticator first.") from None
        record_use(authenticator, consumer, "failed", error.reason)
        raise ConsumerError("token_error", 502, f"Getting a token failed: {error.reason}.", error.reason) from None


def credentials(authenticator, consumer, min_validity=0):
    """Return what to add to a request: headers, query parameters, and until when they hold."""
    config = engine_config(authenticator)
    tokens = _tokens(authenticator, config, consumer, min_validity)
    # A token issued is a result; a static key handed out proves nothing about the API.
    record_use(authenticator, consumer, _success_status(config) if tokens else None)
    return _credentials_answer(config, tokens, token_generation(authenticator) if tokens else None)


def _credentials_answer(config, tokens, generation):
    found = credentials_for(config, tokens)
    return {
        "headers": found.headers,
        "query": found.query,
        "expires_at": tokens.expires_at if tokens else None,
        "generation": generation if tokens else None,
    }


class _Columns(SimpleNamespace):
    """One table's columns of a Core row, read as its ORM object would be (secrets included)."""

    get_secret = Authenticator.get_secret


def _columns(model, names):
    return tuple(model.__table__.c[name] for name in names)


# What cached_credentials reads, by table, in the one statement of api.gate.read_reached:
# only what the answer and the "anything due?" checks need (every value read costs a busy endpoint).
_TOKEN_COLUMNS = _columns(ServiceToken, ("name", "last_used_at"))
_AUTHENTICATOR_COLUMNS = _columns(Authenticator, (
    "uid", *CONFIG_ATTRIBUTES, *(f"{field}_encrypted" for field in SECRET_FIELDS),
    "status", "status_reason", "last_consumer", "last_used_at",
))
_STATE_COLUMNS = _columns(TokenState, (
    "access_token_encrypted", "refresh_token_encrypted", "token_type", "scope", "expires_at", "obtained_at",
    "generation",
))
CACHED_COLUMNS = (*_TOKEN_COLUMNS, *_AUTHENTICATOR_COLUMNS, *_STATE_COLUMNS)


def _split(row):
    """Return a row of CACHED_COLUMNS as the service token's, the authenticator's and the token row's columns."""
    parts, start = [], 0
    for columns in (_TOKEN_COLUMNS, _AUTHENTICATOR_COLUMNS, _STATE_COLUMNS):
        end = start + len(columns)
        parts.append(_Columns(**dict(zip((column.name for column in columns), row[start:end], strict=True))))
        start = end
    return parts


def cached_credentials(row, min_validity=0):
    """Answer a credentials call from CACHED_COLUMNS of one read, or None for the full path.

    It answers only when the full path would write nothing and request no token: OAuth tokens
    stored and valid for min_validity, the use recorded recently by this consumer with this
    result (RECORD_EVERY), the service token's use stamped recently (LAST_USED_RESOLUTION).
    Every answer reads the database as it is now: a revoked token, a reported rejection or a
    renewal in another worker shows at the next call.
    """
    token, authenticator, state = _split(row)
    now = utcnow()
    if token_use_due(token.last_used_at, now):
        return None
    config = engine_config(authenticator)
    tokens = None
    if config.method == "oauth2":
        tokens = valid_tokens(authenticator, state, time.time(), min_validity)
        if tokens is None:
            return None
    if _use_due(authenticator, token.name, _success_status(config) if tokens else None, "", now):
        return None
    return _credentials_answer(config, tokens, state.generation)


def report(authenticator, consumer, status_code, generation=None):
    """Take a consumer's word that a call was rejected: drop the cached token, record the result."""
    config = engine_config(authenticator)
    if status_code is None or status_code < 400:
        record_use(authenticator, consumer, _success_status(config))
        return {"dropped": False, "status": authenticator.status, "reason": authenticator.status_reason}
    dropped = config.method == "oauth2" and expire_access_token(authenticator, generation)
    db.session.commit()
    record_use(authenticator, consumer, "failed", f"http_{status_code}")
    return {"dropped": dropped, "status": "failed", "reason": f"http_{status_code}"}


def relay(authenticator, consumer, method, url, headers, body):
    """Send a consumer's request with the credentials applied; only to the allowed hosts."""
    if not authenticator.allowed_hosts:
        raise ConsumerError("relay_disabled", 403, "Relay is off for this authenticator: it lists no allowed hosts.")
    # Allowed hosts are stored normalized (lower case, punycode, bare IPv6): compare likewise.
    host = normalize_host(urlsplit(url).hostname or "")
    if host is None or host not in authenticator.allowed_hosts:
        shown = urlsplit(url).hostname or "(none)"
        raise ConsumerError("host_not_allowed", 403, f"The host {shown} is not among this authenticator's allowed hosts.")
    config = engine_config(authenticator)
    tokens = _tokens(authenticator, config, consumer, 0)
    url, headers = apply_credentials(config, tokens, url, headers)
    try:
        response = send(outbound_policy(), method, url, headers=headers, body=body)
    except OutboundError as error:
        record_use(authenticator, consumer, "failed", error.reason)
        raise ConsumerError(error.reason, 502, f"The relayed call failed: {error.reason}.", error.reason) from None
    text = response_text(response)
    reason = judge(config.conditions, response.status_code, response.headers, text)
    record_use(authenticator, consumer, "failed" if reason else _success_status(config), reason or "")
    # The response goes back whole (within the outbound size cap), credentials it echoes masked.
    redactor = Redactor.for_config(config, tokens)
    return {
        "status_code": response.status_code,
        "headers": [[name, redactor.redact(value)] for name, value in response.headers.items()],
        "body": redactor.redact(text),
    }
