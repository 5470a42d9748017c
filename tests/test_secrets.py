"""Secrets are write-only: encrypted at rest, bound to their row and field, never shown."""

import base64
import logging
import sqlite3
from urllib.parse import quote, quote_plus

import pytest

from apiauth.crypto import DecryptionError, KeyRing
from apiauth.extensions import db
from apiauth.models import Authenticator

from .conftest import TEST_KEY

CANARIES = {
    "value": "canary-apikey-7f3a9c",
    "password": "canary-pässword-51e0",
    "client_secret": "canary-clientsecret-c2d4",
}


def encodings(secret):
    """The forms a leaked secret could take."""
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            quote(secret), quote_plus(secret)}


def assert_no_canary(text, where):
    for secret in CANARIES.values():
        for form in encodings(secret):
            assert form not in text, f"{secret!r} leaked into {where} as {form!r}"


@pytest.fixture
def secret_authenticators(client):
    """Authenticators of every method created through the forms with canary secrets."""
    forms = [
        {"method": "api_key", "name": "Key", "key": "X-Key", "value": CANARIES["value"], "add_to": "query"},
        {"method": "basic", "name": "Basic", "username": "u", "password": CANARIES["password"]},
        {"method": "oauth2", "name": "OAuth", "grant_type": "password", "access_token_url": "https://a.example/token",
         "client_id": "c", "client_secret": CANARIES["client_secret"], "client_authentication": "body",
         "username": "u", "password": CANARIES["password"], "token_prefix": "Bearer"},
    ]
    for form in forms:
        assert client.post("/authenticators", data=form).status_code == 302
    return db.session.scalars(db.select(Authenticator).order_by(Authenticator.id)).all()


def test_no_page_partial_or_error_shows_a_secret(client, secret_authenticators, caplog):
    caplog.set_level(logging.DEBUG)
    pages = ["/authenticators", "/authenticators?q=o", "/authenticators?sort=status&dir=desc"]
    for a in secret_authenticators:
        pages += [f"/authenticators/{a.id}/edit", f"/authenticators/{a.id}/status", f"/authenticators/{a.id}/delete"]
    for url in pages:
        for headers in ({}, {"HX-Request": "true"}):
            response = client.get(url, headers=headers)
            assert response.status_code == 200, url
            assert_no_canary(response.get_data(as_text=True), url)
            assert_no_canary(str(response.headers), f"headers of {url}")
    oauth = secret_authenticators[2]
    responses = [
        client.post(f"/authenticators/{oauth.id}/fields", data={"method": "oauth2", "grant_type": "password"}),
        client.post(f"/authenticators/{oauth.id}/fields?part=grant", data={"method": "oauth2", "grant_type": "password"}),
        # A rejected edit that typed a new secret: the page must not echo it.
        client.post(f"/authenticators/{oauth.id}", data={"method": "oauth2", "name": "", "client_secret": CANARIES["client_secret"], "password": CANARIES["password"]}),
        client.get("/authenticators/999/edit"),
    ]
    for response in responses:
        assert_no_canary(response.get_data(as_text=True), response.request.path)
    with client.session_transaction() as session:
        assert_no_canary(str(dict(session)), "the session")
    assert_no_canary(caplog.text, "the logs")


def test_the_database_holds_no_secret(app, secret_authenticators, schema_template):
    db.session.remove()
    db.engine.dispose()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if schema_template is not None:
        assert_no_canary(schema_template.dump(url.rsplit("/", 1)[1]), "the database dump")
        return
    path = url.removeprefix("sqlite:///")
    with open(path, "rb") as file:
        assert_no_canary(file.read().decode("latin-1"), "the database file")
    connection = sqlite3.connect(path)
    try:
        assert_no_canary("\n".join(connection.iterdump()), "the database dump")
    finally:
        connection.close()


def test_secrets_decrypt_with_the_key_ring(secret_authenticators):
    key, basic, oauth = secret_authenticators
    assert key.get_secret("value") == CANARIES["value"]
    assert basic.get_secret("password") == CANARIES["password"]
    assert oauth.get_secret("client_secret") == CANARIES["client_secret"]


def test_a_ciphertext_copied_to_another_row_does_not_decrypt(secret_authenticators):
    key, basic, _ = secret_authenticators
    basic.value_encrypted = key.value_encrypted
    with pytest.raises(DecryptionError):
        basic.get_secret("value")


def test_a_ciphertext_copied_to_another_field_does_not_decrypt(secret_authenticators):
    _, _, oauth = secret_authenticators
    oauth.password_encrypted = oauth.client_secret_encrypted
    with pytest.raises(DecryptionError):
        oauth.get_secret("password")


def test_a_decryption_error_names_no_secret(secret_authenticators):
    key, basic, _ = secret_authenticators
    basic.value_encrypted = key.value_encrypted
    with pytest.raises(DecryptionError) as error:
        basic.get_secret("value")
    assert_no_canary(str(error.value), "the error")


def test_every_key_of_the_ring_decrypts_and_the_first_encrypts():
    old = KeyRing([TEST_KEY])
    sealed = old.encrypt("hello", "ctx")
    new_key = base64.urlsafe_b64encode(b"n" * 32).decode()
    ring = KeyRing([new_key, TEST_KEY])
    assert ring.decrypt(sealed, "ctx") == "hello"
    assert KeyRing.key_id_of(ring.encrypt("hello", "ctx")) == ring.primary_id != KeyRing.key_id_of(sealed)


def test_a_malformed_key_is_refused_with_a_clear_message():
    from apiauth.crypto import KeyRingError

    with pytest.raises(KeyRingError, match="32 random bytes in URL-safe base64"):
        KeyRing(["too-short"])
