"""Running the engine for an authenticator: its configuration, its tokens, its status."""

import hashlib
import hmac
import json
from dataclasses import asdict, replace

from flask import current_app
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import update

from .engine.config import AuthConfig, Condition
from .engine.outbound import OutboundPolicy
from .engine.redact import Redactor
from .engine.testing import TestOutcome, run_test
from .extensions import db
from .models import SECRET_FIELDS, Authenticator, utcnow
from .tokenstore import load_tokens, usable_tokens


# A test result carried by a form is honoured on save for this long (seconds).
TESTED_RESULT_MAX_AGE = 3600


def outbound_policy():
    """Return the rules every outbound call of this app follows."""
    return OutboundPolicy(allow_networks=tuple(current_app.config["OUTBOUND_ALLOW"]))


def engine_config(authenticator, values=None, secrets=None):
    """Return the engine's view of an authenticator, optionally with unsaved form values over it.

    A secret left blank in `secrets` falls back to the stored one, as saving would do.
    """
    source = {field: getattr(authenticator, field) for field in CONFIG_ATTRIBUTES} if authenticator else {}
    source.update(values or {})
    typed = secrets or {}
    plain = {
        field: typed.get(field) or (authenticator.get_secret(field) if authenticator else "")
        for field in SECRET_FIELDS
    }
    params = source.get("extra_params") or []
    return AuthConfig(
        **{field: source.get(field) or _DEFAULTS.get(field, "") for field in CONFIG_ATTRIBUTES
           if field not in ("extra_params", "conditions")},
        **plain,
        extra_auth_params=tuple((p["name"], p["value"]) for p in params if p["target"] == "authorization"),
        extra_token_params=tuple((p["name"], p["value"]) for p in params if p["target"] == "token"),
        conditions=tuple(Condition(**c) for c in source.get("conditions") or []),
    )


CONFIG_ATTRIBUTES = (
    "method", "key", "add_to", "username", "grant_type", "access_token_url", "auth_url", "client_id",
    "scope", "client_authentication", "code_challenge_method", "audience", "resource", "token_prefix",
    "extra_params", "conditions",
)
_DEFAULTS = {"add_to": "header", "grant_type": "client_credentials", "client_authentication": "basic_header",
             "code_challenge_method": "S256", "token_prefix": "Bearer"}


def redact_secrets(authenticator, text):
    """Mask an authenticator's secrets and stored tokens in text that came from outside."""
    return Redactor.for_config(engine_config(authenticator), load_tokens(authenticator)).redact(text)


def fingerprint(config):
    """Return a keyed digest of a configuration, secrets included, that reveals none of it."""
    canonical = json.dumps(asdict(config), sort_keys=True, default=list).encode()
    return hmac.new(current_app.config["SECRET_KEY"].encode(), canonical, hashlib.sha256).hexdigest()


def status_of(outcome, config):
    """Translate a test outcome into a (status, reason) pair for the pane."""
    if outcome.succeeded:
        return ("connected" if config.needs_login else "succeeded"), ""
    if outcome.reason == "need_login":
        return "need_login", ""
    return "failed", outcome.reason or "unknown"


def record_status(authenticator, status, reason=""):
    """Record an authentication result; it is not a configuration change, so no version bump."""
    now = utcnow()
    db.session.execute(
        update(Authenticator)
        .where(Authenticator.id == authenticator.id)
        .values(status=status, status_reason=reason[:200], status_updated_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(authenticator, ["status", "status_reason", "status_updated_at"])


def remember_test_request(authenticator, request):
    """Keep a test's method, URL, headers and body to fill in next time."""
    db.session.execute(
        update(Authenticator)
        .where(Authenticator.id == authenticator.id)
        .values(
            test_method=request.method,
            test_url=request.url,
            test_headers="\n".join(f"{name}: {value}" for name, value in request.headers),
            test_body=request.body,
        )
        .execution_options(synchronize_session=False)
    )


def run_authenticator_test(authenticator, request, config=None):
    """Test an authenticator; return the outcome and whether it was recorded as the status.

    It is recorded when it tested the saved configuration. With other values (`config`, from
    an unsaved form), the stored tokens and status stay as they were: they belong to the
    saved configuration.
    """
    saved = engine_config(authenticator) if authenticator else None
    config = config or saved
    tested_saved = saved is not None and fingerprint(config) == fingerprint(saved)
    # Failure conditions don't touch tokens: the stored ones serve a form that only changed those.
    same_tokens = saved is not None and fingerprint(replace(config, conditions=())) == fingerprint(
        replace(saved, conditions=())
    )
    policy = outbound_policy()
    token_source = (lambda log: usable_tokens(authenticator, config, policy, log)) if same_tokens else None
    # The stored tokens go in for redaction: a failed refresh may echo them.
    stored = load_tokens(authenticator) if same_tokens else None
    outcome: TestOutcome = run_test(config, stored, request, policy, token_source)
    if authenticator is not None:
        remember_test_request(authenticator, request)
    if tested_saved:
        record_status(authenticator, *status_of(outcome, config))
    db.session.commit()
    return outcome, tested_saved


def parse_headers(text):
    """Parse 'Name: value' lines into pairs; return (pairs, error message or None)."""
    pairs = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            return pairs, f"Line {number} is not a header: write it as Name: value."
        pairs.append((name.strip(), value.strip()))
    return pairs, None


def _result_serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="apiauth.tested-result")


def sign_tested_result(config, status, reason):
    """Return a signed note of a test result on unsaved values, for the form to carry to its save."""
    return _result_serializer().dumps({"fingerprint": fingerprint(config), "status": status, "reason": reason})


def keep_tested_result(authenticator, signed):
    """After a save, record the result of the test the admin ran on exactly these values."""
    try:
        note = _result_serializer().loads(signed or "", max_age=TESTED_RESULT_MAX_AGE)
    except BadData:
        return
    if hmac.compare_digest(note["fingerprint"], fingerprint(engine_config(authenticator))):
        record_status(authenticator, note["status"], note["reason"])
        db.session.commit()
