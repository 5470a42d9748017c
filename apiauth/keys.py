"""Loading the encryption key ring, refusing to start without the keys the data needs.

A key still sealing stored values cannot be dropped from APIAUTH_ENCRYPTION_KEYS: the app
stops, naming it and how many values it seals, unless APIAUTH_ALLOW_MISSING_KEYS names it
too, which is the explicit force for a lost key (then `flask keys drop KEY_ID --force`
clears what it sealed).
"""

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
    "Secrets in the database are encrypted under key(s) that APIAUTH_ENCRYPTION_KEYS does not hold: "
    "{counts}. Add the key(s) back (behind the first key) and run `flask --app wsgi keys rotate` to move "
    "the values under the first key; only then remove them. If a key is lost, its values are too: "
    "`APIAUTH_ALLOW_MISSING_KEYS={ids} flask --app wsgi keys drop KEY_ID --force` clears them."
)


def init_app(app):
    """Put the key ring in app.extensions; stop with a clear message if it can't open the data."""
    with app.app_context():
        try:
            usage = key_usage_at_start()
        finally:
            # No connection opened at start-up outlives it (nor crosses a fork of the workers).
            db.session.remove()
            db.engine.dispose()
        keys = app.config["ENCRYPTION_KEYS"] or _instance_keys(app, set(usage))
        ring = KeyRing(keys)
        unknown = sorted(set(usage) - set(ring.key_ids) - set(app.config["ALLOW_MISSING_KEYS"]))
        if unknown:
            counts = ", ".join(f"{key_id} ({usage[key_id]} values)" for key_id in unknown)
            raise KeyRingError(WRONG_KEY_MESSAGE.format(counts=counts, ids=",".join(unknown)))
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


def key_usage_at_start():
    """Count the stored values under each key id, in the tables that exist (the schema may be behind)."""
    from .rotation import key_usage

    return key_usage(only_tables=set(inspect(db.engine).get_table_names()))
