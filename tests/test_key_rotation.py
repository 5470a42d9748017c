"""Rotating the encryption key: every secret moves under the first key, safely, in batches."""

import base64

import pytest

from apiauth import create_app
from apiauth.crypto import KeyRing
from apiauth.engine.config import TokenSet
from apiauth.extensions import db
from apiauth.models import Authenticator
from apiauth.rotation import key_usage, rotate, sealed_columns
from apiauth.tokenstore import load_tokens, store_tokens

from .conftest import TEST_KEY

NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
OLD_ID, NEW_ID = KeyRing([TEST_KEY]).primary_id, KeyRing([NEW_KEY]).primary_id


def app_with(tmp_path, database_url, keys):
    return create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "x",
                       "SQLALCHEMY_DATABASE_URI": database_url, "ENCRYPTION_KEYS": keys})


def close_database():
    """Give back and close every connection of the current app."""
    db.session.remove()
    db.engine.dispose()


def run(app, *args):
    """Run a command as `flask --app wsgi ...` would, on this app (not the test's own)."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=list(args))
        close_database()
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def old_data(app, domain):
    """Five authenticators with secrets and tokens sealed under the test key."""
    for number in range(5):
        authenticator = Authenticator(domain_id=domain.id, name=f"a{number}", name_key=f"a{number}", method="oauth2")
        authenticator.set_secret("client_secret", f"secret-{number}")
        db.session.add(authenticator)
        db.session.flush()
        store_tokens(authenticator, TokenSet(f"access-{number}", refresh_token=f"refresh-{number}"))
    db.session.commit()
    close_database()


def test_rotation_moves_every_secret_under_the_first_key(tmp_path, database_url, old_data):
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    output = run(app, "keys", "rotate", "--batch-size", "2")
    assert "Re-encrypted 15 values under key" in output
    assert "No value remains under an old key" in output
    with app.app_context():
        assert key_usage() == {NEW_ID: 15}
        close_database()
    only_new = app_with(tmp_path, database_url, [NEW_KEY])
    with only_new.app_context():
        for authenticator in db.session.scalars(db.select(Authenticator).order_by(Authenticator.id)):
            number = authenticator.name[1:]
            assert authenticator.get_secret("client_secret") == f"secret-{number}"
            assert load_tokens(authenticator).refresh_token == f"refresh-{number}"
        close_database()


def test_status_counts_values_per_key(tmp_path, database_url, old_data):
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    output = run(app, "keys", "status")
    assert f"{NEW_ID}         0 values  (first key: encrypts)" in output
    assert f"{OLD_ID}        15 values  (old key: decrypts only)" in output


def test_an_interrupted_rotation_resumes_where_it_stopped(tmp_path, database_url, old_data):
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])

    def stop_after_first_batch(moved):
        raise KeyboardInterrupt

    with app.app_context():
        with pytest.raises(KeyboardInterrupt):
            rotate(batch_size=2, progress=stop_after_first_batch)
        assert key_usage() == {NEW_ID: 2, OLD_ID: 13}
        assert rotate(batch_size=2) == 13
        assert key_usage() == {NEW_ID: 15}
        close_database()


def test_a_secret_changed_during_rotation_is_not_overwritten(tmp_path, database_url, old_data):
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    with app.app_context():
        sealed = sealed_columns()[2]  # client_secret
        read = db.session.execute(sealed.query.where(sealed.column.isnot(None))).first()
        authenticator = db.session.get(Authenticator, read.pk)
        authenticator.set_secret("client_secret", "changed by an admin")
        db.session.commit()
        from apiauth.rotation import _reseal

        assert _reseal(sealed, read, app.extensions["apiauth_keyring"]) == 0
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Authenticator, read.pk).get_secret("client_secret") == "changed by an admin"
        close_database()


def test_the_app_refuses_to_start_without_a_key_still_in_use(tmp_path, database_url, old_data):
    from apiauth.crypto import KeyRingError

    with pytest.raises(KeyRingError, match=OLD_ID):
        app_with(tmp_path, database_url, [NEW_KEY])


def test_every_sealed_column_is_known_to_rotation():
    from apiauth.extensions import db as database

    names = {f"{s.column.table.name}.{s.column.name}" for s in sealed_columns()}
    encrypted = {f"{t.name}.{c.name}" for t in database.metadata.tables.values() for c in t.c if c.name.endswith("_encrypted")}
    assert names == encrypted
