"""Rotating the encryption key: every secret moves under the first key, safely, in batches."""

import base64
import threading

import pytest

from apiauth import create_app, rotation
from apiauth.crypto import KeyRing, KeyRingError
from apiauth.engine.config import TokenSet
from apiauth.extensions import db
from apiauth.models import AuditEvent, Authenticator
from apiauth.rotation import key_usage, rotate, sealed_columns
from apiauth.services import NamedActor, update_authenticator
from apiauth.tokenstore import load_tokens, store_tokens

from .conftest import TEST_KEY

NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
OLD_ID, NEW_ID = KeyRing([TEST_KEY]).primary_id, KeyRing([NEW_KEY]).primary_id
ADMIN = NamedActor("an admin")


def app_with(tmp_path, database_url, keys, **settings):
    return create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "x",
                       "SQLALCHEMY_DATABASE_URI": database_url, "ENCRYPTION_KEYS": keys, **settings})


def close_database():
    """Give back and close every connection of the current app."""
    db.session.remove()
    db.engine.dispose()


def run(app, *args, expect_failure=False):
    """Run a command as `flask --app wsgi ...` would, on this app (not the test's own); return its output."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=list(args))
        close_database()
    assert (result.exit_code != 0) == expect_failure, result.output
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
    with pytest.raises(KeyRingError) as refused:
        app_with(tmp_path, database_url, [NEW_KEY])
    message = str(refused.value)
    assert f"{OLD_ID} (15 values)" in message
    assert "keys rotate" in message and f"APIAUTH_ALLOW_MISSING_KEYS={OLD_ID}" in message


def test_a_key_in_use_cannot_be_dropped_without_force(tmp_path, database_url, old_data):
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    refused = run(app, "keys", "drop", OLD_ID, expect_failure=True)
    assert f"Key {OLD_ID} still seals 15 values" in refused and "--force" in refused
    run(app, "keys", "rotate")
    assert f"No value is sealed under key {OLD_ID}" in run(app, "keys", "drop", OLD_ID)
    assert "is the first key" in run(app, "keys", "drop", NEW_ID, expect_failure=True)


def test_a_lost_key_is_dropped_with_an_explicit_force(tmp_path, database_url, old_data):
    keeps = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    with keeps.app_context():
        kept = db.session.scalar(db.select(Authenticator).where(Authenticator.name == "a0"))
        kept.set_secret("client_secret", "entered again under the new key")
        db.session.commit()
        close_database()
    lost = app_with(tmp_path, database_url, [NEW_KEY], ALLOW_MISSING_KEYS=[OLD_ID])
    assert f"{OLD_ID}        14 values  (NOT in APIAUTH_ENCRYPTION_KEYS: unreadable)" in run(lost, "keys", "status")
    rotated = run(lost, "keys", "rotate")
    assert "Re-encrypted 0 values" in rotated and "cannot be opened without the key" in rotated
    assert "Cleared 14 values" in run(lost, "keys", "drop", OLD_ID, "--force")

    app = app_with(tmp_path, database_url, [NEW_KEY])  # starts: no value needs the lost key
    with app.app_context():
        assert key_usage() == {NEW_ID: 1}
        for authenticator in db.session.scalars(db.select(Authenticator)):
            assert load_tokens(authenticator) is None
            assert authenticator.status == "not_tested"
            assert authenticator.version == (3 if authenticator.name == "a0" else 2)  # a0 was edited once more
            assert authenticator.modified_by_name == "keys drop --force (command line)"
            [event] = db.session.scalars(db.select(AuditEvent).where(AuditEvent.authenticator_id == authenticator.id))
            if authenticator.name == "a0":
                assert authenticator.get_secret("client_secret") == "entered again under the new key"
                assert event.changes == ["tokens"]
            else:
                assert not authenticator.has_secret("client_secret")
                assert event.changes == ["client_secret", "tokens"]
        close_database()


def test_an_edit_made_while_rotation_runs_is_not_overwritten(tmp_path, database_url, old_data, monkeypatch):
    """Another connection saves a secret between rotation's read of the row and its swap."""
    app = app_with(tmp_path, database_url, [NEW_KEY, TEST_KEY])
    reseal = rotation._reseal
    edited = {}

    def edit_meanwhile(sealed, row, ring):
        if sealed.column.name == "client_secret_encrypted" and row.pk % 2:
            writer = threading.Thread(target=save_secret, args=(app, row.pk, f"edited {row.pk}"))
            writer.start()
            writer.join(10)
            edited[row.pk] = f"edited {row.pk}"
        return reseal(sealed, row, ring)

    monkeypatch.setattr(rotation, "_reseal", edit_meanwhile)
    with app.app_context():
        moved = rotate(batch_size=2)
        close_database()
    assert sorted(edited) == [1, 3, 5]
    # The two secrets nobody edited, with their access and refresh tokens: a new client secret drops the tokens.
    assert moved == 2 + 2 * 2
    with app.app_context():
        for authenticator in db.session.scalars(db.select(Authenticator)):
            expected = edited.get(authenticator.id, f"secret-{authenticator.name[1:]}")
            assert authenticator.get_secret("client_secret") == expected
        assert key_usage() == {NEW_ID: 3 + moved}
        close_database()


def save_secret(app, authenticator_id, value):
    """Save a secret as an admin's edit would, in a session and connection of its own."""
    with app.app_context():
        authenticator = db.session.get(Authenticator, authenticator_id)
        update_authenticator(authenticator, ADMIN, {}, {"client_secret": value}, authenticator.version)
        db.session.remove()


def test_every_sealed_column_is_known_to_rotation():
    from apiauth.extensions import db as database

    names = {f"{s.column.table.name}.{s.column.name}" for s in sealed_columns()}
    encrypted = {f"{t.name}.{c.name}" for t in database.metadata.tables.values() for c in t.c if c.name.endswith("_encrypted")}
    assert names == encrypted
