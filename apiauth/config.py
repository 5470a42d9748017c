"""Settings, read from APIAUTH_* environment variables."""

import os
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
        "PANE_PAGE_SIZE": 20,
        # How long a worker may take to renew tokens before another takes over (seconds).
        "TOKEN_LEASE_SECONDS": 30.0,
        # A failed renewal answers the calls that come this soon after it (seconds).
        "TOKEN_FAILURE_HOLD_SECONDS": 2.0,
        "WTF_CSRF_TIME_LIMIT": None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
    }


def new_encryption_key():
    """Return a fresh key in the format APIAUTH_ENCRYPTION_KEYS expects."""
    return Fernet.generate_key().decode()
