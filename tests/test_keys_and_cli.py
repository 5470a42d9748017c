"""Starting up with the right keys, and the command-line tools."""

import base64

import pytest

from apiauth import create_app
from apiauth.crypto import KeyRingError
from apiauth.extensions import db
from apiauth.models import Authenticator, Domain, User

from .conftest import TEST_KEY

OTHER_KEY = base64.urlsafe_b64encode(b"o" * 32).decode()


def make_app(tmp_path, keys=None):
    config = {"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "x",
              "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    if keys is not None:
        config["ENCRYPTION_KEYS"] = keys
    return create_app(config)


def store_a_secret(app):
    with app.app_context():
        db.create_all()
        domain = Domain(name="D")
        db.session.add(domain)
        db.session.flush()
        authenticator = Authenticator(domain_id=domain.id, name="a", name_key="a", method="api_key")
        authenticator.set_secret("value", "s3cret")
        db.session.add(authenticator)
        db.session.commit()


def test_a_new_install_creates_its_key_once_in_the_instance_folder(tmp_path):
    app = make_app(tmp_path)
    key_file = tmp_path / "instance" / "encryption_keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    store_a_secret(app)
    assert make_app(tmp_path).extensions["apiauth_keyring"].key_ids == app.extensions["apiauth_keyring"].key_ids


def test_a_missing_key_stops_the_app_when_secrets_exist(tmp_path):
    store_a_secret(make_app(tmp_path))
    (tmp_path / "instance" / "encryption_keys").unlink()
    with pytest.raises(KeyRingError, match="Encrypted secrets exist in the database but no encryption key"):
        make_app(tmp_path)
    assert not (tmp_path / "instance" / "encryption_keys").exists()


def test_a_wrong_key_stops_the_app(tmp_path):
    store_a_secret(make_app(tmp_path, [TEST_KEY]))
    with pytest.raises(KeyRingError, match="encrypted under key"):
        make_app(tmp_path, [OTHER_KEY])


def test_a_new_first_key_with_the_old_one_behind_it_starts(tmp_path):
    store_a_secret(make_app(tmp_path, [TEST_KEY]))
    app = make_app(tmp_path, [OTHER_KEY, TEST_KEY])
    with app.app_context():
        assert db.session.scalar(db.select(Authenticator)).get_secret("value") == "s3cret"


def test_bootstrap_creates_the_first_admin_once(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["bootstrap"])
    assert "Created domain Default and user admin with password: " in result.output
    password = result.output.split("password: ")[1].split()[0]
    admin = db.session.scalar(db.select(User).where(User.username == "admin"))
    assert admin.check_password(password)
    assert admin.manages(admin.memberships[0].domain_id)
    assert runner.invoke(args=["bootstrap"]).output == ""


def test_domains_and_users_are_created_from_the_command_line(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["domains", "create", "Sales"]).exit_code == 0
    result = runner.invoke(args=["users", "create", "carol", "--domain", "Sales", "--domain-manager", "--password-stdin"],
                           input="pw from stdin\n")
    assert result.exit_code == 0, result.output
    carol = db.session.scalar(db.select(User).where(User.username == "carol"))
    assert carol.check_password("pw from stdin") and carol.memberships[0].domain_manager
    assert "already exists" in runner.invoke(args=["domains", "create", "Sales"]).output
    assert "No domain named 'Nope'" in runner.invoke(args=["users", "create", "dave", "--domain", "Nope"]).output


def test_the_force_for_lost_keys_is_read_from_the_environment(tmp_path):
    from apiauth.config import load_settings

    settings = load_settings(tmp_path, {"APIAUTH_ALLOW_MISSING_KEYS": "1a2b3c4d, 5e6f7a8b", "APIAUTH_SECRET_KEY": "x"})
    assert settings["ALLOW_MISSING_KEYS"] == ["1a2b3c4d", "5e6f7a8b"]
    assert load_settings(tmp_path, {"APIAUTH_SECRET_KEY": "x"})["ALLOW_MISSING_KEYS"] == []
