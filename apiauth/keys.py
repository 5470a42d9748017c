"""Loading the encryption key ring, refusing to start without the keys the data needs."""

import os
from pathlib import Path

from sqlalchemy import inspect

from .config import new_encryption_key
from .crypto import KeyRing, KeyRingError
from .extensions import db

MISSING_KEY_MESSAGE = (
    "Encrypted secrets exist in the database but no encryption key was given: set "
    "APIAUTH_ENCRYPTION_KEYS to the keys that encrypted them (or restore {path})."
)
WRONG_KEY_MESSAGE = (
    "Secrets in the database are encrypted under key(s) {ids} that APIAUTH_ENCRYPTION_KEYS "
    "does not hold; add the key(s) that encrypted them."
)


def init_app(app):
    """Put the key ring in app.extensions; stop with a clear message if it can't open the data."""
    with app.app_context():
        try:
            in_use = key_ids_in_use()
        finally:
            # No connection opened at start-up outlives it (nor crosses a fork of the workers).
            db.session.remove()
            db.engine.dispose()
        keys = app.config["ENCRYPTION_KEYS"] or _instance_keys(app, in_use)
        ring = KeyRing(keys)
        unknown = in_use - set(ring.key_ids)
        if unknown:
            raise KeyRingError(WRONG_KEY_MESSAGE.format(ids=", ".join(sorted(unknown))))
    app.extensions["apiauth_keyring"] = ring


def _instance_keys(app, in_use):
    """Read the instance key file, creating it only when no encrypted data exists yet."""
    path = Path(app.config["ENCRYPTION_KEY_FILE"])
    if not path.exists():
        if in_use:
            raise KeyRingError(MISSING_KEY_MESSAGE.format(path=path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(new_encryption_key())
    return [k.strip() for k in path.read_text().split(",") if k.strip()]


def key_ids_in_use():
    """Return the identifiers of every key that sealed a value stored in the database."""
    from .rotation import key_usage

    return set(key_usage(only_tables=set(inspect(db.engine).get_table_names())))
