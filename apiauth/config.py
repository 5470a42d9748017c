"""Settings, read from APIAUTH_* environment variables."""

import os
import re
import secrets
from pathlib import Path

from cryptography.fernet import Fernet


def _instance_file(instance_path, name, make_value):
    """Return the content of a file in the instance folder, creating it once with make_value()."""
    path = Path(instance_path) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(make_value())
    return path.read_text().strip()


def _split(value):
    """Split a comma-separated setting into its non-empty parts."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _positive_number(env, name, default):
    """Read a setting that must be a whole number above zero."""
    text = env.get(name) or str(default)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number above zero, not {text!r}.")
    return int(text)


def _split_sources(value):
    """Split a list of CSP sources, separated by commas or spaces."""
    return [part for part in re.split(r"[\s,]+", value or "") if part]


def load_settings(instance_path, environ=None):
    """Build the Flask config mapping from the environment, with defaults in the instance folder."""
    env = os.environ if environ is None else environ
    database_url = env.get("APIAUTH_DATABASE_URL") or (
        "sqlite:///" + str(Path(instance_path) / "apiauth.sqlite3")
    )
    secret_key = env.get("APIAUTH_SECRET_KEY") or _instance_file(
        instance_path, "secret_key", lambda: secrets.token_urlsafe(48)
    )
    keys = env.get("APIAUTH_ENCRYPTION_KEYS")
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Test each pooled connection before use: after a database restart the pool reconnects
        # by itself instead of failing the first request of every connection.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SECRET_KEY": secret_key,
        # None means "the instance key file": created only when no encrypted data exists.
        "ENCRYPTION_KEYS": _split(keys) if keys else None,
        "ENCRYPTION_KEY_FILE": str(Path(instance_path) / "encryption_keys"),
        # Ids of lost keys whose values may stay in the database: the explicit force to start without them.
        "ALLOW_MISSING_KEYS": _split(env.get("APIAUTH_ALLOW_MISSING_KEYS")),
        "PUBLIC_URL": (env.get("APIAUTH_PUBLIC_URL") or "").rstrip("/"),
        "OUTBOUND_ALLOW": _split(env.get("APIAUTH_OUTBOUND_ALLOW")),
        # Embedding in a portal (apiauth/portal.py, docs/embedding.md).
        "TRUSTED_PROXIES": _split(env.get("APIAUTH_TRUSTED_PROXIES")),
        "TRUSTED_USER_HEADER": (env.get("APIAUTH_TRUSTED_USER_HEADER") or "").strip(),
        "FRAME_ANCESTORS": _split_sources(env.get("APIAUTH_FRAME_ANCESTORS") or "'self'"),
        "THEME_URL": (env.get("APIAUTH_THEME_URL") or "").strip(),
        "PANE_PAGE_SIZE": 20,
        # How long a worker may take to renew tokens before another takes over (seconds).
        "TOKEN_LEASE_SECONDS": 30.0,
        # A failed renewal answers the calls that come this soon after it (seconds).
        "TOKEN_FAILURE_HOLD_SECONDS": 2.0,
        # Sign-in throttling: failures allowed per user name and per client address in a window.
        "SIGN_IN_FAILURES_PER_USER_NAME": _positive_number(env, "APIAUTH_SIGN_IN_FAILURES_PER_USER_NAME", 5),
        "SIGN_IN_FAILURES_PER_ADDRESS": _positive_number(env, "APIAUTH_SIGN_IN_FAILURES_PER_ADDRESS", 20),
        "SIGN_IN_WINDOW_MINUTES": _positive_number(env, "APIAUTH_SIGN_IN_WINDOW_MINUTES", 15),
        # A signed-in session ends this long after sign-in, at the latest.
        "SESSION_HOURS": _positive_number(env, "APIAUTH_SESSION_HOURS", 12),
        "WTF_CSRF_TIME_LIMIT": None,
        # The cookie's Secure, SameSite and __Host- prefix are decided per request (portal.py).
        "SESSION_COOKIE_NAME": "apiauth_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }


def new_encryption_key():
    """Return a fresh key in the format APIAUTH_ENCRYPTION_KEYS expects."""
    return Fernet.generate_key().decode()
